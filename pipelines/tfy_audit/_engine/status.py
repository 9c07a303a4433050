"""The status of a warehouse: how fresh it is, read from the destination alone.

Per filter set (each keeps its own high-water mark): the mark and its lag behind now, the last
run and the last successful run (`sync_runs`, run_log.py), the incomplete windows still open
(`sync_windows` rows not read completely that the mark has not passed since), and the range
covered; and the last `verify` result (`verify_runs`). Nothing is created: the pipeline that
reads the destination works in a temporary directory, a DuckDB file must exist, and the
service is contacted only when asked (`service_check`).

The document is typed (`StatusDocument`) and is what `tfy-audit status --json` prints; the
command (`_cli/commands/status.py`) writes its lines and chooses the exit code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NotRequired, TypedDict, cast

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from tfy_audit._compat.dlt import pipeline_source_state
from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import DestinationOptions
from tfy_audit._core.settings import (
    ANOMALIES_TABLE,
    MAX_PAGE_SIZE,
    SOURCE_NAME,
    SYNC_WINDOWS_TABLE,
)
from tfy_audit._core.times import parse_timestamp
from tfy_audit._core.times import utc as _utc
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.pages import parse_list_body
from tfy_audit._source.state import STREAMS_KEY, covered_from, covered_until, first_start
from tfy_audit._warehouse.adapter import warehouse_for, warehouse_of
from tfy_audit._warehouse.destination import restored_pipeline, step, write_refusal
from tfy_audit._warehouse.lakehouse import DeltaSqlClient
from tfy_audit._warehouse.readback import table_loaded
from tfy_audit._warehouse.run_log import OK, SYNC_RUNS, first_run_start
from tfy_audit._warehouse.sql_text import sql_string
from tfy_audit._warehouse.verify_log import VERIFY_RUNS

logger = logging.getLogger(__name__)


class Span(TypedDict):
    """A range as ISO 8601 text; None where it is not known."""

    start: str | None
    end: str | None


class RunRecord(TypedDict):
    """A sync run, as `sync_runs` recorded it (run_log.py)."""

    run_id: str
    started_at: str | None
    finished_at: str | None
    status: str
    audit_log_rows: int | None
    events_read: int | None
    error: str | None


class ServiceCheck(TypedDict):
    """How many events the service has after a filter set's mark, and the newest of them."""

    events_after_mark: int | None
    newest_event_at: str | None


class FilterSetStatus(TypedDict):
    """One filter set: its mark, its runs, the windows still open, the ranges read."""

    filter_key: str
    filters: dict[str, Any]
    high_water_mark: str | None
    lag_seconds: float | None
    last_run: RunRecord | None
    last_successful_run: RunRecord | None
    open_incomplete_windows: list[Span]
    covered: Span
    covered_ranges: list[Span]
    first_sync_start: str | None
    service: NotRequired[ServiceCheck]  # only when the service was asked


class VerifyRecord(TypedDict):
    """The last `verify`, as `verify_runs` recorded it."""

    verified_at: str | None
    range_start: str | None
    range_end: str | None
    days: int
    differing_days: int
    missing: int


class AnomalyRecord(TypedDict):
    recorded_at: str | None
    kind: str
    action: str
    event_id: str
    field_path: str
    detail: str


class AnomalyCounts(TypedDict):
    """The records of `event_anomalies`: their count, per kind, and the latest few."""

    total: int
    by_kind: dict[str, int]
    latest: list[AnomalyRecord]


class StatusDocument(TypedDict):
    """The status of a warehouse; `status` is `stale` when a filter set is older than the lag
    asked for (or none has a mark), else `ok`."""

    status: Literal["ok", "stale"]
    checked_at: str
    destination: str
    dataset: str
    pipeline_name: str
    max_lag_seconds: float | None
    filter_sets: list[FilterSetStatus]
    last_verify: VerifyRecord | None
    anomalies: AnomalyCounts | None


ServiceProbe = Callable[[AuditLogFilters, datetime | None, datetime], ServiceCheck]

_RUN_COLUMNS = (
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "audit_log_rows",
    "events_read",
    "error",
)


@contextmanager
def _reader(target: DestinationOptions) -> Iterator[_Reader]:
    database = warehouse_for(target).database_file(target)
    if database is not None and not database.exists():
        raise UsageError(f"{target.db} does not exist; run `tfy-audit sync` first or pass --db")
    # a file the file system will not let us write is read read-only
    with restored_pipeline(target, read_only=write_refusal(target) is not None) as pipeline:
        reader = _Reader(pipeline)
        with step("reading the run history from the destination"), reader:
            yield reader


# the tables status reads; on the filesystem only these are read into memory
_TABLES = (SYNC_RUNS, SYNC_WINDOWS_TABLE, VERIFY_RUNS)


class _Reader:
    """Queries on the dataset: through the SQL client, or on the filesystem through the
    in-memory DuckDB `verify` and `report` read Delta and Parquet tables with (dlt's own
    reader there downloads DuckDB extensions). Table names are written `{table}` in the
    queries and qualified here."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self.pipeline = pipeline
        self._files = warehouse_of(pipeline).files
        self._client: Any = None

    def __enter__(self) -> _Reader:
        if self._files:
            self._client = DeltaSqlClient(self.pipeline, _TABLES).__enter__()
        else:
            self._client = self.pipeline.sql_client()
            self._client.open_connection()
        return self

    def __exit__(self, *exc: object) -> None:
        if isinstance(self._client, DeltaSqlClient):
            self._client.__exit__(None, None, None)
        elif self._client is not None:
            self._client.close_connection()

    def has(self, table: str) -> bool:
        if table_loaded(self.pipeline, table):
            return True
        if self._files:
            return False
        try:  # a table made by plain SQL (verify_runs) is not in dlt's schema
            self.rows(f"select 1 from {{{table}}} where 1 = 0", table)
        except DatabaseUndefinedRelation:
            return False
        return True

    def rows(self, sql: str, *tables: str) -> list[tuple[Any, ...]]:
        names = {t: self._client.make_qualified_table_name(t) for t in tables}
        return [tuple(r) for r in self._client.execute_sql(sql.format(**names)) or []]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _run(row: tuple[Any, ...] | None) -> RunRecord | None:
    if row is None:
        return None
    run = dict(zip(_RUN_COLUMNS, row, strict=True))
    for name in ("started_at", "finished_at"):
        run[name] = _iso(_utc(run[name]))
    for name in ("audit_log_rows", "events_read"):
        run[name] = int(run[name]) if run[name] is not None else None
    return cast(RunRecord, run)


def _runs(reader: _Reader, key: str) -> tuple[RunRecord | None, RunRecord | None]:
    """The last run and the last successful one of a filter set; a run loaded twice (the
    filesystem appends) counts once."""
    if not reader.has(SYNC_RUNS):
        return None, None
    rows = reader.rows(
        f"select {', '.join(_RUN_COLUMNS)} from {{{SYNC_RUNS}}} "
        f"where filter_key = {sql_string(key)}",
        SYNC_RUNS,
    )
    runs = sorted({r[0]: r for r in rows}.values(), key=lambda r: _utc(r[1]) or datetime.min)
    last = runs[-1] if runs else None
    good = [r for r in runs if r[3] == OK]
    return _run(last), _run(good[-1] if good else None)


Range = tuple[datetime, datetime]


def merge_ranges(ranges: list[Range]) -> list[Range]:
    """Ranges that overlap or touch, as one; sorted by start."""
    merged: list[Range] = []
    for start, end in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered_ranges(
    complete: list[Range], mark: datetime | None, read_from: datetime | None
) -> list[Range]:
    """The ranges a filter set's syncs read completely: its complete windows, and the range
    read without a gap up to the mark (runs that found no event record no window). A state
    from before `read_from` was recorded: the windows alone, the last range reaching the mark."""
    if mark is not None and read_from is not None and read_from < mark:
        return merge_ranges([*complete, (read_from, mark)])
    merged = merge_ranges(complete)
    if mark is not None and merged and merged[-1][0] < mark:
        merged[-1] = (merged[-1][0], max(merged[-1][1], mark))
    return merged


def _windows(reader: _Reader, key: str, mark: datetime | None) -> tuple[list[Span], list[Range]]:
    """The incomplete windows the mark has not passed, and the complete windows."""
    if not reader.has(SYNC_WINDOWS_TABLE):
        return [], []
    where = f"filter_key = {sql_string(key)}"
    rows = reader.rows(
        f"select window_start, window_end, complete from {{{SYNC_WINDOWS_TABLE}}} where {where}",
        SYNC_WINDOWS_TABLE,
    )
    open_windows = sorted(
        {
            (_utc(start), _utc(end))
            for start, end, complete in rows
            if not complete and (mark is None or (_utc(end) or mark) > mark)
        },
        key=lambda w: w[0] or datetime.min.replace(tzinfo=UTC),
    )
    complete_windows: list[Range] = []
    for start, end, complete in rows:
        window = (_utc(start), _utc(end))
        if complete and window[0] is not None and window[1] is not None:
            complete_windows.append((window[0], window[1]))
    spans: list[Span] = [{"start": _iso(s), "end": _iso(e)} for s, e in open_windows]
    return spans, complete_windows


def _last_verify(reader: _Reader) -> VerifyRecord | None:
    if not reader.has(VERIFY_RUNS):
        return None
    rows = reader.rows(
        "select verified_at, range_start, range_end, days, differing_days, missing "
        f"from {{{VERIFY_RUNS}}} order by verified_at desc limit 1",
        VERIFY_RUNS,
    )
    if not rows:
        return None
    verified_at, start, end, days, differing, missing = rows[0]
    return {
        "verified_at": _iso(_utc(verified_at)),
        "range_start": _iso(_utc(start)),
        "range_end": _iso(_utc(end)),
        "days": int(days),
        "differing_days": int(differing),
        "missing": int(missing),
    }


# How many of the latest `event_anomalies` records status shows.
LATEST_ANOMALIES = 5


def _anomalies(reader: _Reader) -> AnomalyCounts | None:
    """The records of `event_anomalies` (anomalies.py): the count per kind, and the latest."""
    if not reader.has(ANOMALIES_TABLE):
        return None
    by_kind = {
        str(kind): int(n)
        for kind, n in reader.rows(
            f"select kind, count(*) from {{{ANOMALIES_TABLE}}} group by kind", ANOMALIES_TABLE
        )
    }
    latest = reader.rows(
        "select recorded_at, kind, action, event_id, field_path, detail "
        f"from {{{ANOMALIES_TABLE}}} order by recorded_at desc, anomaly_id "
        f"limit {LATEST_ANOMALIES}",
        ANOMALIES_TABLE,
    )
    return {
        "total": sum(by_kind.values()),
        "by_kind": by_kind,
        "latest": [
            {
                "recorded_at": _iso(_utc(recorded_at)),
                "kind": kind,
                "action": action,
                "event_id": event_id,
                "field_path": field_path,
                "detail": detail,
            }
            for recorded_at, kind, action, event_id, field_path, detail in latest
        ],
    }


def read_status(
    target: DestinationOptions,
    *,
    max_lag: timedelta | None = None,
    service: ServiceProbe | None = None,
    now: datetime | None = None,
) -> StatusDocument:
    """The status document (`tfy-audit status --json`). `status` is `stale` when a filter set
    has no mark or a mark older than `max_lag`, else `ok`. `service`: how the service's newest
    events compare with a filter set's mark (`service_check`), or None not to ask."""
    now = now or datetime.now(UTC)
    with _reader(target) as reader:
        source_state = pipeline_source_state(reader.pipeline, SOURCE_NAME)
        streams: dict[str, Any] = dict(source_state.get(STREAMS_KEY, {}))
        filter_sets: list[FilterSetStatus] = []
        for key in sorted(streams):
            entry = streams[key]
            mark = covered_until(entry)
            last, last_ok = _runs(reader, key)
            open_windows, complete = _windows(reader, key, mark)
            ranges = covered_ranges(complete, mark, covered_from(entry))
            # the range that reaches the mark: read without a gap up to it
            to_mark = next((r for r in reversed(ranges) if mark is not None and r[1] >= mark), None)
            item: FilterSetStatus = {
                "filter_key": key,
                "filters": dict(entry.get("filters", {})),
                "high_water_mark": _iso(mark),
                "lag_seconds": round((now - mark).total_seconds(), 3) if mark else None,
                "last_run": last,
                "last_successful_run": last_ok,
                "open_incomplete_windows": open_windows,
                "covered": {"start": _iso(to_mark[0] if to_mark else None), "end": _iso(mark)},
                "covered_ranges": [{"start": _iso(a), "end": _iso(b)} for a, b in ranges],
                # where the first sync started: recorded in the state, else (state of an older
                # version) by the run history; None where neither says
                "first_sync_start": _iso(
                    first_start(entry)
                    or first_run_start(
                        reader.pipeline, AuditLogFilters.from_mapping(entry.get("filters", {}))
                    )
                ),
            }
            if service is not None:
                filters = AuditLogFilters.from_mapping(item["filters"])
                item["service"] = service(filters, mark, now)
            filter_sets.append(item)
        last_verify = _last_verify(reader)
        anomalies = _anomalies(reader)
    stale = [f for f in filter_sets if _too_old(f["lag_seconds"], max_lag)]
    return {
        "status": "stale" if stale or (max_lag is not None and not filter_sets) else "ok",
        "checked_at": now.isoformat(),
        "destination": target.destination,
        "dataset": target.dataset,
        "pipeline_name": target.pipeline_name,
        "max_lag_seconds": max_lag.total_seconds() if max_lag is not None else None,
        "filter_sets": filter_sets,
        "last_verify": last_verify,
        "anomalies": anomalies,
    }


def _too_old(lag_seconds: float | None, max_lag: timedelta | None) -> bool:
    if max_lag is None:
        return False
    return lag_seconds is None or lag_seconds > max_lag.total_seconds()


def service_check(client: AuditLogClient) -> ServiceProbe:
    """Asks the service how many events of a filter set it has from the mark to now (one count
    request) and, when they fit one page, the newest of them (one page: the spec names no sort
    order, so only a page holding all of them tells which is newest)."""

    def check(filters: AuditLogFilters, mark: datetime | None, now: datetime) -> ServiceCheck:
        if mark is None:
            return {"events_after_mark": None, "newest_event_at": None}
        count = client.count(filters, mark, now)
        newest: datetime | None = None
        if 0 < count <= MAX_PAGE_SIZE:
            events, _ = client.list_page(
                filters, mark, now, offset=0, limit=count, decode=parse_list_body
            )
            times = [parse_timestamp(e.get("createdAt")) for e in events if isinstance(e, dict)]
            newest = max((t for t in times if t is not None), default=None)
        return {"events_after_mark": count, "newest_event_at": _iso(newest)}

    return check
