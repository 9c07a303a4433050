"""The `tfy-audit` command.

Exit codes: 0 success; 1 a runtime failure (service, network, destination); 2 a usage or
configuration error; 3 the data is incomplete (`verify` found days that differ, or `sync` could
not read a window completely).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from tfy_audit._core.errors import TfyAuditError, UsageError

# The rest is imported where it is used: a decoder worker process imports this module again
# (it is the command's main module), and should not pay for httpx, pendulum or dlt there.
if TYPE_CHECKING:
    from datetime import datetime

    from tfy_audit._core.options import Flag, SyncOptions
    from tfy_audit._report.options import ReportOptions
    from tfy_audit._service.client import AuditLogFilters

logger = logging.getLogger("tfy_audit")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM

COMMANDS = ("sync", "verify", "status", "views", "report", "sql", "simulate", "demo")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup
    runs (the lock released, worker processes stopped, committed chunks kept)."""


class _Parser(argparse.ArgumentParser):
    # set by main(): the command line asks for --json, so even a line that does not parse
    # gets its JSON document
    wants_json: tuple[str, ...] | None = None
    # set by main(): log lines (and the lines below) are JSON records (`--log-format json`)
    json_logs = False

    def error(self, message: str) -> Any:  # one line, exit code 2, like every usage error
        text = f"{message} (see {self.prog} --help)"
        if _Parser.wants_json is not None:
            command = next((a for a in _Parser.wants_json if a in COMMANDS), None)
            _print_json(command or "", EXIT_USAGE, {}, text)
        if _Parser.json_logs:
            from tfy_audit._cli.logjson import line

            fields = {"event": "exit", "status": "usage_error", "exit_code": EXIT_USAGE}
            self.exit(EXIT_USAGE, line(logging.ERROR, logger.name, text, **fields) + "\n")
        self.exit(EXIT_USAGE, f"tfy-audit: error: {text}\n")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # never inside a path or flag such as ./.tfy-audit/pipelines
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _add_flags(group: Any, flags: Sequence[Flag]) -> None:
    """Flags whose defaults are the options' own: argparse's default stays None (not set), and
    the option's default is what `--help` shows."""
    from tfy_audit._core.options import shown_default

    for flag in flags:
        if flag.kind == "switch":
            help_text = f"{flag.help} (default: {shown_default(flag)})"
            group.add_argument(flag.flag, dest=_dest(flag), action="store_true", default=None,
                               help=help_text)  # fmt: skip
            continue
        kind: Any = {"int": int, "float": float}.get(flag.kind, str)
        group.add_argument(
            flag.flag,
            dest=_dest(flag),
            type=kind,
            default=None,
            metavar=flag.flag.lstrip("-").replace("-", "_").upper(),
            help=f"{flag.help} (default: {shown_default(flag)})",
        )


def _dest(flag: Flag) -> str:
    return flag.flag.lstrip("-").replace("-", "_")


def _filter_dest(name: str) -> str:
    return "f_" + name


def _destination_args(p: argparse.ArgumentParser) -> None:
    from tfy_audit._core.options import DESTINATION_FLAGS

    _add_flags(p.add_argument_group("destination"), DESTINATION_FLAGS)


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout (with a status field), also on failure",
    )


def _source_args(p: argparse.ArgumentParser, windows: Sequence[Flag] | None = None) -> None:
    from tfy_audit._core.options import SOURCE_FLAGS, WINDOW_FLAGS, filter_names

    g = p.add_argument_group("source")
    _add_flags(g, (*SOURCE_FLAGS, *(WINDOW_FLAGS if windows is None else windows)))
    f = p.add_argument_group("filters (each filter set keeps its own high-water mark)")
    for name in filter_names():
        help_text = "comma-separated slugs" if name == "subject_slug" else f"only this {name}"
        f.add_argument(
            "--" + name.replace("_", "-"),
            dest=_filter_dest(name),
            metavar=name.upper(),
            help=f"{help_text} (default: none)",
        )


def _version() -> str:
    from tfy_audit._core.version import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    from tfy_audit._core.options import (
        CONCURRENCY_FLAG,
        MAX_OFFSET_FLAG,
        PAGE_SIZE_FLAG,
        SINCE_FLAG,
        SYNC_FLAGS,
        VERIFY_WINDOW_FLAGS,
    )

    parser = _Parser(
        prog="tfy-audit",
        description="Load a TrueFoundry control plane's audit trail into a warehouse you own.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 incomplete data, "
        "130/143 interrupted (SIGINT/SIGTERM).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    _log_format_arg(parser)
    sub = parser.add_subparsers(
        dest="command", parser_class=_Parser, metavar="{" + ",".join(COMMANDS) + "}"
    )

    def command(name: str, text: str) -> argparse.ArgumentParser:
        made: argparse.ArgumentParser = sub.add_parser(
            name, help=text, description=text, formatter_class=_HelpFormatter
        )
        return made

    sync = command("sync", "load new audit events into the destination")
    _destination_args(sync)
    _source_args(sync)
    _add_flags(sync.add_argument_group("sync"), SYNC_FLAGS)
    _json_arg(sync)
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")

    verify = command("verify", "compare the service's counts per UTC day with the warehouse")
    _destination_args(verify)
    _source_args(verify, VERIFY_WINDOW_FLAGS)
    # --page-size and --max-offset: how --ids and --repair page the service, as sync does
    _add_flags(
        verify.add_argument_group("verify"),
        [SINCE_FLAG, CONCURRENCY_FLAG, PAGE_SIZE_FLAG, MAX_OFFSET_FLAG],
    )
    verify.add_argument("--repair", action="store_true", help="re-sync the days that differ")
    verify.add_argument(
        "--ids",
        action="store_true",
        help="compare event ids per day, not only counts (about one request per 1,000 events)",
    )
    _json_arg(verify)

    status = command("status", "how fresh the warehouse is; reads the destination only")
    _destination_args(status)
    status.add_argument(
        "--max-lag", help="exit 3 when the mark is older than this, e.g. 2h (default: no limit)"
    )
    status.add_argument(
        "--check-service",
        action="store_true",
        help="also ask the service for events after the mark (default: off)",
    )
    status.add_argument(
        "--host", default=None, help="control plane URL, for --check-service (default: TFY_HOST)"
    )
    _json_arg(status)

    views = command("views", "(re)create the analysis views in the dataset")
    _destination_args(views)
    _json_arg(views)

    report = command("report", "write a self-contained HTML dashboard")
    _destination_args(report)
    report.add_argument("--out", default="report.html", help="HTML file (default: %(default)s)")
    from tfy_audit._report.options import REPORT_FLAGS

    for flag in REPORT_FLAGS:  # declared with ReportOptions, its defaults shown from there
        report.add_argument(flag.flag, dest=flag.dest, help=flag.help_text())
    _json_arg(report)

    _sql_args(command("sql", "run one read-only SQL query on the dataset"))

    _simulate_args(command("simulate", "serve the built-in TrueFoundry simulator on loopback"))

    demo = command("demo", "simulate a control plane, sync it, show answers")
    demo.add_argument(
        "--db", default="tfy_audit_demo.duckdb", help="DuckDB file (default: %(default)s)"
    )
    demo.add_argument("--events", type=int, default=40_000, help="events (default: %(default)s)")
    demo.add_argument(
        "--days", type=float, default=90, help="days of history (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=7, help="random seed (default: %(default)s)")
    return parser


def _log_format_arg(parser: argparse.ArgumentParser) -> None:
    from tfy_audit._core.settings import DEFAULT_LOG_FORMAT, LOG_FORMAT_ENV, LOG_FORMATS

    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,  # then the environment's; see _log_format
        help="log lines on stderr: text, or json for a log shipper (one JSON object a line; "
        f"no progress bar) (default: {DEFAULT_LOG_FORMAT}, or ${LOG_FORMAT_ENV})",
    )


def _log_format(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """`--log-format`, else the environment variable, else the default; a bad value in the
    environment is a usage error like a bad flag."""
    from tfy_audit._core.settings import DEFAULT_LOG_FORMAT, LOG_FORMAT_ENV, LOG_FORMATS

    chosen: str = args.log_format or os.environ.get(LOG_FORMAT_ENV) or DEFAULT_LOG_FORMAT
    if chosen not in LOG_FORMATS:
        parser.error(f"{LOG_FORMAT_ENV}={chosen!r} is not one of {', '.join(LOG_FORMATS)}")
    return chosen


def _say(text: str, level: int = logging.ERROR, **fields: Any) -> None:
    """A line for the user on stderr: as written, or a JSON record under `--log-format json`
    (its message without the `tfy-audit: error: ` prefix, `fields` as its keys)."""
    if not _Parser.json_logs:
        print(text, file=sys.stderr, flush=True)
        return
    from tfy_audit._cli.logjson import fields as record_fields

    message = text.removeprefix("tfy-audit: ").removeprefix("error: ")
    event = str(fields.pop("event", "exit"))
    logger.log(level, "%s", message, extra=record_fields(event, **fields))


def _sql_args(sql: argparse.ArgumentParser) -> None:
    from tfy_audit._core.settings import DEFAULT_SQL_LIMIT, SQL_FORMATS

    _destination_args(sql)
    sql.add_argument("query", nargs="?", help="one SELECT; tables and views by their plain names")
    sql.add_argument("--file", help="read the query from this file, - for stdin (default: none)")
    sql.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_SQL_LIMIT,
        help="rows to show; 0 for all (default: %(default)s)",
    )
    sql.add_argument(
        "--format",
        choices=SQL_FORMATS,
        default=SQL_FORMATS[0],
        help="an aligned table, CSV with a header, or a JSON array (default: %(default)s)",
    )
    _json_arg(sql)


def _simulate_args(sim: argparse.ArgumentParser) -> None:
    from tfy_audit._core.settings import DEFAULT_MAX_OFFSET, SIMULATOR_API_KEY

    def arg(flag: str, help_text: str, **kw: Any) -> None:
        sim.add_argument(flag, help=f"{help_text} (default: %(default)s)", **kw)

    arg("--port", "TCP port", type=int, default=8765)
    arg("--bind", "address to listen on", default="127.0.0.1")
    arg("--events", "events in the generated history", type=int, default=30_000)
    arg("--days", "days the history spans, up to now", type=float, default=90)
    arg("--seed", "random seed of the history", type=int, default=7)
    arg("--api-key", "the token it accepts", default=SIMULATOR_API_KEY)
    arg("--latency-ms", "added to each response, in milliseconds", type=float, default=0.0)
    arg("--rate-429", "share of requests answered 429 (0..1)", type=float, default=0.0)
    arg("--rate-503", "share of requests answered 503 (0..1)", type=float, default=0.0)
    arg("--retry-after", "Retry-After sent with 429/503, in seconds", default="1")
    arg("--max-offset", "deepest offset served; 0: no limit", type=int, default=DEFAULT_MAX_OFFSET)
    arg("--order", "order of a page's events", choices=("desc", "asc", "shuffled"), default="desc")
    arg("--insert-every", "add an event every N requests; 0: never", type=int, default=0)
    arg(
        "--clock-offset",
        "seconds its clock is ahead of this machine's (negative: behind)",
        type=float,
        default=0.0,
    )


def _configure_logging(debug: bool, quiet: bool, json_logs: bool = False) -> None:
    """One handler on stderr, in one format, for our records and dlt's (see progress.py)."""
    from tfy_audit._cli.progress import ForwardHandler, LogHandler
    from tfy_audit._core.redact import install_log_filter

    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = LogHandler(json=json_logs)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(json_logs)  # a Python warning is a record too, not a raw line
    install_log_filter()  # no secret in any log line
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO if debug else logging.WARNING)
    dlt_logger = logging.getLogger("dlt")
    for old in list(dlt_logger.handlers):
        dlt_logger.removeHandler(old)
    # dlt keeps the first handler it finds on its logger and only sets its formatter
    dlt_logger.addHandler(ForwardHandler(handler))
    if not debug:
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")


def _on_sigterm(signum: int, frame: Any) -> None:
    _ignore_signals()
    raise Terminated()


def _on_sigint(signum: int, frame: Any) -> None:
    _ignore_signals()
    raise KeyboardInterrupt()


def _ignore_signals() -> None:
    """After the first signal the run is ending: a second one must not cut its cleanup (the
    lock, the worker processes) short with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _install_signal_handlers() -> None:
    """A signal the command was started ignoring (SIGINT in a shell script's background job)
    stays ignored, as Python itself leaves it."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, _on_sigterm)


class _Outcome:
    """What a command ends with: its exit code and, under --json, the document's fields."""

    def __init__(self, code: int, fields: dict[str, Any] | None = None) -> None:
        self.code = code
        self.fields = fields or {}


_STATUS = {
    EXIT_OK: "ok",
    EXIT_FAILURE: "failed",
    EXIT_USAGE: "usage_error",
    EXIT_INCOMPLETE: "incomplete",
    EXIT_SIGINT: "interrupted",
    EXIT_SIGTERM: "interrupted",
}


def _print_json(command: str, code: int, fields: dict[str, Any], error: str | None) -> None:
    document = {
        "command": command,
        "status": _STATUS.get(code, "failed"),
        "exit_code": code,
        "error": error,
        **fields,
    }
    # on one line under JSON logs: a scheduler may merge stdout into the same log stream
    indent = None if _Parser.json_logs else 2
    print(json.dumps(document, indent=indent, default=str), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    given = tuple(sys.argv[1:] if argv is None else argv)
    _Parser.wants_json = given if "--json" in given else None
    from tfy_audit._cli.logjson import requested_format

    _Parser.json_logs = requested_format(given) == "json"
    args = parser.parse_args(given)
    _Parser.json_logs = _log_format(parser, args) == "json"
    if args.command is None:  # a bare `tfy-audit`
        parser.print_help()
        return EXIT_OK
    _configure_logging(args.debug, args.quiet, _Parser.json_logs)
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
    # the sync failed on every run. Files are cut at these sizes instead (rows are written in
    # buffers of this many); the size is the compressed file's, so rows that compress well
    # still make large jobs, which are then loaded one at a time (destination.load_workers).
    # Ordinary pages come as Arrow tables of YIELD_EVENTS rows, written whole, so their path
    # is unchanged.
    from tfy_audit._core.settings import DATA_WRITER_BUFFER_MAX_ITEMS, DATA_WRITER_FILE_MAX_BYTES

    os.environ.setdefault("DATA_WRITER__FILE_MAX_BYTES", str(DATA_WRITER_FILE_MAX_BYTES))
    os.environ.setdefault("DATA_WRITER__BUFFER_MAX_ITEMS", str(DATA_WRITER_BUFFER_MAX_ITEMS))
    as_json = bool(getattr(args, "json", False))
    error: str | None = None
    outcome = _Outcome(EXIT_FAILURE)
    try:
        outcome = _run(args)
    except TfyAuditError as exc:
        if args.debug:
            logger.exception("failed")
        error = str(exc)
        outcome = _Outcome(exc.exit_code)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        error = "terminated" if terminated else "interrupted"
        error += "; run the same command again to continue"
        outcome = _Outcome(EXIT_SIGTERM if terminated else EXIT_SIGINT)
    except Exception as exc:  # the last resort: one line, the traceback only with --debug
        if args.debug:
            logger.exception("failed")
        # here, not at the top: `tfy-audit --help` loads no dlt
        from tfy_audit._compat.dlt import explain_destination_failure

        explained = explain_destination_failure(exc)
        if explained is None:
            text = " ".join(str(exc).split())[:400]
            explained = f"{type(exc).__name__}: {text} (run with --debug for details)"
        error = explained
        outcome = _Outcome(EXIT_FAILURE)
    if error is not None:
        prefix = (
            "tfy-audit: " if outcome.code in (EXIT_SIGINT, EXIT_SIGTERM) else "tfy-audit: error: "
        )
        status = _STATUS.get(outcome.code, "failed")
        _say(prefix + error, status=status, exit_code=outcome.code)
    if as_json:
        _print_json(args.command, outcome.code, outcome.fields, error)
    return outcome.code


def _run(args: argparse.Namespace) -> _Outcome:
    if args.command == "sync":
        return cmd_sync(args)
    if args.command == "verify":
        return cmd_verify(args)
    if args.command == "views":
        return cmd_views(args)
    if args.command == "report":
        return cmd_report(args)
    if args.command == "status":
        from tfy_audit._engine.status import cmd_status

        code, document = cmd_status(args, target_from_args(args))
        return _Outcome(code, document)
    if args.command == "sql":
        return cmd_sql(args)
    if args.command == "simulate":
        return _Outcome(cmd_simulate(args))
    from tfy_audit._cli.demo import run_demo

    return _Outcome(run_demo(db=args.db, events=args.events, days=args.days, seed=args.seed))


def filters_from_args(args: argparse.Namespace) -> AuditLogFilters:
    from tfy_audit._core.options import filter_names
    from tfy_audit._service.client import AuditLogFilters

    return AuditLogFilters.from_mapping(
        {name: getattr(args, _filter_dest(name), None) for name in filter_names()}
    )


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The options set on the command line, by their path in SyncOptions."""
    from tfy_audit._core.options import (
        DESTINATION_FLAGS,
        SOURCE_FLAGS,
        SYNC_FLAGS,
        WINDOW_FLAGS,
        parse_flag,
    )

    values: dict[str, Any] = {}
    for flag in (*DESTINATION_FLAGS, *SOURCE_FLAGS, *WINDOW_FLAGS, *SYNC_FLAGS):
        given = getattr(args, _dest(flag), None)
        if given is not None:
            values[flag.path] = parse_flag(flag, given)
    return values


def sync_options_from_args(args: argparse.Namespace) -> SyncOptions:
    from tfy_audit._core.options import SyncOptions, options_from_values, validate
    from tfy_audit._service.decoders import default_workers

    values = _flag_values(args)
    values["filters"] = filters_from_args(args)
    if "since" not in values:
        since = _configured_since()
        if since is not None:
            values["since"] = since
    if args.command == "sync" and "workers" not in values:
        values["workers"] = default_workers()
    options = options_from_values(values, SyncOptions())
    validate(options)
    return options


def _configured_since() -> Any:
    """`sources.truefoundry_audit.since` from dlt config (.dlt/config.toml, or the
    SOURCES__TRUEFOUNDRY_AUDIT__SINCE environment variable)."""
    from tfy_audit._core.options import parse_since
    from tfy_audit._source.config import _from_dlt

    text = _from_dlt("since")
    return parse_since(text, "since (sources.truefoundry_audit.since)") if text else None


def cmd_sync(args: argparse.Namespace) -> _Outcome:
    from tfy_audit._cli.progress import ProgressReporter
    from tfy_audit._core.memory import limit_malloc_arenas
    from tfy_audit._engine.sync import run_sync

    options = sync_options_from_args(args)
    if _own_process:
        # dlt and pyarrow are imported: hundreds of thousands of objects that live as long as
        # the process. Frozen, they are not walked by each full collection the sync's
        # allocations set off. Not done when `main()` is called as a library: its caller's
        # objects are not ours to freeze, nor its allocator to tune.
        gc.freeze()
        limit_malloc_arenas(3)  # before the sync's threads: see memory.py

    no_bar = args.no_progress or args.json or _Parser.json_logs
    progress = ProgressReporter(bar=False if no_bar else None)
    summary = run_sync(options, progress)
    code = EXIT_INCOMPLETE if summary.incomplete_windows or summary.repeated_ids else EXIT_OK
    if _Parser.json_logs:  # the summary is a record, with the figures of --json's document
        from tfy_audit._cli.logjson import fields

        figures = {"status": _STATUS[code], "exit_code": code, **summary.as_dict()}
        logger.info(format_summary(summary).splitlines()[0], extra=fields("summary", **figures))
    elif not args.json:
        print(format_summary(summary))
    if summary.incomplete_windows:
        _say(
            f"tfy-audit: {len(summary.incomplete_windows)} window(s) could not be read "
            "completely (see the log above); the high-water mark stays before them, so the "
            "next run reads them again; `tfy-audit verify --end "
            f"{summary.end.strftime('%Y-%m-%dT%H:%M:%SZ')}` compares their days",
            event="incomplete",
        )
    if summary.repeated_ids:
        from tfy_audit._core.redact import clean

        shown = ", ".join(clean(i) for i in summary.repeated_ids[:5]) + (
            f" and {len(summary.repeated_ids) - 5} more" if len(summary.repeated_ids) > 5 else ""
        )
        _say(
            f"tfy-audit: the service served {len(summary.repeated_ids)} id(s) twice in one "
            f"window and counts both copies ({shown}); confirmed by a re-read, loaded once and "
            "recorded in event_anomalies (later runs pass it quietly); `tfy-audit verify` "
            "lists them",
            event="repeated_ids",
        )
    return _Outcome(code, summary.as_dict())


def format_summary(summary: Any) -> str:
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(summary.rows.items())) or "none"
    lines = [
        f"synced {summary.start.isoformat()} .. {summary.end.isoformat()}"
        + (f" with filters {summary.filters}" if summary.filters else ""),
        f"  new events: {summary.events_new:,}"
        + (
            f"  ({summary.events_reread:,} more re-read: already loaded)"
            if summary.events_reread
            else ""
        ),
        f"  rows written: {rows}",
        f"  events read: {summary.events_read:,} in {summary.windows} window(s), "
        f"{summary.chunks} chunk(s)",
        f"  requests: {summary.requests:,} ({summary.retries:,} retried)  "
        f"time: {summary.seconds:.1f}s",
    ]
    if summary.anomalies:
        lines.append(f"  {anomalies_text(summary.anomalies)}")

    if summary.continued_from:
        lines.append(f"  continuing the dataset's mark from pipeline {summary.continued_from!r}")
    if summary.previous_mark is None and summary.advances_state:
        lines.append(f"  first sync: read {_first_start_text(summary)}")
    if not summary.advances_state:
        if summary.previous_mark is None:
            after = "no high-water mark is set; a plain `tfy-audit sync` reads " + (
                _first_start_text(summary, plain=True)
            )
        else:
            after = f"the high-water mark stays at {summary.previous_mark.isoformat()}"
        lines.append(
            f"  one-off range: history before {summary.start.isoformat()} was not read; {after}"
        )
    if summary.unread is not None:
        gap_start, gap_end = (t.isoformat() for t in summary.unread)
        lines.append(
            f"  not read: {gap_start} .. {gap_end} (between this range and what the syncs "
            f"read); `tfy-audit sync --start {gap_start} --end {gap_end}` reads it"
        )
    if summary.recovered_packages:
        lines.append(f"  finished {summary.recovered_packages} package(s) of an interrupted run")
    from tfy_audit._core.settings import CLOCK_SKEW_WARN_SECONDS

    offset = getattr(summary, "clock_offset_seconds", None)
    if offset is not None and abs(offset) > CLOCK_SKEW_WARN_SECONDS:
        side = "behind" if offset < 0 else "ahead of"
        lines.append(
            f"  service clock: {abs(offset):.0f} s {side} this machine's; the run read up to "
            "the earlier of the two"
        )
    if summary.covered_until:
        lines.append(f"  high-water mark: {summary.covered_until.isoformat()}")
    if summary.published:
        published = summary.published
        lines.append(
            f"  published: {published['path']} ({published['bytes'] / 2**20:,.1f} MiB, "
            f"{published['seconds']:.1f}s)"
        )
    return "\n".join(lines)


def anomalies_text(counts: dict[str, int]) -> str:
    from tfy_audit._core.settings import ANOMALIES_TABLE
    from tfy_audit._service.anomalies import count_text

    return f"anomalies: {count_text(counts)} — see table {ANOMALIES_TABLE}"


def _first_start_text(summary: Any, *, plain: bool = False) -> str:
    from tfy_audit._core.settings import HISTORY_START

    first = summary.first_run_start
    if first is None or first <= HISTORY_START:
        since = first or HISTORY_START
        return f"the whole history (from {since.isoformat()}; --since sets a later start)"
    return f"from {first.isoformat()} (--since); events before it are not read"


def _require_database(args: argparse.Namespace) -> None:
    """Read-only commands create nothing: a missing DuckDB file is refused."""
    from tfy_audit._core.options import DestinationOptions, options_from_values, validate_target
    from tfy_audit._warehouse.adapter import warehouse_for

    target: DestinationOptions = options_from_values(_flag_values(args)).target
    validate_target(target)
    database = warehouse_for(target).database_file(target)
    if database is not None and not database.exists():
        raise UsageError(
            f"{target.db} does not exist; run `tfy-audit sync` first, or pass the --db it wrote"
        )


def cmd_verify(args: argparse.Namespace) -> _Outcome:
    from tfy_audit._engine.verify import run_verify, summarize_days

    _require_database(args)
    options = sync_options_from_args(args)
    outcome = run_verify(options, repair=args.repair, ids=args.ids)
    final: Any = outcome.final  # a VerifyResult, or an IdsResult with --ids
    text = _ids_text if args.ids else _verify_text
    if not args.json:
        if outcome.first_day is not None:
            print(outcome.first_day.text)
        print(text(outcome.first, "before repair" if outcome.repaired_days else ""))
        if outcome.after_repair is not None:
            days = summarize_days(outcome.repaired_days)
            print(f"re-synced {len(outcome.repaired_days)} day(s): {days}")
            print(text(outcome.after_repair, "after repair"))
    code = EXIT_OK
    if final.failing:
        days = summarize_days([d.day for d in final.failing])
        if args.ids:
            again = "--ids --repair"
            what = f"{final.missing_events:,} event(s) missing in the warehouse"
            unread = sum(1 for d in final.failing if not d.complete)
            if unread:
                what += f", {unread} day(s) not read completely"
            lead = f"{len(final.failing)} day(s) differ by id ({what})"
        else:
            again, lead = "--repair", f"{len(final.failing)} day(s) differ"
        hint = "" if args.repair else f"; run `tfy-audit verify {again}` to re-sync them"
        set_aside = getattr(final, "set_aside", {})
        if hint and any(set_aside.get(d.day) for d in final.failing):
            # re-read at the same cap, an event set aside is set aside again
            hint += " (with a --max-response-mb above the one the events set aside exceeded)"
        _say(f"tfy-audit: {lead}: {days}{hint}", event="differ")
        code = EXIT_INCOMPLETE
    return _Outcome(code, _verify_json(outcome))


def _summarized(items: list[str]) -> str:
    from tfy_audit._engine.verify_ids import summarize

    return summarize(items)


def _ids_text(result: Any, label: str) -> str:
    """`verify --ids`: a head line, a row per differing day, and one line per kind of id."""
    differing, failing = result.differing, result.failing
    head = (
        f"verified ids {result.start.isoformat()} .. {result.end.isoformat()}"
        + (f" ({label})" if label else "")
        + f": {len(result.days)} day(s) with events, {len(result.days) - len(differing)} match, "
        f"{len(failing)} lack events, {len(differing) - len(failing)} differ only by events "
        "gone from the service or ids held on another day "
        f"({result.requests} requests, {result.pages} of them pages)"
    )
    if not differing:
        return head
    lines = [head, f"  {'day':<10}  {'service':>9}  {'warehouse':>9}  {'missing':>8}  {'gone':>6}"]
    for d in differing[:VERIFY_TABLE_ROWS]:
        lines.append(
            f"  {d.day.isoformat():<10}  {d.service:>9,}  {d.warehouse:>9,}  "
            f"{len(d.missing):>8,}  {len(d.gone_from_service):>6,}"
            + ("" if d.complete else "  not read completely")
        )
    if len(differing) > VERIFY_TABLE_ROWS:
        more = len(differing) - VERIFY_TABLE_ROWS
        lines.append(f"  ... and {more} more day(s) (--json lists them all)")
    for kind, attr in (
        ("missing in the warehouse", "missing"),
        ("gone from the service and kept in the warehouse", "gone_from_service"),
    ):
        pairs = [f"{d.day.isoformat()} {i}" for d in differing for i in getattr(d, attr)]
        if pairs:
            days = sum(1 for d in differing if getattr(d, attr))
            lines.append(
                f"{len(pairs):,} event(s) on {days} day(s) are {kind}: {_summarized(pairs)}"
            )
    shared = [
        f"{d.day.isoformat()} {i} (held {on.isoformat()})"
        for d in differing
        for i, on in d.elsewhere
    ]
    if shared:
        lines.append(
            f"{len(shared):,} event(s) share an id the warehouse holds on another day, one row "
            f"per id: {_summarized(shared)}"
        )
    return "\n".join(lines)


def _verify_text(result: Any, label: str) -> str:
    differing = result.differing
    head = (
        f"verified {result.start.isoformat()} .. {result.end.isoformat()}"
        + (f" ({label})" if label else "")
        + f": {len(result.days)} day(s) with events, {len(result.days) - len(differing)} match, "
        f"{len(differing)} differ ({result.requests} requests); {_bounds_text(result.bounds)}"
    )
    repeated = getattr(result, "repeated_ids", [])
    if repeated:
        from tfy_audit._core.redact import clean

        head += "\n  ids the service serves twice (recorded in event_anomalies, loaded once): "
        head += ", ".join(clean(i) for i in repeated)
    if not differing:
        return head
    lines = [head, f"  {'day':<10}  {'service':>9}  {'warehouse':>9}  {'missing':>8}"]
    for d in differing[:VERIFY_TABLE_ROWS]:
        lines.append(
            f"  {d.day.isoformat():<10}  {d.service:>9,}  {d.warehouse:>9,}  {d.missing:>8,}"
        )
    if len(differing) > VERIFY_TABLE_ROWS:
        more = len(differing) - VERIFY_TABLE_ROWS
        lines.append(f"  ... and {more} more day(s) (--json lists them all)")
    set_aside = getattr(result, "set_aside", {})
    for d in differing[:VERIFY_TABLE_ROWS]:
        if set_aside.get(d.day):
            n = set_aside[d.day]
            lines.append(
                f"  {d.day.isoformat()}: {n:,} event{'s' if n != 1 else ''} set aside as too "
                "large (event_anomalies)"
            )
    return "\n".join(lines)


# the differing days verify prints as a table; --json lists every one
VERIFY_TABLE_ROWS = 20


def _bounds_text(bounds: Any) -> str:
    """How the service reads its bounds, as verify learnt it."""

    def side(inclusive: bool | None) -> str:
        return "unknown" if inclusive is None else "inclusive" if inclusive else "exclusive"

    return (
        f"the service's start is {side(bounds.start_inclusive)}, "
        f"its end {side(bounds.end_inclusive)}"
    )


def _verify_json(outcome: Any) -> dict[str, Any]:
    def result(r: Any) -> dict[str, Any]:
        return {
            "start": r.start.isoformat(),
            "end": r.end.isoformat(),
            "days": len(r.days),
            "requests": r.requests,
            # how the service reads start/end (null: unknown); `warehouse` below counts the
            # warehouse's events on a day's padded bounds the same way
            "service_bounds": {
                "start_inclusive": r.bounds.start_inclusive,
                "end_inclusive": r.bounds.end_inclusive,
            },
            "differing": [
                {"day": d.day.isoformat(), "service": d.service, "warehouse": d.warehouse}
                # events set aside as too large (event_anomalies) on the day, when any
                | (
                    {"set_aside_too_large": n}
                    if (n := getattr(r, "set_aside", {}).get(d.day))
                    else {}
                )
                for d in r.differing
            ],
            # ids a sync recorded as served twice by the service (event_anomalies)
            "repeated_ids": getattr(r, "repeated_ids", []),
        }

    begin = outcome.first_day
    if hasattr(outcome.first, "undated"):  # verify --ids
        return {
            "first_day": begin and _first_day_json(begin),
            "ids": _ids_json(outcome.first),
            "repaired_days": [d.isoformat() for d in outcome.repaired_days],
            "ids_after_repair": _ids_json(outcome.after_repair) if outcome.after_repair else None,
        }
    return {
        "first_day": begin and _first_day_json(begin),
        "result": result(outcome.first),
        "repaired_days": [d.isoformat() for d in outcome.repaired_days],
        "after_repair": result(outcome.after_repair) if outcome.after_repair else None,
    }


def _first_day_json(begin: Any) -> dict[str, Any]:
    return {
        "day": begin.start.date().isoformat(),
        "start": begin.start.isoformat(),
        "why": begin.why,
    }


def _ids_json(r: Any) -> dict[str, Any]:
    """`verify --ids --json`: every differing day with every id (the text shows a few)."""
    return {
        "start": r.start.isoformat(),
        "end": r.end.isoformat(),
        "days": len(r.days),
        "requests": r.requests,
        "pages": r.pages,
        "missing": r.missing,
        "gone_from_service": r.gone_from_service,
        "undated": r.undated,
        "differing": [
            {
                "day": d.day.isoformat(),
                "service": d.service,
                "warehouse": d.warehouse,
                "missing": d.missing,
                "gone_from_service": d.gone_from_service,
                "held_on_another_day": [
                    {"id": i, "warehouse_day": on.isoformat()} for i, on in d.elsewhere
                ],
            }
            | ({} if d.complete else {"complete": False})
            for d in r.differing
        ],
    }


def target_from_args(args: argparse.Namespace) -> Any:
    from tfy_audit._core.options import options_from_values

    return options_from_values(_flag_values(args)).target


def _existing_pipeline(args: argparse.Namespace, *, reads_only: bool = False) -> Any:
    """The pipeline of an earlier sync, its schema restored from the destination. `reads_only`:
    for a command that only reads, which works on a DuckDB file that refuses writes."""
    from tfy_audit._warehouse.destination import make_pipeline, reading_pipeline

    _require_database(args)
    target = target_from_args(args)
    pipeline = reading_pipeline(target) if reads_only else make_pipeline(target)
    pipeline.sync_destination()
    return pipeline


def cmd_views(args: argparse.Namespace) -> _Outcome:
    from tfy_audit._warehouse.views import apply_views

    created = apply_views(_existing_pipeline(args))
    if not args.json:
        print(f"views: {', '.join(created) if created else 'none (destination keeps no views)'}")
    return _Outcome(EXIT_OK, {"views": created})


def report_options(args: argparse.Namespace, *, now: datetime | None = None) -> ReportOptions:
    """The `report` command's `ReportOptions`, from its flags (`REPORT_FLAGS`)."""
    from tfy_audit._report.options import REPORT_FLAGS, options_from_text

    values = {flag.dest: getattr(args, flag.dest) for flag in REPORT_FLAGS}
    return options_from_text(values, now=now)


def cmd_report(args: argparse.Namespace) -> _Outcome:
    from tfy_audit._report import write_report

    options = report_options(args)  # a bad range is refused before the destination is opened
    summary = write_report(_existing_pipeline(args, reads_only=True), Path(args.out), options)
    if not args.json:
        print(
            f"wrote {summary.path}: {summary.events:,} events, {summary.subjects:,} subjects, "
            f"{summary.days} days, {summary.sensitive:,} sensitive actions"
        )
    return _Outcome(
        EXIT_OK,
        {
            "path": str(summary.path),
            "events": summary.events,
            "subjects": summary.subjects,
            "days": summary.days,
            "sensitive": summary.sensitive,
        },
    )


def _sql_text(args: argparse.Namespace) -> str:
    if (args.query is None) == (args.file is None):
        raise UsageError('pass one query, as an argument (tfy-audit sql "select 1") or --file')
    if args.file is None:
        return str(args.query)
    if args.file == "-":
        return sys.stdin.read()
    try:
        return Path(args.file).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(
            f"cannot read --file {args.file} ({type(exc).__name__}); pass a UTF-8 text file"
        ) from exc


def cmd_sql(args: argparse.Namespace) -> _Outcome:
    from tfy_audit._warehouse import sql_query

    result = sql_query.run_query(target_from_args(args), _sql_text(args), limit=args.limit)
    if not args.json:
        formats = {
            "table": sql_query.format_table,
            "csv": sql_query.format_csv,
            "json": sql_query.format_json,
        }
        print(formats[args.format](result))
    if result.truncated:
        _say(
            f"tfy-audit: showing the first {len(result.rows):,} rows; --limit N shows more, "
            "--limit 0 all",
            logging.WARNING,
            event="truncated",
        )
    return _Outcome(
        EXIT_OK,
        {
            "source": result.source,
            "columns": result.columns,
            "rows": [[sql_query.plain(v) for v in row] for row in result.rows],
            "row_count": len(result.rows),
            "truncated": result.truncated,
        },
    )


def cmd_simulate(args: argparse.Namespace) -> int:
    from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port")
    config = SimulatorConfig(
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        rate_429=args.rate_429,
        rate_503=args.rate_503,
        retry_after=args.retry_after,
        max_offset=args.max_offset or None,
        order=args.order,
        insert_every=args.insert_every,
        clock_offset_seconds=args.clock_offset,
    )
    logger.info("generating %d events over %g days", args.events, args.days)
    sim = Simulator(config)
    # the history ends at the service's own now
    sim.add_events(generate_history(args.events, days=args.days, seed=args.seed, end=sim.now()))
    try:
        server = SimulatorServer(sim, host=args.bind, port=args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.bind}:{args.port} ({exc}); pick another --port"
        ) from exc
    with server:
        print(f"simulator serving {args.events:,} events at {server.url}", flush=True)
        print(f"  export TFY_HOST={server.url} TFY_API_KEY={args.api_key}", flush=True)
        print(
            "  then: tfy-audit sync    (into ./tfy_audit.duckdb; Ctrl-C stops the simulator)",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return EXIT_OK


_own_process = False  # True when the process is the `tfy-audit` command itself


def entry() -> NoReturn:
    """The `tfy-audit` command: `main()`, then a prompt exit."""
    global _own_process
    _own_process = True
    _install_signal_handlers()
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """End the process once the command is done, skipping the interpreter's teardown.

    Freeing every object of dlt, pyarrow and DuckDB one by one takes ~0.25 s, a tenth of a
    scheduled sync, and changes nothing on disk. The exit handlers still run (logging's flush,
    multiprocessing's cleanup) and the output is flushed. A non-daemon thread still running
    gets the normal exit, which waits for it.
    """
    main_thread = threading.main_thread()
    if any(t is not main_thread and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    lost_output = False
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            lost_output = True
    # Like the interpreter's own exit: output that could not be written (a closed pipe, a full
    # disk) turns success into 120, so a scheduler does not take a lost summary for a good run.
    os._exit(120 if lost_output and code == 0 else code)


if __name__ == "__main__":  # pragma: no cover
    entry()
