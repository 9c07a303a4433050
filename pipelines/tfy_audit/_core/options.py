"""What a sync is asked to do and what it reports: the options (with their defaults from
`settings`), their validation, the command-line flags derived from them, and the run's summary.
No dlt here: the CLI and a library caller build these before anything heavy is imported.

Each option and its default live in one place: a field of `SyncOptions` or `DestinationOptions`
(its default a `settings` constant). `FLAGS` says how the command line sets a field; the CLI
builds its flags from it and reads each default (for `--help`) from the dataclass itself.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pathvalidate

from tfy_audit._core.errors import UsageError
from tfy_audit._core.query import AuditLogFilters, RetryPolicy
from tfy_audit._core.redact import clean
from tfy_audit._core.settings import (
    DEFAULT_CHUNK_EVENTS,
    DEFAULT_CONCURRENCY,
    DEFAULT_DATASET,
    DEFAULT_DESTINATION,
    DEFAULT_DUCKDB_PATH,
    DEFAULT_LOOKBACK,
    DEFAULT_MAX_OFFSET,
    DEFAULT_PAGE_SIZE,
    DEFAULT_PIPELINE_NAME,
    DEFAULT_PUBLISH,
    DEFAULT_RECEIPTS_DIR,
    DEFAULT_TIMEOUT,
    DEFAULT_WAIT_FOR_LOCK,
    HISTORY_START,
    MAX_PAGE_SIZE,
)

# Below this many planned events, pages are decoded in the fetching threads.
WORKERS_FROM_EVENTS = 20_000

# characters dlt's pipeline names may not hold beyond what a file name may not
_NOT_IN_NAME = re.compile(r"[.%{}]")


def validate_pipeline_name(name: str) -> str:
    """`name` if dlt accepts it as a pipeline name; UsageError otherwise, before any path is
    made of it."""
    try:
        pathvalidate.validate_filename(name, platform="universal")
        valid = not _NOT_IN_NAME.search(name)
    except pathvalidate.ValidationError:
        valid = False
    if not valid:
        raise UsageError(
            f"--pipeline-name {clean(name, 80)!r} is not a valid pipeline name: it names a "
            "folder, so use letters, digits, '_' and '-' (no '/', '.', '%', '{' or '}')"
        )
    return name


@dataclass(frozen=True)
class DestinationOptions:
    destination: str = DEFAULT_DESTINATION
    db: str = DEFAULT_DUCKDB_PATH
    dataset: str = DEFAULT_DATASET
    pipeline_name: str = DEFAULT_PIPELINE_NAME
    pipelines_dir: str | None = None
    table_format: str | None = None  # "delta" on the filesystem destination (lakehouse.py)

    def __post_init__(self) -> None:
        validate_pipeline_name(self.pipeline_name)  # before any path is made of it


@dataclass(frozen=True)
class SyncOptions:
    target: DestinationOptions = field(default_factory=DestinationOptions)
    host: str | None = None
    api_key: str | None = None
    # a one-off range; without `start` a run continues from the high-water mark
    start: datetime | None = None
    end: datetime | None = None
    # where the first run of a pipeline (no high-water mark yet) starts: a time, or a duration
    # back from now; None reads the whole history
    since: datetime | timedelta | None = None
    lookback: timedelta = DEFAULT_LOOKBACK
    filters: AuditLogFilters = field(default_factory=AuditLogFilters)
    concurrency: int = DEFAULT_CONCURRENCY
    page_size: int = DEFAULT_PAGE_SIZE
    max_offset: int = DEFAULT_MAX_OFFSET
    chunk_events: int = DEFAULT_CHUNK_EVENTS
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    wait_for_lock: float = DEFAULT_WAIT_FOR_LOCK
    # after each complete sync, a read-only copy of the DuckDB dataset here (publish.py)
    publish: str | None = DEFAULT_PUBLISH
    # after each complete sync, daily receipts into this folder or bucket URL and the
    # `daily_receipts` table (_engine/receipts.py); None writes none
    receipts_dir: str | None = DEFAULT_RECEIPTS_DIR
    max_duration: float | None = None  # seconds a whole run may take; None: no bound
    max_response_mb: float | None = None  # cap of a response body; None: from the page size
    allow_insecure_http: bool = False  # plain HTTP to a host other than this machine
    # processes that parse and normalize pages; 0 decodes in the fetching threads, which is the
    # safe default for library use (worker processes re-import the caller's __main__ module)
    workers: int = 0
    workers_from_events: int = WORKERS_FROM_EVENTS

    def first_run_start(self, now: datetime) -> datetime:
        """Where a run without a high-water mark starts."""
        if self.since is None:
            return HISTORY_START
        if isinstance(self.since, timedelta):
            return now - self.since
        return self.since


@dataclass
class SyncSummary:
    start: datetime
    end: datetime
    filters: dict[str, str]
    windows: int = 0
    incomplete_windows: list[str] = field(default_factory=list)
    chunks: int = 0
    events_read: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    # rows of chunks whose events were never loaded before; rows of a re-read range (the
    # lookback) may be new as well, which is not known
    new_rows: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0
    recovered_packages: int = 0
    covered_until: datetime | None = None
    load_ids: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    # the high-water mark this run started from (None: a first run)
    previous_mark: datetime | None = None
    # where a first run started (`--since`; the whole history when None)
    first_run_start: datetime | None = None
    # False for a one-off `--start` range that does not move the high-water mark
    advances_state: bool = True
    # events read at or before the previous mark (the lookback re-reads them) and after it
    events_reread: int = 0
    events_new: int = 0
    # records written to `event_anomalies` by this run, per kind (anomalies.py)
    anomalies: dict[str, int] = field(default_factory=dict)
    # ids the service served twice in a window, confirmed by a re-read and recorded in
    # `event_anomalies` by this run for the first time (exit code 3)
    repeated_ids: list[str] = field(default_factory=list)
    # seconds the service's clock (its `Date`) is ahead of this machine's; None: not sent
    clock_offset_seconds: float | None = None

    # the pipeline whose marks this run continued, having none of its own in the dataset
    continued_from: str | None = None
    # a one-off range apart from what the syncs read: the range between them, not read by it
    unread: tuple[datetime, datetime] | None = None
    # the snapshot `--publish` wrote: path, bytes, seconds (None: none written)
    published: dict[str, Any] | None = None
    # the daily receipts `--receipts-dir` issued (IssuedReceipts.as_dict; None: none asked)
    receipts: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "filters": self.filters,
            "windows": self.windows,
            "incomplete_windows": self.incomplete_windows,
            "chunks": self.chunks,
            "events_read": self.events_read,
            "events_new": self.events_new,
            "events_reread": self.events_reread,
            "anomalies": self.anomalies,
            "clock_offset_seconds": self.clock_offset_seconds,
            "repeated_ids": self.repeated_ids,
            "rows": self.rows,
            "requests": self.requests,
            "retries": self.retries,
            "seconds": round(self.seconds, 3),
            "recovered_packages": self.recovered_packages,
            "previous_mark": _iso(self.previous_mark),
            "first_run_start": _iso(self.first_run_start),
            "advances_state": self.advances_state,
            "covered_until": _iso(self.covered_until),
            "unread": None
            if self.unread is None
            else {"start": self.unread[0].isoformat(), "end": self.unread[1].isoformat()},
            "load_ids": self.load_ids,
            "views": self.views,
            "continued_from": self.continued_from,
            "published": self.published,
            "receipts": self.receipts,
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def validate(options: SyncOptions) -> None:
    validate_target(options.target)
    if not 1 <= options.page_size <= MAX_PAGE_SIZE:
        raise UsageError(
            f"--page-size {options.page_size} is outside 1..{MAX_PAGE_SIZE} (the endpoint's limit)"
        )
    if options.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if options.retry.max_attempts < 1:
        raise UsageError("--retries must be at least 1 (the number of attempts per request)")
    if options.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    if options.workers < 0:
        raise UsageError("--workers must be 0 (decode in threads) or more")
    if not options.timeout > 0:
        raise UsageError("--timeout must be more than 0 seconds")
    if options.max_duration is not None and not options.max_duration > 0:
        raise UsageError("--max-duration must be more than 0 seconds")
    if options.max_response_mb is not None and not options.max_response_mb > 0:
        raise UsageError("--max-response-mb must be more than 0")
    if options.max_offset < options.page_size:
        raise UsageError("--max-offset must be at least the page size")
    if options.chunk_events < 1:
        raise UsageError("--chunk-events must be at least 1")
    if options.wait_for_lock < 0:
        raise UsageError("--wait must not be negative")
    if options.publish is not None:
        validate_publish(options.target, options.publish)
    if options.receipts_dir is not None and not options.receipts_dir.strip():
        raise UsageError("--receipts-dir is empty; pass a folder or an s3://bucket/prefix URL")
    if isinstance(options.since, datetime) and options.since >= datetime.now(UTC):
        raise UsageError(
            f"--since ({options.since.isoformat()}) is in the future; pass a time before now "
            "or a duration back such as 90d"
        )
    if options.start and options.end and options.end <= options.start:
        raise UsageError(
            f"--end ({options.end.isoformat()}) is not after --start ({options.start.isoformat()})"
        )


def client_limits(options: SyncOptions, started: float) -> dict[str, Any]:
    """The client's bounds from the options, for a run that started at the monotonic time
    `started`: keyword arguments of `AuditLogClient`."""
    return {
        "timeout": options.timeout,
        "run_deadline": None if options.max_duration is None else started + options.max_duration,
        "max_response_bytes": None
        if options.max_response_mb is None
        else int(options.max_response_mb * 2**20),
        "allow_insecure_http": options.allow_insecure_http,
    }


def duckdb_catalog(db: str) -> str:
    """The catalog name DuckDB gives a database file: its name up to the first dot."""
    return Path(db).name.split(".", 1)[0]


def validate_target(target: DestinationOptions) -> None:
    """A DuckDB `--db` that can be a database file, and whose catalog is not the dataset."""
    if not target.dataset.strip():
        raise UsageError("--dataset is empty; pass a dataset name such as " + DEFAULT_DATASET)
    if target.destination != "duckdb":
        return
    db = target.db
    if not db.strip():
        raise UsageError(f"--db is empty; pass a DuckDB file such as {DEFAULT_DUCKDB_PATH}")
    path = Path(db).expanduser()
    if path.is_dir() or db.endswith(("/", "\\")):
        raise UsageError(
            f"--db {db} is a directory; pass a file in it, e.g. --db "
            f"{(path / Path(DEFAULT_DUCKDB_PATH).name).as_posix()}"
        )
    if duckdb_catalog(db).lower() == target.dataset.lower():
        renamed = path.with_name(Path(DEFAULT_DUCKDB_PATH).name)
        if path.exists():
            fix = f"rename it (mv {db} {renamed}) and pass --db {renamed}"
        else:
            fix = f"pass --db {renamed}"
        raise UsageError(
            f"--db {db} names its DuckDB catalog {duckdb_catalog(db)!r}, the same as the dataset "
            f"{target.dataset!r}, which makes dlt's SQL ambiguous; {fix}"
        )


def validate_publish(target: DestinationOptions, publish: str) -> None:
    """A `--publish` path a snapshot of this DuckDB dataset can be swapped onto."""
    if target.destination != "duckdb":
        raise UsageError(
            f"--publish needs the duckdb destination (got {target.destination}): it copies the "
            "DuckDB file; drop --publish and point dashboards at the warehouse itself"
        )
    path = Path(publish).expanduser()
    if not publish.strip() or path.is_dir() or publish.endswith(("/", "\\")):
        raise UsageError(
            f"--publish {publish!r} is not a file path; pass a file such as "
            "/srv/dashboards/tfy_audit_snapshot.duckdb"
        )
    if path.resolve() == Path(target.db).expanduser().resolve():
        raise UsageError(
            f"--publish {publish} is the --db itself; pass another file, such as "
            f"{path.with_name(path.stem + '_snapshot' + path.suffix)}"
        )
    if duckdb_catalog(publish).lower() == target.dataset.lower():
        raise UsageError(
            f"--publish {publish} names its DuckDB catalog {duckdb_catalog(publish)!r}, the same "
            f"as the dataset {target.dataset!r}, which makes SQL on it ambiguous; pass "
            f"{path.with_name(Path(DEFAULT_DUCKDB_PATH).stem + '_snapshot.duckdb')}"
        )


# -- the command line's flags, derived from the options above ------------------------------


@dataclass(frozen=True)
class FieldFlag:
    """How one command-line flag sets one field of a command's own options (report's, export's):
    `field` names it; `--help` shows its default as `shown` or, when None, as its subclass
    spells the default."""

    flag: str
    field: str
    help: str
    shown: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Flag:
    """How one command-line flag sets one option. `path` is the option's field (dotted for a
    nested one); the flag's default is that field's default, shown in `--help` as `shown` or,
    when None, as the value itself."""

    flag: str
    path: str
    help: str
    # str, int, float, switch (on/off), duration (10m), time (ISO 8601 or 7d), since
    kind: str = "str"
    shown: str | None = None


DESTINATION_FLAGS: tuple[Flag, ...] = (
    Flag("--db", "target.db", "DuckDB file (with --destination duckdb)"),
    Flag(
        "--destination",
        "target.destination",
        "any dlt destination (duckdb, postgres, filesystem, bigquery, snowflake, ...); "
        "credentials come from dlt config, e.g. DESTINATION__POSTGRES__CREDENTIALS",
    ),
    Flag("--dataset", "target.dataset", "dataset (schema) name in the destination"),
    Flag(
        "--table-format",
        "target.table_format",
        "delta: Delta Lake tables that merge on their keys (filesystem destination)",
        shown="plain Parquet on the filesystem",
    ),
    Flag("--pipeline-name", "target.pipeline_name", "dlt pipeline name (its state and lock)"),
    Flag(
        "--pipelines-dir",
        "target.pipelines_dir",
        "dlt's working dir (local state; the destination keeps the truth)",
        shown=".<db>.pipelines beside a DuckDB file, else "
        "./.tfy-audit/pipelines/<destination>-<dataset>",
    ),
)

SOURCE_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--host",
        "host",
        "control plane URL",
        shown="TFY_HOST, or sources.truefoundry_audit.host in .dlt/config.toml",
    ),
    Flag("--timeout", "timeout", "seconds one request may take, all told", "float"),
    Flag(
        "--max-duration",
        "max_duration",
        "seconds a whole run may take; it then stops, keeping what it loaded",
        "float",
        shown="no limit",
    ),
    Flag(
        "--max-response-mb",
        "max_response_mb",
        "largest response body, counted decompressed, in MB",
        "float",
        shown="1 MB + 32 KB per event of a page, at least 17 MB",
    ),
    Flag(
        "--allow-insecure-http",
        "allow_insecure_http",
        "allow http:// to a host other than this machine (the API key travels unencrypted)",
        "switch",
        shown="off",
    ),
    Flag(
        "--retries", "retry.max_attempts", "attempts per request on 429/5xx/network errors", "int"
    ),
)

WINDOW_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--start",
        "start",
        "a one-off range from this time (ISO 8601, or a duration back such as 7d); it does not "
        "move the high-water mark unless it reaches back to it",
        "time",
        shown="the high-water mark minus --lookback",
    ),
    Flag("--end", "end", "end of the range (ISO 8601 or 7d)", "time", shown="now, fixed at start"),
)

# verify checks what a sync read: from where a first sync starts up to the high-water mark
VERIFY_WINDOW_FLAGS: tuple[Flag, ...] = (
    Flag(
        "--start",
        "start",
        "start of the range to check (ISO 8601, or a duration back such as 7d)",
        "time",
        shown="where a first sync starts: --since, else the whole history from "
        f"{HISTORY_START.date().isoformat()}",
    ),
    Flag("--end", "end", "end of the range (ISO 8601 or 7d)", "time", shown="the high-water mark"),
)

CONCURRENCY_FLAG = Flag("--concurrency", "concurrency", "requests in flight", "int")

SINCE_FLAG = Flag(
    "--since",
    "since",
    "where a first sync (no high-water mark yet) starts, and verify with it: a duration back "
    "such as 90d, or ISO 8601; also sources.truefoundry_audit.since in .dlt/config.toml",
    "since",
    shown=f"the whole history (from {HISTORY_START.date().isoformat()})",
)

RECEIPTS_DIR_FLAG = Flag(
    "--receipts-dir",
    "receipts_dir",
    "sync: after each complete run, write a signed receipt per completed UTC day here (a "
    "folder, or s3://bucket/prefix) and to daily_receipts; verify --receipts: read them here",
    shown="off",
)

PAGE_SIZE_FLAG = Flag("--page-size", "page_size", f"events per request, 1..{MAX_PAGE_SIZE}", "int")
MAX_OFFSET_FLAG = Flag("--max-offset", "max_offset", "deepest offset the service serves", "int")

SYNC_FLAGS: tuple[Flag, ...] = (
    SINCE_FLAG,
    Flag("--lookback", "lookback", "re-read this far behind the high-water mark", "duration"),
    CONCURRENCY_FLAG,
    PAGE_SIZE_FLAG,
    MAX_OFFSET_FLAG,
    Flag("--chunk-events", "chunk_events", "events committed per load", "int"),
    Flag(
        "--workers",
        "workers",
        "processes that decode pages (0: decode in the reading threads)",
        "int",
        shown="the number of cores, at most 4",
    ),
    # also how long a sync waits for another process to close the DuckDB file (database.py)
    Flag("--wait", "wait_for_lock", "seconds to wait for a running sync of this pipeline", "float"),
    Flag(
        "--publish",
        "publish",
        "after each complete sync, write a read-only copy of the DuckDB dataset to this file "
        "(swapped in atomically) for dashboards to read",
        shown="off",
    ),
    RECEIPTS_DIR_FLAG,
)


def filter_names() -> list[str]:
    """The endpoint's filters, as `AuditLogFilters` declares them."""
    return [f.name for f in fields(AuditLogFilters)]


def default_of(path: str) -> Any:
    """An option's default, read from the dataclasses (never restated)."""
    value: Any = SyncOptions()
    for part in path.split("."):
        value = getattr(value, part)
    return value


def shown_default(flag: Flag) -> str:
    if flag.shown is not None:
        return flag.shown
    value = default_of(flag.path)
    if isinstance(value, timedelta):
        return format_duration(value)
    return str(value)


def format_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_flag(flag: Flag, text: Any) -> Any:
    """A flag's typed value as the option wants it (argparse has already made ints and floats)."""
    from tfy_audit._core.timeparse import parse_duration, parse_user_time

    name = flag.flag.lstrip("-")
    if flag.kind == "duration":
        return parse_duration(str(text), name)
    if flag.kind == "time":
        return parse_user_time(str(text), name)
    if flag.kind == "since":
        return parse_since(str(text), name)
    return text


def parse_since(text: str, option: str = "since") -> datetime | timedelta:
    """`90d` (back from the time of each first run) or an ISO 8601 time."""
    from tfy_audit._core.timeparse import is_duration, parse_duration, parse_user_time

    if is_duration(text):
        return parse_duration(text, option, back=True)
    return parse_user_time(text, option)


def options_from_values(values: Mapping[str, Any], base: SyncOptions | None = None) -> SyncOptions:
    """`base` (the defaults) with the options set by dotted path, e.g. `retry.max_attempts`."""
    options = base or SyncOptions()
    nested: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for path, value in values.items():
        head, _, rest = path.partition(".")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            top[head] = value
    for head, changes in nested.items():
        top[head] = dataclasses.replace(getattr(options, head), **changes)
    return dataclasses.replace(options, **top)
