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
import sys
import threading
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import TfyAuditError, UsageError, explain_destination_failure
from .settings import (
    DEFAULT_CHUNK_EVENTS,
    DEFAULT_CONCURRENCY,
    DEFAULT_DATASET,
    DEFAULT_DUCKDB_PATH,
    DEFAULT_MAX_OFFSET,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PIPELINE_NAME,
    FILTER_PARAMS,
)

# The rest is imported where it is used: a decoder worker process imports this module again
# (it is the command's main module), and should not pay for httpx, pendulum or dlt there.
if TYPE_CHECKING:
    from .client import AuditLogFilters

logger = logging.getLogger("tfy_audit")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit code 2, like every usage error
        self.exit(EXIT_USAGE, f"tfy-audit: error: {message} (see {self.prog} --help)\n")


def _destination_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("destination")
    g.add_argument("--db", default=DEFAULT_DUCKDB_PATH, help="DuckDB file (default: %(default)s)")
    g.add_argument(
        "--destination",
        default="duckdb",
        help="any dlt destination (duckdb, postgres, filesystem, bigquery, snowflake, ...); "
        "credentials come from dlt config, e.g. DESTINATION__POSTGRES__CREDENTIALS",
    )
    g.add_argument("--dataset", default=DEFAULT_DATASET, help="dataset/schema name")
    g.add_argument("--pipeline-name", default=DEFAULT_PIPELINE_NAME)
    g.add_argument(
        "--pipelines-dir",
        default=None,
        help="dlt's working dir (default: .<db>.pipelines beside a DuckDB file, else ~/.dlt)",
    )


def _source_args(p: argparse.ArgumentParser, *, with_window: bool = True) -> None:
    g = p.add_argument_group("source")
    g.add_argument(
        "--host", default=None, help="control plane URL (default: TFY_HOST or dlt config)"
    )
    if with_window:
        g.add_argument("--start", default=None, help="ISO 8601, or a duration back (7d)")
        g.add_argument("--end", default=None, help="ISO 8601 (default: now, fixed at start)")
    g.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    g.add_argument(
        "--retries", type=int, default=8, help="attempts per request on 429/5xx/network errors"
    )
    f = p.add_argument_group("filters (each filter set keeps its own high-water mark)")
    for name in FILTER_PARAMS:
        help_text = "comma-separated" if name == "subject_slug" else None
        f.add_argument("--" + name.replace("_", "-"), dest="f_" + name, help=help_text)


def _version() -> str:
    from . import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tfy-audit",
        description="Load a TrueFoundry control plane's audit trail into a warehouse you own.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 incomplete data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sync = sub.add_parser("sync", help="load new audit events into the destination")
    _destination_args(sync)
    _source_args(sync)
    g = sync.add_argument_group("tuning")
    g.add_argument("--lookback", default="10m", help="re-read this far behind the mark (10m)")
    g.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    g.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE, help="1..1000")
    g.add_argument("--max-offset", type=int, default=DEFAULT_MAX_OFFSET)
    g.add_argument("--chunk-events", type=int, default=DEFAULT_CHUNK_EVENTS)
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that decode pages (default: cores, at most 4; 0: none)",
    )
    g.add_argument("--wait", type=float, default=0.0, help="wait this long for a running sync")
    sync.add_argument("--json", action="store_true", help="print the summary as JSON")
    sync.add_argument("--no-progress", action="store_true", help="no progress bar")

    verify = sub.add_parser(
        "verify", help="compare the service's counts per UTC day with the warehouse"
    )
    _destination_args(verify)
    _source_args(verify)
    verify.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    verify.add_argument("--repair", action="store_true", help="re-sync the days that differ")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")

    status = sub.add_parser("status", help="how fresh the warehouse is; reads the destination")
    _destination_args(status)
    status.add_argument("--max-lag", help="exit 3 when the mark is older than this (e.g. 2h)")
    status.add_argument("--check-service", action="store_true", help="ask the service too")
    status.add_argument("--host", default=None, help="for --check-service (default: TFY_HOST)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    views = sub.add_parser("views", help="(re)create the analysis views in the dataset")
    _destination_args(views)

    report = sub.add_parser("report", help="write a self-contained HTML dashboard")
    _destination_args(report)
    report.add_argument("--out", default="report.html", help="HTML file (default %(default)s)")
    for flag in ("--since", "--start", "--end", "--timezone", "--work-hours", "--severity-rules"):
        report.add_argument(flag, help="see README: Report (range default: the last 30 days)")

    sim = sub.add_parser("simulate", help="serve the built-in TrueFoundry simulator")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--bind", default="127.0.0.1")
    sim.add_argument("--events", type=int, default=30_000)
    sim.add_argument("--days", type=float, default=90)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--api-key", default="tfy-sim-key")
    sim.add_argument("--latency-ms", type=float, default=0.0)
    sim.add_argument("--rate-429", type=float, default=0.0)
    sim.add_argument("--rate-503", type=float, default=0.0)
    sim.add_argument("--retry-after", default="1")
    sim.add_argument("--max-offset", type=int, default=DEFAULT_MAX_OFFSET, help="0: no limit")
    sim.add_argument("--order", choices=("desc", "asc", "shuffled"), default="desc")
    sim.add_argument("--insert-every", type=int, default=0)

    demo = sub.add_parser("demo", help="simulate a control plane, sync it, show answers")
    demo.add_argument("--db", default="tfy_audit_demo.duckdb")
    demo.add_argument("--events", type=int, default=40_000)
    demo.add_argument("--days", type=float, default=90)
    demo.add_argument("--seed", type=int, default=7)
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", force=True)
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO if debug else logging.WARNING)
    if not debug:
        os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    # dlt sends anonymous usage events to dlthub by default (DNS lookups and HTTPS on every
    # run); a tool that copies a security audit trail should not call out unasked. Set
    # RUNTIME__DLTHUB_TELEMETRY=true to opt in.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    # dlt keeps every loaded Parquet file in its working dir by default: a second, unmanaged copy
    # of the audit trail (~11 MB per 100,000 events, never cleaned up). Loaded packages keep
    # their metadata only; LOAD__DELETE_COMPLETED_JOBS=false keeps the files.
    os.environ.setdefault("LOAD__DELETE_COMPLETED_JOBS", "true")
    try:
        if args.command == "sync":
            return cmd_sync(args)
        if args.command == "verify":
            return cmd_verify(args)
        if args.command == "views":
            return cmd_views(args)
        if args.command == "status":
            from .status import cmd_status

            return cmd_status(args, target_from_args(args))
        if args.command == "report":
            return cmd_report(args)
        if args.command == "simulate":
            return cmd_simulate(args)
        if args.command == "demo":
            from .demo import run_demo

            return run_demo(db=args.db, events=args.events, days=args.days, seed=args.seed)
        parser.error(f"unknown command {args.command}")
    except TfyAuditError as exc:
        if args.debug:
            logger.exception("failed")
        print(f"tfy-audit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tfy-audit: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: one line, the traceback only with --debug
        if args.debug:
            logger.exception("failed")
        explained = explain_destination_failure(exc)
        if explained is not None:
            print(f"tfy-audit: error: {explained}", file=sys.stderr)
            return EXIT_FAILURE
        text = " ".join(str(exc).split())[:400]
        print(
            f"tfy-audit: error: {type(exc).__name__}: {text} (run with --debug for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def filters_from_args(args: argparse.Namespace) -> AuditLogFilters:
    from .client import AuditLogFilters

    return AuditLogFilters.from_mapping(
        {name: getattr(args, "f_" + name) for name in FILTER_PARAMS}
    )


def sync_options_from_args(args: argparse.Namespace) -> Any:
    from .client import RetryPolicy
    from .decoders import default_workers
    from .options import SyncOptions
    from .timeparse import parse_duration, parse_user_time

    lookback = parse_duration(args.lookback, "lookback") if hasattr(args, "lookback") else None
    workers = getattr(args, "workers", None)
    return SyncOptions(
        workers=default_workers() if workers is None else workers,
        target=target_from_args(args),
        host=args.host,
        start=parse_user_time(args.start, "start") if args.start else None,
        end=parse_user_time(args.end, "end") if args.end else None,
        lookback=lookback or timedelta(minutes=10),
        filters=filters_from_args(args),
        concurrency=getattr(args, "concurrency", DEFAULT_CONCURRENCY),
        page_size=getattr(args, "page_size", DEFAULT_PAGE_SIZE),
        max_offset=getattr(args, "max_offset", DEFAULT_MAX_OFFSET),
        chunk_events=getattr(args, "chunk_events", DEFAULT_CHUNK_EVENTS),
        timeout=args.timeout,
        retry=RetryPolicy(max_attempts=args.retries),
        wait_for_lock=getattr(args, "wait", 0.0),
    )


def cmd_sync(args: argparse.Namespace) -> int:
    from .memory import limit_malloc_arenas
    from .options import validate
    from .progress import ProgressReporter
    from .sync import run_sync

    if _own_process:
        # dlt and pyarrow are imported: hundreds of thousands of objects that live as long as
        # the process. Frozen, they are not walked by each full collection the sync's
        # allocations set off (0.1-0.3 s of a 100k sync). Not done when `main()` is called as a
        # library: its caller's objects are not ours to freeze, nor its allocator to tune.
        gc.freeze()
        limit_malloc_arenas(3)  # before the sync's threads: see memory.py

    options = sync_options_from_args(args)
    validate(options)
    progress = ProgressReporter(bar=False if args.no_progress or args.json else None)
    summary = run_sync(options, progress)
    if args.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(format_summary(summary))
    if summary.incomplete_windows:
        print(
            f"tfy-audit: {len(summary.incomplete_windows)} window(s) could not be read "
            "completely (see the log above); run `tfy-audit verify` to see the affected days",
            file=sys.stderr,
        )
        return EXIT_INCOMPLETE
    return EXIT_OK


def format_summary(summary: Any) -> str:
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(summary.rows.items())) or "nothing new"
    lines = [
        f"synced {summary.start.isoformat()} .. {summary.end.isoformat()}"
        + (f" with filters {summary.filters}" if summary.filters else ""),
        f"  rows loaded: {rows}",
        f"  events read: {summary.events_read:,} in {summary.windows} window(s), "
        f"{summary.chunks} chunk(s)",
        f"  requests: {summary.requests:,} ({summary.retries:,} retried)  "
        f"time: {summary.seconds:.1f}s",
    ]
    if summary.recovered_packages:
        lines.append(f"  finished {summary.recovered_packages} package(s) of an interrupted run")
    if summary.covered_until:
        lines.append(f"  high-water mark: {summary.covered_until.isoformat()}")
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    from .options import validate
    from .verify import run_verify

    options = sync_options_from_args(args)
    validate(options)
    outcome = run_verify(options, repair=args.repair)
    final = outcome.final
    if args.json:
        print(json.dumps(_verify_json(outcome), indent=2))
    else:
        print(_verify_text(outcome.first, "before repair" if outcome.repaired_days else ""))
        if outcome.after_repair is not None:
            print(f"re-synced {len(outcome.repaired_days)} day(s)")
            print(_verify_text(outcome.after_repair, "after repair"))
    if final.differing:
        days = ", ".join(d.day.isoformat() for d in final.differing)
        hint = "" if args.repair else "; run `tfy-audit verify --repair` to re-sync them"
        print(f"tfy-audit: {len(final.differing)} day(s) differ: {days}{hint}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _verify_text(result: Any, label: str) -> str:
    differing = result.differing
    head = (
        f"verified {result.start.isoformat()} .. {result.end.isoformat()}"
        + (f" ({label})" if label else "")
        + f": {len(result.days)} day(s) with events, {len(result.days) - len(differing)} match, "
        f"{len(differing)} differ ({result.requests} requests); {_bounds_text(result.bounds)}"
    )
    if not differing:
        return head
    lines = [head, f"  {'day':<10}  {'service':>9}  {'warehouse':>9}  {'missing':>8}"]
    for d in differing:
        lines.append(
            f"  {d.day.isoformat():<10}  {d.service:>9,}  {d.warehouse:>9,}  {d.missing:>8,}"
        )
    return "\n".join(lines)


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
                for d in r.differing
            ],
        }

    return {
        "result": result(outcome.first),
        "repaired_days": [d.isoformat() for d in outcome.repaired_days],
        "after_repair": result(outcome.after_repair) if outcome.after_repair else None,
    }


def target_from_args(args: argparse.Namespace) -> Any:
    from .options import DestinationOptions

    return DestinationOptions(
        destination=args.destination,
        db=args.db,
        dataset=args.dataset,
        pipeline_name=args.pipeline_name,
        pipelines_dir=args.pipelines_dir,
    )


def _existing_pipeline(args: argparse.Namespace) -> Any:
    """The pipeline of an earlier sync, its schema restored from the destination."""
    from .destination import make_pipeline

    target = target_from_args(args)
    if target.destination == "duckdb" and not Path(target.db).exists():
        raise UsageError(f"{target.db} does not exist; run `tfy-audit sync` first or pass --db")
    pipeline = make_pipeline(target)
    pipeline.sync_destination()
    return pipeline


def cmd_views(args: argparse.Namespace) -> int:
    from .views import apply_views

    created = apply_views(_existing_pipeline(args))
    print(f"views: {', '.join(created) if created else 'none (destination keeps no views)'}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from .report import report_options, write_report

    summary = write_report(_existing_pipeline(args), Path(args.out), **report_options(args))
    print(
        f"wrote {summary.path}: {summary.events:,} events, {summary.subjects:,} subjects, "
        f"{summary.days} days, {summary.sensitive:,} sensitive actions"
    )
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from .simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

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
    )
    logger.info("generating %d events over %g days", args.events, args.days)
    sim = Simulator(config, generate_history(args.events, days=args.days, seed=args.seed))
    try:
        server = SimulatorServer(sim, host=args.bind, port=args.port)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.bind}:{args.port} ({exc}); pick another --port"
        ) from exc
    with server:
        print(f"simulator serving {args.events:,} events at {server.url}", flush=True)
        print(f"  export TFY_HOST={server.url} TFY_API_KEY={args.api_key}", flush=True)
        print("  then: tfy-audit sync    (Ctrl-C stops the simulator)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    return EXIT_OK


_own_process = False  # True when the process is the `tfy-audit` command itself


def entry() -> NoReturn:
    """The `tfy-audit` command: `main()`, then a prompt exit."""
    global _own_process
    _own_process = True
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
