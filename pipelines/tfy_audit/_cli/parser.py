"""The command line: the parser, its commands and flags. The option flags come from
`_core/options.py`, where each option is declared once, with its default."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tfy_audit._cli.output import EXIT_USAGE, Mode, logger, print_json

if TYPE_CHECKING:
    from tfy_audit._core.options import Flag

COMMANDS = (
    "sync",
    "verify",
    "status",
    "views",
    "report",
    "export",
    "sql",
    "detect",
    "rules",
    "simulate",
    "demo",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit code 2, like every usage error
        text = f"{message} (see {self.prog} --help)"
        if Mode.wants_json is not None:
            command = next((a for a in Mode.wants_json if a in COMMANDS), None)
            print_json(command or "", EXIT_USAGE, {}, text)
        if Mode.json_logs:
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
            group.add_argument(flag.flag, dest=flag_dest(flag), action="store_true", default=None,
                               help=help_text)  # fmt: skip
            continue
        kind: Any = {"int": int, "float": float}.get(flag.kind, str)
        group.add_argument(
            flag.flag,
            dest=flag_dest(flag),
            type=kind,
            default=None,
            metavar=flag.flag.lstrip("-").replace("-", "_").upper(),
            help=f"{flag.help} (default: {shown_default(flag)})",
        )


def flag_dest(flag: Flag) -> str:
    return flag.flag.lstrip("-").replace("-", "_")


def filter_dest(name: str) -> str:
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
            dest=filter_dest(name),
            metavar=name.upper(),
            help=f"{help_text} (default: none)",
        )


class _VersionAction(argparse.Action):
    """argparse's `version` action, the version read only when `--version` is given: reading
    it imports importlib.metadata, which every other command's start would pay for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show program's version number and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from tfy_audit._core.version import __version__

        sys.stdout.write(f"{parser.prog} {__version__}\n")  # stdout, as argparse's own does
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from tfy_audit._core.options import (
        CONCURRENCY_FLAG,
        MAX_OFFSET_FLAG,
        PAGE_SIZE_FLAG,
        RECEIPTS_DIR_FLAG,
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
    parser.add_argument("--version", action=_VersionAction)
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
    detect_group = sync.add_argument_group("detection (after the sync, over the run's range)")
    detect_group.add_argument(
        "--detect",
        action="store_true",
        help="run the detection rules over the events this run read (default: off)",
    )
    _detect_args(detect_group)

    verify = command("verify", "compare the service's counts per UTC day with the warehouse")
    _destination_args(verify)
    _source_args(verify, VERIFY_WINDOW_FLAGS)
    # --page-size and --max-offset: how --ids and --repair page the service, as sync does
    _add_flags(
        verify.add_argument_group("verify"),
        [SINCE_FLAG, CONCURRENCY_FLAG, PAGE_SIZE_FLAG, MAX_OFFSET_FLAG, RECEIPTS_DIR_FLAG],
    )
    verify.add_argument("--repair", action="store_true", help="re-sync the days that differ")
    verify.add_argument(
        "--ids",
        action="store_true",
        help="compare event ids per day, not only counts (about one request per 1,000 events)",
    )
    verify.add_argument(
        "--receipts",
        action="store_true",
        help="check the warehouse against its daily receipts in --receipts-dir, offline (no "
        "request to the service)",
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

    _export_args(command("export", "write the events out as OCSF Parquet for a security lake"))

    _sql_args(command("sql", "run one read-only SQL query on the dataset"))

    detect = command("detect", "run the detection rules over a range; keep and deliver alerts")
    _destination_args(detect)
    detect.add_argument(
        "--start", help="events from this time (ISO 8601 or 7d) (default: --end minus 1d)"
    )
    detect.add_argument("--end", help="events before this time (ISO 8601 or 7d) (default: now)")
    _detect_args(detect.add_argument_group("detection"))
    _json_arg(detect)

    rules = command("rules", "check or list detection rules")
    rules_sub = rules.add_subparsers(dest="rules_command", parser_class=_Parser, required=True)
    validate = rules_sub.add_parser(
        "validate", help="check a folder of rule files", formatter_class=_HelpFormatter
    )
    validate.add_argument("folder", help="a folder of *.yaml rules")
    _json_arg(validate)
    listed = rules_sub.add_parser(
        "list", help="list the rules a run would use", formatter_class=_HelpFormatter
    )
    listed.add_argument("--rules", help="a folder of your own rules, added (default: none)")
    _json_arg(listed)

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


def _detect_args(group: Any) -> None:
    from tfy_audit._detect.options import DETECT_FLAGS

    for flag in DETECT_FLAGS:
        group.add_argument(
            flag.flag,
            dest="detect_" + flag.field,
            metavar=flag.metavar,
            default=None,
            help=flag.help_text(),
        )


def _log_format_arg(parser: argparse.ArgumentParser) -> None:
    from tfy_audit._core.settings import DEFAULT_LOG_FORMAT, LOG_FORMAT_ENV, LOG_FORMATS

    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,  # then the environment's; see log_format
        help="log lines on stderr: text, or json for a log shipper (one JSON object a line; "
        f"no progress bar) (default: {DEFAULT_LOG_FORMAT}, or ${LOG_FORMAT_ENV})",
    )


def log_format(parser: argparse.ArgumentParser, args: argparse.Namespace) -> str:
    """`--log-format`, else the environment variable, else the default; a bad value in the
    environment is a usage error like a bad flag."""
    from tfy_audit._core.settings import DEFAULT_LOG_FORMAT, LOG_FORMAT_ENV, LOG_FORMATS

    chosen: str = args.log_format or os.environ.get(LOG_FORMAT_ENV) or DEFAULT_LOG_FORMAT
    if chosen not in LOG_FORMATS:
        parser.error(f"{LOG_FORMAT_ENV}={chosen!r} is not one of {', '.join(LOG_FORMATS)}")
    return chosen


def _export_args(export: argparse.ArgumentParser) -> None:
    from tfy_audit._export.options import EXPORT_FLAGS

    _destination_args(export)
    export.add_argument(
        "--out",
        required=True,
        help="a folder, or s3://bucket/prefix (AWS credentials, AWS_REGION and "
        "AWS_ENDPOINT_URL from the environment); one folder per OCSF class under it",
    )
    for flag in EXPORT_FLAGS:  # declared with ExportOptions, its defaults shown from there
        export.add_argument(flag.flag, dest=flag.dest, help=flag.help_text())
    _json_arg(export)


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
