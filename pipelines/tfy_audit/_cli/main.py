"""The `tfy-audit` command: its entry point, the dispatch to one module per command
(`commands/`), and the exit code of every ending (see output.py for the codes).

The parser is in parser.py, logging in logs.py, signals in signals.py, the prompt exit in
process.py; the library below never prints, parses arguments or chooses an exit code.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from tfy_audit._cli.args import sync_options_from_args
from tfy_audit._cli.output import (
    EXIT_FAILURE,
    EXIT_LOST_OUTPUT,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    STATUS,
    Mode,
    Outcome,
    exit_code_for,
    print_json,
    say,
)
from tfy_audit._cli.parser import build_parser, log_format
from tfy_audit._cli.process import begin_imports, end_imports, exit_now
from tfy_audit._cli.signals import Terminated, install_signal_handlers
from tfy_audit._core.errors import TfyAuditError, one_line

# The rest is imported where it is used: a decoder worker process imports this module again
# (it is the command's main module), and should not pay for httpx, pendulum or dlt there.

__all__ = ["build_parser", "entry", "exit_now", "main", "sync_options_from_args"]

logger = logging.getLogger("tfy_audit")

_own_process = False  # True when the process is the `tfy-audit` command itself


def entry() -> NoReturn:
    """The `tfy-audit` command: `main()`, then a prompt exit."""
    global _own_process
    _own_process = True
    begin_imports()  # until the command's imports are done (process.py)
    install_signal_handlers()
    exit_now(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = tuple(sys.argv[1:] if argv is None else argv)
    Mode.wants_json = given if "--json" in given else None
    from tfy_audit._cli.logjson import requested_format

    Mode.json_logs = requested_format(given) == "json"
    args = parser.parse_args(given)
    Mode.json_logs = log_format(parser, args) == "json"
    if args.command is None:  # a bare `tfy-audit`
        parser.print_help()
        return EXIT_OK
    if _own_process and args.command == "sync":
        _fork_decoders(args)
    from tfy_audit._cli.logs import configure_logging

    configure_logging(args.debug, args.quiet, Mode.json_logs)
    # dlt sends anonymous usage events to dlthub by default (DNS lookups and HTTPS on every
    # run); a tool that copies a security audit trail should not call out unasked. Set
    # RUNTIME__DLTHUB_TELEMETRY=true to opt in.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    # dlt's own handling of SIGINT/SIGTERM during normalize and load delays a signal to its
    # checkpoints and may drop it (a run then goes on and exits 0); the command's handlers stop
    # the run where it is, and the next run finishes what was committed.
    os.environ.setdefault("RUNTIME__INTERCEPT_SIGNALS", "false")
    # dlt keeps every loaded Parquet file in its working dir by default: a second, unmanaged copy
    # of the audit trail (never cleaned up). Loaded packages keep their metadata only;
    # LOAD__DELETE_COMPLETED_JOBS=false keeps the files.
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")
    # A load job is one file, and DuckDB copies a file in one go under its memory limit: pages
    # of large manifests (a thousand 31 KB events) made one file too large to load at all, and
    # the sync failed on every run. Files are cut at these sizes instead (settings.py says how);
    # the size is the compressed file's, so rows that compress well still make large jobs,
    # which are then loaded one at a time (destination.load_workers). Ordinary pages come as
    # Arrow tables of YIELD_EVENTS rows, written whole, so their path is unchanged.
    from tfy_audit._core.settings import (
        DATA_WRITER_BUFFER_MAX_ITEMS,
        DATA_WRITER_FILE_MAX_BYTES,
        EXTRACT_BUFFER_MAX_ITEMS,
    )

    os.environ.setdefault("DATA_WRITER__FILE_MAX_BYTES", str(DATA_WRITER_FILE_MAX_BYTES))
    os.environ.setdefault("DATA_WRITER__BUFFER_MAX_ITEMS", str(DATA_WRITER_BUFFER_MAX_ITEMS))
    os.environ.setdefault("SOURCES__DATA_WRITER__BUFFER_MAX_ITEMS", str(EXTRACT_BUFFER_MAX_ITEMS))
    as_json = bool(getattr(args, "json", False))
    error: str | None = None
    outcome = Outcome(EXIT_FAILURE)
    try:
        outcome = _run(args)
    except TfyAuditError as exc:
        if args.debug:
            logger.exception("failed")
        error = str(exc)
        outcome = Outcome(exit_code_for(exc))
    except BrokenPipeError:
        return _reader_gone()
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        error = "terminated" if terminated else "interrupted"
        error += "; run the same command again to continue"
        outcome = Outcome(EXIT_SIGTERM if terminated else EXIT_SIGINT)
    except Exception as exc:  # the last resort: one line, the traceback only with --debug
        if args.debug:
            logger.exception("failed")
        # here, not at the top: `tfy-audit --help` loads no dlt
        from tfy_audit._compat.dlt import explain_destination_failure

        explained = explain_destination_failure(exc)
        if explained is None:
            explained = f"{type(exc).__name__}: {one_line(exc, 400)} (run with --debug for details)"
        error = explained
        outcome = Outcome(EXIT_FAILURE)
    finally:
        _close_unused_decoders()
    if error is not None:
        prefix = (
            "tfy-audit: " if outcome.code in (EXIT_SIGINT, EXIT_SIGTERM) else "tfy-audit: error: "
        )
        status = STATUS.get(outcome.code, "failed")
        say(prefix + error, status=status, exit_code=outcome.code)
    if as_json:
        try:
            print_json(args.command, outcome.code, outcome.fields, error)
        except BrokenPipeError:
            return _reader_gone()
    return outcome.code


def _fork_decoders(args: argparse.Namespace) -> None:
    """Fork the sync's decoder processes now, before the command imports dlt or starts a
    thread (forked.py says why); a `--workers` that is not a number is left to the options'
    own check, and the sync then spawns what it needs."""
    from tfy_audit._service import forked
    from tfy_audit._service.decoders import default_workers

    given = getattr(args, "workers", None)
    try:
        workers = default_workers() if given is None else int(given)
    except ValueError:
        return
    forked.start(workers)


def _close_unused_decoders() -> None:
    """End the decoders `_fork_decoders` forked if the sync never took them (it failed
    before it began: a busy lock, a bad option), rather than leave them to the exit."""
    forked = sys.modules.get("tfy_audit._service.forked")
    if forked is not None:
        unused = forked.take()
        if unused is not None:
            unused.close()


def _reader_gone() -> int:
    """The end of a run whose stdout reader went away (`tfy-audit status | head -1`): no error
    line, since the reader stopped on purpose; what was left to print is dropped, and the code is
    the one the prompt exit gives any lost output, so a scheduler does not take it for a full
    run. Later writes to stdout (the exit's flush) go nowhere instead of failing again."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - kept open until the process ends
    return EXIT_LOST_OUTPUT


def _run(args: argparse.Namespace) -> Outcome:
    command: str = args.command
    if command == "sync":  # it ends the imports itself, once its configuration is read
        from tfy_audit._cli.commands import sync

        return sync.run(args, own_process=_own_process)
    # dlt, httpx and the library's modules are imported by now (configure_logging's progress
    # reporter imports the sync): collect again, past them (process.py)
    end_imports()
    if command == "verify":
        from tfy_audit._cli.commands import verify

        return verify.run(args)
    if command == "views":
        from tfy_audit._cli.commands import views

        return views.run(args)
    if command == "report":
        from tfy_audit._cli.commands import report

        return report.run(args)
    if command == "export":
        from tfy_audit._cli.commands import export

        return export.run(args)
    if command == "status":
        from tfy_audit._cli.commands import status

        return status.run(args)
    if command == "sql":
        from tfy_audit._cli.commands import sql

        return sql.run(args)
    if command == "detect":
        from tfy_audit._cli.commands import detect

        return detect.run(args)
    if command == "rules":
        from tfy_audit._cli.commands import rules

        return rules.run(args)
    if command == "simulate":
        from tfy_audit._cli.commands import simulate

        return Outcome(simulate.run(args))
    from tfy_audit._cli.commands.demo import run_demo

    return Outcome(run_demo(db=args.db, events=args.events, days=args.days, seed=args.seed))


if __name__ == "__main__":  # pragma: no cover
    entry()
