"""A one-file HTML report of the loaded audit trail that opens offline.

Everything is inline: CSS, and charts drawn here as SVG. The page runs no script, and its
Content-Security-Policy forbids loading anything, so it can be mailed or archived as evidence
and shows the same thing years later. Tables are filtered by opening the `<details>` of a group
(a severity tier, a kind of change) and come sorted from here. Every value from the data goes
through `html.escape`: audit messages are written by users of the audited system.

The report covers a range [start, end) (default: the 30 days up to now) and compares each
figure with the previous range of the same length. The data is read through the pipeline's SQL
client with SQL that DuckDB and PostgreSQL both accept; every panel reads the SELECT of one of
the views in `_warehouse/sql/` (with the same severity rules, time zone and working
hours), so the report and the views always agree (and the views need not exist).
"""

from __future__ import annotations

import argparse
import contextlib
import html
import logging
import math
import os
import stat
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from tfy_audit._core.errors import UsageError
from tfy_audit._core.settings import ANOMALIES_TABLE
from tfy_audit._service.anomalies import count_text
from tfy_audit._warehouse.lakehouse import DeltaSqlClient, own_reader
from tfy_audit._warehouse.severity import TIERS, load_rules
from tfy_audit._warehouse.verify_log import VERIFY_RUNS
from tfy_audit._warehouse.views import DEFAULT_PARAMS, ViewParams, parse_work_hours, view_select

logger = logging.getLogger(__name__)

AUDIT_LOGS: Final = "audit_logs"
SYNC_WINDOWS: Final = "sync_windows"
DLT_LOADS: Final = "_dlt_loads"

DEFAULT_RANGE: Final = timedelta(days=30)
# A token whose last use is older than this, counted back from the range's end, is dormant.
DORMANT_AFTER: Final = timedelta(days=30)
LATEST_LIMIT: Final = 50
# Rows per group of a detailed table; the heading says how many there are in all.
GROUP_LIMIT: Final = 200
TOP_ACTIONS: Final = 15
TOP_SUBJECTS: Final = 10
INCOMPLETE_LIMIT: Final = 20
# Latest `event_anomalies` records listed (the heading gives the count per kind).
ANOMALY_LIMIT: Final = 50

# A chart with more bars than this is unreadable: days are grouped into weeks, then months.
_MAX_BARS: Final = 180
# Longer labels of the bar chart are cut (the full name is in the tooltip).
_LABEL_CHARS: Final = 44

Row = tuple[Any, ...]


@dataclass(frozen=True)
class ReportSummary:
    """The figures the report shows (for its range), for the CLI to print."""

    path: Path
    events: int
    subjects: int
    days: int  # UTC days with at least one event
    sensitive: int
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    last_sync_at: datetime | None = None
    windows: int = 0
    incomplete_windows: int = 0
    range_start: datetime | None = None
    range_end: datetime | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    new_subjects: int = 0
    off_hours: int = 0

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "path": str(self.path),
            "events": self.events,
            "subjects": self.subjects,
            "days": self.days,
            "sensitive": self.sensitive,
            "first_event_at": iso(self.first_event_at),
            "last_event_at": iso(self.last_event_at),
            "last_sync_at": iso(self.last_sync_at),
            "windows": self.windows,
            "incomplete_windows": self.incomplete_windows,
            "range_start": iso(self.range_start),
            "range_end": iso(self.range_end),
            "tiers": dict(self.tiers),
            "new_subjects": self.new_subjects,
            "off_hours": self.off_hours,
        }


@dataclass(frozen=True)
class _Coverage:
    windows: int
    incomplete: int
    covered_from: datetime | None
    covered_to: datetime | None
    rows_read: int
    syncs: int
    last_fetched_at: datetime | None
    incomplete_rows: list[Row]


@dataclass(frozen=True)
class _Period:
    """The figures of one range, for the headline and its comparison."""

    events: int = 0
    subjects: int = 0
    days: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    new_subjects: int = 0
    off_hours: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    token_uses: int = 0

    @property
    def sensitive(self) -> int:
        return sum(self.tiers.values())


@dataclass
class _ReportData:
    dataset: str
    destination: str
    now: datetime
    start: datetime
    end: datetime
    params: ViewParams
    cur: _Period = field(default_factory=_Period)
    prev: _Period = field(default_factory=_Period)
    daily: list[tuple[date, int, int]] = field(default_factory=list)
    top_actions: list[tuple[str | None, int]] = field(default_factory=list)
    top_subjects: list[Row] = field(default_factory=list)
    sensitive_rows: dict[str, list[Row]] = field(default_factory=dict)
    access_rows: list[Row] = field(default_factory=list)
    first_seen: list[Row] = field(default_factory=list)
    external: list[Row] = field(default_factory=list)
    off_hours_subjects: list[Row] = field(default_factory=list)
    off_hours_latest: list[Row] = field(default_factory=list)
    heat: dict[tuple[int, int], int] = field(default_factory=dict)
    dormant: list[Row] = field(default_factory=list)
    tokens: list[Row] = field(default_factory=list)
    tokens_prev: dict[tuple[Any, Any], int] = field(default_factory=dict)
    workspaces: list[Row] = field(default_factory=list)
    clusters: list[Row] = field(default_factory=list)
    scope_prev: dict[tuple[str, Any], int] = field(default_factory=dict)
    latest: list[Row] = field(default_factory=list)
    all_time_events: int = 0
    last_loaded_event_at: datetime | None = None
    coverage: _Coverage | None = None
    verify: Row | None = None
    anomaly_counts: dict[str, int] = field(default_factory=dict)
    anomalies: list[Row] = field(default_factory=list)
    loads: int = 0
    last_load_at: datetime | None = None
    # where the first (unfiltered) sync started: no event before it was loaded (`--since`)
    history_start: datetime | None = None

    @property
    def prev_loaded(self) -> bool:
        """Whether the previous range lies wholly in the loaded history, so that comparing
        with it compares events rather than history the first sync skipped."""
        return self.history_start is None or self.prev_start >= self.history_start

    @property
    def last_sync_at(self) -> datetime | None:
        if self.coverage and self.coverage.last_fetched_at:
            return self.coverage.last_fetched_at
        return self.last_load_at

    @property
    def prev_start(self) -> datetime:
        return self.start - (self.end - self.start)


def report_options(args: argparse.Namespace, *, now: datetime | None = None) -> dict[str, Any]:
    """`write_report` keyword arguments from the `report` command's options (--since, --start,
    --end, --timezone, --work-hours, --severity-rules)."""
    from tfy_audit._core.timeparse import parse_duration, parse_user_time

    now = now or datetime.now(UTC)
    if args.since and args.start:
        raise UsageError("--since and --start both set the range's start; give one of them")
    end = parse_user_time(args.end, "end", now=now) if args.end else None
    start = None
    if args.start:
        start = parse_user_time(args.start, "start", now=now)
    elif args.since:
        start = (end or now) - parse_duration(args.since, "since", back=True)
    hours = args.work_hours
    work_start, work_end = (
        parse_work_hours(hours) if hours else (DEFAULT_PARAMS.work_start, DEFAULT_PARAMS.work_end)
    )
    rules = load_rules(args.severity_rules) if args.severity_rules else ()
    params = ViewParams(rules, args.timezone or DEFAULT_PARAMS.timezone, work_start, work_end)
    return {"start": start, "end": end, "params": params, "now": now}


def write_report(
    pipeline: dlt.Pipeline,
    out: Path,
    *,
    now: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    params: ViewParams = DEFAULT_PARAMS,
) -> ReportSummary:
    """Write the HTML report of the pipeline's dataset to `out`; returns what it shows.

    The report covers [start, end): by default the 30 days up to `now` (UTC-aware; default: the
    current time), which is also the "generated at" time and the reference for "how long ago".
    `params` carries extra severity rules and the time zone and hours that define off-hours.
    The file is replaced atomically.
    """
    if now is None:
        now = datetime.now(UTC)
    for name, value in (("now", now), ("start", start), ("end", end)):
        if value is not None and value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    end = end.astimezone(UTC) if end else now
    start = start.astimezone(UTC) if start else end - DEFAULT_RANGE
    if start >= end:
        raise UsageError(f"the report's start {start:%Y-%m-%d %H:%M} is not before its end")
    with DeltaSqlClient(pipeline) if own_reader(pipeline) else pipeline.sql_client() as client:
        data = _collect(client, pipeline, now, start, end, params)
    document = _render_html(data)
    _write_atomically(Path(out), document)
    cur = data.cur
    summary = ReportSummary(
        path=Path(out),
        events=cur.events,
        subjects=cur.subjects,
        days=cur.days,
        sensitive=cur.sensitive,
        first_event_at=cur.first_event_at,
        last_event_at=cur.last_event_at,
        last_sync_at=data.last_sync_at,
        windows=data.coverage.windows if data.coverage else 0,
        incomplete_windows=data.coverage.incomplete if data.coverage else 0,
        range_start=start,
        range_end=end,
        tiers={tier: cur.tiers.get(tier, 0) for tier in TIERS},
        new_subjects=cur.new_subjects,
        off_hours=cur.off_hours,
    )
    logger.debug(
        "wrote report %s: %d events, %d subjects, %d sensitive",
        out,
        summary.events,
        summary.subjects,
        summary.sensitive,
    )
    return summary


# --------------------------------------------------------------------------- reading


def _rows(client: Any, sql: str) -> list[Row]:
    result = client.execute_sql(sql)
    return [tuple(row) for row in result] if result else []


def _one(client: Any, sql: str) -> Row:
    rows = _rows(client, sql)
    return rows[0] if rows else ()


def _exists(client: Any, table: str) -> bool:
    """Whether the table can be read: a dataset may predate `sync_windows`, or be empty."""
    try:
        client.execute_sql(f"SELECT 1 FROM {client.make_qualified_table_name(table)} WHERE 1 = 0")
    except DatabaseUndefinedRelation:
        return False
    return True


def _int(value: Any) -> int:
    # PostgreSQL's sum() of bigint is numeric (a Decimal here); None when there are no rows
    return int(value) if value is not None else 0


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # destinations return timestamptz in the session's zone, or naive values meant as UTC
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_rows(rows: Iterable[Row]) -> list[Row]:
    return [tuple(_utc(v) if isinstance(v, datetime) else v for v in row) for row in rows]


def _lit(value: datetime) -> str:
    """A timestamptz literal both DuckDB and PostgreSQL read the same way."""
    return f"CAST('{value.astimezone(UTC).isoformat()}' AS TIMESTAMP WITH TIME ZONE)"


def _between(lo: datetime, hi: datetime, column: str = "created_at") -> str:
    return f"{column} >= {_lit(lo)} AND {column} < {_lit(hi)}"


_UTC_DAY: Final = "CAST(timezone('UTC', created_at) AS DATE)"


class _Sources:
    """The FROM clause of each view's SELECT (and the raw table), for one dataset."""

    def __init__(self, client: Any, params: ViewParams) -> None:
        dataset = client.fully_qualified_dataset_name()
        self.logs = client.make_qualified_table_name(AUDIT_LOGS)

        def sub(name: str) -> str:
            return f"(\n{view_select(name, dataset, params)}\n) AS v"

        self.sensitive = sub("sensitive_actions")
        self.subjects = sub("subject_activity")
        self.access = sub("access_changes")
        self.external = sub("external_activity")
        self.tokens = sub("token_usage")
        self.off_hours = sub("off_hours_activity")
        self.scope = sub("workspace_activity")


def _collect(
    client: Any,
    pipeline: dlt.Pipeline,
    now: datetime,
    start: datetime,
    end: datetime,
    params: ViewParams,
) -> _ReportData:
    destination = pipeline.destination.destination_name if pipeline.destination else "unknown"
    data = _ReportData(
        dataset=pipeline.dataset_name,
        destination=destination,
        now=now,
        start=start,
        end=end,
        params=params,
    )
    data.history_start = _history_start(pipeline)
    if _exists(client, AUDIT_LOGS):
        src = _Sources(client, params)
        data.cur = _collect_period(client, src, start, end)
        data.prev = _collect_period(client, src, data.prev_start, start)
        _collect_events(client, src, data)
    else:
        logger.warning(
            "no %s table in %s: the report will be empty",
            AUDIT_LOGS,
            client.fully_qualified_dataset_name(),
        )
    if _exists(client, SYNC_WINDOWS):
        data.coverage = _collect_coverage(client, client.make_qualified_table_name(SYNC_WINDOWS))
    if _exists(client, VERIFY_RUNS):
        runs = client.make_qualified_table_name(VERIFY_RUNS)
        rows = _utc_rows(
            _rows(
                client,
                "SELECT verified_at, range_start, range_end, days, differing_days, missing"
                f" FROM {runs} ORDER BY verified_at DESC LIMIT 1",
            )
        )
        data.verify = rows[0] if rows else None
    if _exists(client, ANOMALIES_TABLE):
        records = client.make_qualified_table_name(ANOMALIES_TABLE)
        data.anomaly_counts = _grouped(
            client, f"SELECT kind, count(*) FROM {records} GROUP BY kind"
        )
        data.anomalies = _utc_rows(
            _rows(
                client,
                "SELECT recorded_at, kind, action, event_id, field_path, detail"
                f" FROM {records} ORDER BY recorded_at DESC, anomaly_id LIMIT {ANOMALY_LIMIT}",
            )
        )
    if _exists(client, DLT_LOADS):
        loads = client.make_qualified_table_name(DLT_LOADS)
        count, last = _one(
            client, f"SELECT count(*), max(inserted_at) FROM {loads} WHERE status = 0"
        )
        data.loads, data.last_load_at = _int(count), _utc(last)
    return data


def _history_start(pipeline: dlt.Pipeline) -> datetime | None:
    """Where the unfiltered filter set's first sync started, from the state the destination
    carries (else, for older state, the run history); None when the whole history was read,
    or nothing recorded it."""
    from tfy_audit._core.settings import HISTORY_START, SOURCE_NAME
    from tfy_audit._service.client import AuditLogFilters
    from tfy_audit._source.state import first_start, stream_state
    from tfy_audit._warehouse.run_log import first_run_start

    source_state = dict(pipeline.state.get("sources", {}).get(SOURCE_NAME, {}))
    streams = dict(source_state.get("streams", {}))
    start = first_start(stream_state({"streams": streams}, AuditLogFilters()))
    start = start or first_run_start(pipeline, AuditLogFilters())  # older state
    return start if start is not None and start > HISTORY_START else None


def _grouped(client: Any, sql: str) -> dict[str, int]:
    return {str(key): _int(n) for key, n in _rows(client, sql)}


def _collect_period(client: Any, src: _Sources, lo: datetime, hi: datetime) -> _Period:
    within = _between(lo, hi)
    events, subjects, days, first, last = _one(
        client,
        f"SELECT count(*), count(DISTINCT subject__subject_id), count(DISTINCT {_UTC_DAY}),"
        f" min(created_at), max(created_at) FROM {src.logs} WHERE {within}",
    )
    tiers = _grouped(
        client, f"SELECT severity, count(*) FROM {src.sensitive} WHERE {within} GROUP BY severity"
    )
    categories = _grouped(
        client, f"SELECT category, count(*) FROM {src.sensitive} WHERE {within} GROUP BY category"
    )
    (new_subjects,) = _one(
        client, f"SELECT count(*) FROM {src.subjects} WHERE {_between(lo, hi, 'first_seen_at')}"
    )
    (off_hours,) = _one(client, f"SELECT count(*) FROM {src.off_hours} WHERE {within}")
    changes = _grouped(
        client, f"SELECT change, count(*) FROM {src.access} WHERE {within} GROUP BY change"
    )
    kinds = _grouped(
        client,
        f"SELECT subject_kind, count(*) FROM {src.external} WHERE {within} GROUP BY subject_kind",
    )
    (token_uses,) = _one(client, f"SELECT count(*) FROM {src.tokens} WHERE {within}")
    return _Period(
        events=_int(events),
        subjects=_int(subjects),
        days=_int(days),
        first_event_at=_utc(first),
        last_event_at=_utc(last),
        tiers=tiers,
        categories=categories,
        new_subjects=_int(new_subjects),
        off_hours=_int(off_hours),
        changes=changes,
        kinds=kinds,
        token_uses=_int(token_uses),
    )


def _collect_events(client: Any, src: _Sources, data: _ReportData) -> None:
    within = _between(data.start, data.end)
    logs = src.logs
    all_time, last_loaded = _one(client, f"SELECT count(*), max(created_at) FROM {logs}")
    data.all_time_events, data.last_loaded_event_at = _int(all_time), _utc(last_loaded)

    totals = _rows(
        client,
        f"SELECT {_UTC_DAY} AS day, count(*) FROM {logs} WHERE {within}"
        f" GROUP BY {_UTC_DAY} ORDER BY day",
    )
    flagged: dict[Any, Any] = dict(
        _rows(
            client,
            f"SELECT {_UTC_DAY}, count(*) FROM {src.sensitive} WHERE {within} GROUP BY {_UTC_DAY}",
        )
    )
    data.daily = [(day, _int(n), _int(flagged.get(day))) for day, n in totals if day is not None]

    data.top_actions = [
        (action, _int(n))
        for action, n in _rows(
            client,
            f"SELECT action, count(*) AS n FROM {logs} WHERE {within} GROUP BY action"
            f" ORDER BY n DESC, action NULLS LAST LIMIT {TOP_ACTIONS}",
        )
    ]
    # type, names and last action from each subject's latest event in the range, ties by id
    data.top_subjects = _utc_rows(
        _rows(
            client,
            "SELECT t.subject_id, l.subject_type, l.subject_slug, l.subject_display_name,"
            " t.events, t.distinct_actions, t.last_seen_at, l.action FROM ("
            " SELECT subject__subject_id AS subject_id, count(*) AS events,"
            " count(DISTINCT action) AS distinct_actions, max(created_at) AS last_seen_at"
            f" FROM {logs} WHERE {within} AND subject__subject_id IS NOT NULL"
            " GROUP BY subject__subject_id) AS t JOIN ("
            " SELECT subject__subject_id AS subject_id, subject__subject_type AS subject_type,"
            " subject__subject_slug AS subject_slug,"
            " subject__subject_display_name AS subject_display_name, action,"
            " row_number() OVER (PARTITION BY subject__subject_id"
            " ORDER BY created_at DESC NULLS LAST, id DESC) AS recency"
            f" FROM {logs} WHERE {within}) AS l"
            " ON l.subject_id = t.subject_id AND l.recency = 1"
            f" ORDER BY t.events DESC, t.subject_id LIMIT {TOP_SUBJECTS}",
        )
    )
    for tier in TIERS:
        data.sensitive_rows[tier] = _utc_rows(
            _rows(
                client,
                "SELECT created_at, category, action, resource_type, resource_name,"
                " resource_fqn, subject_slug, subject_display_name, subject_type,"
                f" subject_pat_name, message FROM {src.sensitive}"
                f" WHERE {within} AND severity = '{tier}'"
                f" ORDER BY created_at DESC NULLS LAST, id DESC LIMIT {GROUP_LIMIT}",
            )
        )
    data.access_rows = _utc_rows(
        _rows(
            client,
            "SELECT created_at, change, severity, action, resource_type, resource_name,"
            " resource_fqn, subject_slug, subject_display_name, subject_type, subject_pat_name,"
            f" message FROM {src.access} WHERE {within}"
            f" ORDER BY created_at DESC NULLS LAST, id DESC LIMIT {3 * GROUP_LIMIT}",
        )
    )
    data.first_seen = _utc_rows(
        _rows(
            client,
            "SELECT first_seen_at, subject_id, subject_type, subject_slug,"
            " subject_display_name, events, last_seen_at, last_action"
            f" FROM {src.subjects} WHERE {_between(data.start, data.end, 'first_seen_at')}"
            f" ORDER BY first_seen_at DESC, subject_id LIMIT {GROUP_LIMIT}",
        )
    )
    data.external = _utc_rows(
        _rows(
            client,
            "SELECT subject_kind, subject_id, max(subject_slug), max(subject_display_name),"
            " max(subject_external_identity_slug), max(subject_controller_name), count(*) AS n,"
            f" count(DISTINCT action), max(created_at) FROM {src.external} WHERE {within}"
            " GROUP BY subject_kind, subject_id ORDER BY n DESC, subject_id",
        )
    )
    data.off_hours_subjects = _rows(
        client,
        "SELECT subject_id, max(subject_slug), max(subject_display_name), max(subject_type),"
        " count(*) AS n, sum(CASE WHEN is_weekend THEN 1 ELSE 0 END)"
        f" FROM {src.off_hours} WHERE {within}"
        f" GROUP BY subject_id ORDER BY n DESC, subject_id LIMIT {TOP_SUBJECTS}",
    )
    data.off_hours_latest = _rows(
        client,
        "SELECT local_time, action, resource_type, resource_name, subject_slug,"
        f" subject_display_name, subject_type, message FROM {src.off_hours} WHERE {within}"
        f" ORDER BY created_at DESC NULLS LAST, id DESC LIMIT {LATEST_LIMIT}",
    )
    zone = data.params.timezone
    data.heat = {
        (_int(dow), _int(hour)): _int(n)
        for dow, hour, n in _rows(
            client,
            f"SELECT CAST(extract(isodow FROM timezone('{zone}', created_at)) AS INTEGER) AS d,"
            f" CAST(extract(hour FROM timezone('{zone}', created_at)) AS INTEGER) AS h,"
            f" count(*) FROM {logs} WHERE {within} GROUP BY 1, 2",
        )
    }
    token_cols = (
        "subject_id, token_name, max(token_kind), max(subject_slug), max(subject_display_name),"
        " count(*) AS n, count(DISTINCT action), min(created_at), max(created_at) AS last_used"
    )
    data.dormant = _utc_rows(
        _rows(
            client,
            f"SELECT {token_cols} FROM {src.tokens} WHERE created_at < {_lit(data.end)}"
            " GROUP BY subject_id, token_name"
            f" HAVING max(created_at) < {_lit(data.end - DORMANT_AFTER)}"
            " ORDER BY last_used, token_name, subject_id",
        )
    )
    data.tokens = _utc_rows(
        _rows(
            client,
            f"SELECT {token_cols} FROM {src.tokens} WHERE {within}"
            " GROUP BY subject_id, token_name ORDER BY n DESC, token_name, subject_id",
        )
    )
    data.tokens_prev = {
        (sid, name): _int(n)
        for sid, name, n in _rows(
            client,
            f"SELECT subject_id, token_name, count(*) FROM {src.tokens}"
            f" WHERE {_between(data.prev_start, data.start)} GROUP BY subject_id, token_name",
        )
    }
    deletions = "sum(CASE WHEN is_deletion THEN 1 ELSE 0 END)"
    data.workspaces = _rows(
        client,
        "SELECT workspace_id, max(workspace_name), max(cluster_id), count(*) AS n,"
        f" count(DISTINCT subject_id), {deletions} FROM {src.scope}"
        f" WHERE {within} AND workspace_id IS NOT NULL"
        " GROUP BY workspace_id ORDER BY n DESC, workspace_id",
    )
    data.clusters = _rows(
        client,
        "SELECT cluster_id, count(DISTINCT workspace_id), count(*) AS n,"
        f" count(DISTINCT subject_id), {deletions} FROM {src.scope}"
        f" WHERE {within} AND cluster_id IS NOT NULL"
        " GROUP BY cluster_id ORDER BY n DESC, cluster_id",
    )
    before = _between(data.prev_start, data.start)
    for column in ("workspace_id", "cluster_id"):
        for key, n in _rows(
            client,
            f"SELECT {column}, count(*) FROM {src.scope}"
            f" WHERE {before} AND {column} IS NOT NULL GROUP BY {column}",
        ):
            data.scope_prev[(column, key)] = _int(n)
    data.latest = _utc_rows(
        _rows(
            client,
            "SELECT created_at, action, resource_type, resource_name, resource_fqn,"
            " subject__subject_slug, subject__subject_display_name, subject__subject_type,"
            f" message FROM {logs} WHERE {within}"
            f" ORDER BY created_at DESC NULLS LAST, id DESC LIMIT {LATEST_LIMIT}",
        )
    )


def _collect_coverage(client: Any, windows: str) -> _Coverage:
    incomplete = "CASE WHEN complete THEN 0 ELSE 1 END"
    count, missing, start, end, rows_read, syncs, fetched = _one(
        client,
        f"SELECT count(*), sum({incomplete}), min(window_start), max(window_end),"
        f" sum(rows_read), count(DISTINCT sync_id), max(fetched_at) FROM {windows}",
    )
    incomplete_rows = _utc_rows(
        _rows(
            client,
            "SELECT window_start, window_end, filter_key, planned_count, service_total,"
            f" rows_read, fetched_at FROM {windows} WHERE {incomplete} = 1"
            f" ORDER BY fetched_at DESC NULLS LAST, window_start DESC LIMIT {INCOMPLETE_LIMIT}",
        )
    )
    return _Coverage(
        windows=_int(count),
        incomplete=_int(missing),
        covered_from=_utc(start),
        covered_to=_utc(end),
        rows_read=_int(rows_read),
        syncs=_int(syncs),
        last_fetched_at=_utc(fetched),
        incomplete_rows=incomplete_rows,
    )


def _write_atomically(out: Path, document: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than mkstemp, whose 0600 would survive the rename
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(document)
        with contextlib.suppress(FileNotFoundError):  # a report rewritten keeps its mode
            os.chmod(tmp, stat.S_IMODE(os.stat(out).st_mode))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    """Escaped text of a value; an absent value is a dash."""
    if value is None or value == "":
        return "—"
    return html.escape(str(value), quote=True)


def _code(value: Any) -> str:
    """An identifier such as an action name, breakable after its underscores."""
    if value is None or value == "":
        return "—"
    return f"<code>{_e(value).replace('_', '_<wbr>')}</code>"


def _n(value: int) -> str:
    return f"{value:,}"


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _shown(shown: int, total: int) -> str:
    return f"latest {_n(shown)} of {_n(total)}" if shown < total else f"all {_n(total)}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- charts


def _nice_step(span: float) -> int:
    """A round step (1, 2, 5 x 10^k) that divides `span` into about four intervals."""
    raw = max(span / 4, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)


def _buckets(daily: Sequence[tuple[date, int, int]]) -> tuple[str, list[tuple[date, int, int]]]:
    """Daily counts with empty days filled in, grouped into weeks or months when too many."""
    if not daily:
        return "day", []
    counts = {day: (n, s) for day, n, s in daily}
    first, last = daily[0][0], daily[-1][0]

    def key_day(d: date) -> date:
        return d

    def key_week(d: date) -> date:
        return d - timedelta(days=d.weekday())

    def key_month(d: date) -> date:
        return d.replace(day=1)

    for unit, key in (("day", key_day), ("week", key_week), ("month", key_month)):
        grouped: dict[date, list[int]] = {}
        day = first
        while day <= last:
            total, flagged = counts.get(day, (0, 0))
            slot = grouped.setdefault(key(day), [0, 0])
            slot[0] += total
            slot[1] += flagged
            day += timedelta(days=1)
        if len(grouped) <= _MAX_BARS or unit == "month":
            return unit, [(k, v[0], v[1]) for k, v in sorted(grouped.items())]
    raise AssertionError("unreachable")


def _daily_chart(daily: Sequence[tuple[date, int, int]]) -> tuple[str, str]:
    """SVG bars of events per bucket, sensitive events overlaid; returns (unit, svg)."""
    unit, series = _buckets(daily)
    if not series:
        return unit, '<p class="empty">No events loaded yet.</p>'
    width, height = 960, 260
    left, right, top, bottom = 56, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(total for _, total, _ in series)
    step = _nice_step(peak)
    ceiling = max(step, math.ceil(peak / step) * step)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Events per {unit}">'
    ]
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - plot_h * tick / ceiling
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_n(tick)}</text>'
        )
    slot = plot_w / len(series)
    bar = max(min(slot * 0.78, 48.0), 1.0)
    for i, (start, total, flagged) in enumerate(series):
        x = left + i * slot + (slot - bar) / 2
        h = plot_h * total / ceiling
        hs = plot_h * flagged / ceiling
        label = f"{unit} of {start.isoformat()}" if unit != "day" else start.isoformat()
        tip = html.escape(f"{label}: {total:,} events, {flagged:,} sensitive")
        parts.append(
            f'<g><title>{tip}</title><rect class="bar" x="{x:.2f}" y="{top + plot_h - h:.2f}" '
            f'width="{bar:.2f}" height="{h:.2f}" rx="{min(2.0, bar / 4):.2f}"/>'
        )
        if flagged:
            parts.append(
                f'<rect class="bar-sensitive" x="{x:.2f}" y="{top + plot_h - hs:.2f}" '
                f'width="{bar:.2f}" height="{hs:.2f}"/>'
            )
        parts.append("</g>")
    labels = min(len(series), 8)
    for j in range(labels):
        i = round(j * (len(series) - 1) / max(labels - 1, 1))
        # keep the ~70px wide date inside the plot rather than clipped at its edges
        x = min(max(left + i * slot + slot / 2, left + 36), width - right - 36)
        start = series[i][0]
        text = start.strftime("%Y-%m") if unit == "month" else start.isoformat()
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/></svg>'
    )
    return unit, "".join(parts)


def _hbar_chart(items: Sequence[tuple[str, int]], *, label: str) -> str:
    """Horizontal SVG bars, one per (name, count), longest first as given."""
    if not items:
        return '<p class="empty">Nothing to show.</p>'
    width, row, value_w = 640, 26, 64
    # labels are monospace, so their width is known: 0.6em per character at 11px
    longest = max(len(_clip(name, _LABEL_CHARS)) for name, _ in items)
    label_w = max(120, round(longest * 6.6) + 14)
    height = row * len(items) + 4
    peak = max(n for _, n in items) or 1
    track = width - label_w - value_w
    parts = [
        f'<svg class="chart hbar" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(label)}">'
    ]
    for i, (name, count) in enumerate(items):
        y = i * row + 2
        w = max(track * count / peak, 2.0)
        parts.append(
            f"<g><title>{html.escape(name)}: {count:,}</title>"
            f'<text class="label" x="{label_w - 10}" y="{y + row / 2 + 4:.1f}" '
            f'text-anchor="end">{html.escape(_clip(name, _LABEL_CHARS))}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{w:.2f}" height="{row - 8}" '
            'rx="3"/>'
            f'<text class="value" x="{label_w + w + 6:.2f}" y="{y + row / 2 + 4:.1f}">'
            f"{count:,}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- page


_CSS: Final = """
:root {
  --bg: #f6f7fb; --card: #ffffff; --ink: #1f2933; --muted: #64748b; --line: #e5e7eb;
  --accent: #3b82f6; --accent-soft: #bfdbfe; --warn: #e11d48; --warn-soft: #ffe4e6;
  --ok: #059669; --ok-soft: #d1fae5;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif;
}
main { max-width: 1280px; margin: 0 auto; padding: 24px 20px 48px; }
header { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: baseline;
  justify-content: space-between; margin-bottom: 20px; }
h1 { font-size: 24px; margin: 0; letter-spacing: -0.01em; }
h2 { font-size: 16px; margin: 0 0 12px; }
.sub, .muted { color: var(--muted); }
.sub { font-size: 13px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; font-size: 12px; }
.grid { display: grid; gap: 16px; margin-bottom: 16px; }
.stats { grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); }
.pair { grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 18px; box-shadow: 0 1px 2px rgba(15, 23, 42, 0.04); min-width: 0; }
section.card { margin-bottom: 16px; }
.stat .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.04em; }
.stat .value { font-size: 26px; font-weight: 650; margin-top: 2px; }
.stat .value.small { font-size: 16px; font-weight: 600; line-height: 1.4; margin-top: 6px; }
.stat .note { color: var(--muted); font-size: 12px; }
.stat.alert .value { color: var(--warn); }
.legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin: -4px 0 8px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .baseline { stroke: #cbd5e1; stroke-width: 1; }
svg .axis { fill: var(--muted); font-size: 11px; }
svg .label { fill: var(--ink); font-size: 11px; font-family: ui-monospace, SFMono-Regular,
  Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace; }
svg .value { fill: var(--muted); font-size: 11px; }
svg .bar { fill: var(--accent); }
svg .bar-sensitive { fill: var(--warn); }
svg g:hover .bar { fill: #1d4ed8; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px;
  border-bottom: 1px solid var(--line); padding: 6px 10px 6px 0; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 7px 10px 7px 0; vertical-align: top; }
tr:last-child td { border-bottom: 0; }
td.when { white-space: nowrap; font-variant-numeric: tabular-nums; color: var(--muted); }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.msg { max-width: 420px; overflow-wrap: anywhere; }
.small { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11px;
  font-weight: 600; background: #eef2ff; color: #3730a3; white-space: nowrap; }
.badge.secret { background: #fef3c7; color: #92400e; }
.badge.token { background: #fce7f3; color: #9d174d; }
.badge.access { background: #e0e7ff; color: #3730a3; }
.badge.identity { background: #dcfce7; color: #166534; }
.badge.deletion { background: var(--warn-soft); color: #9f1239; }
.badge.ok { background: var(--ok-soft); color: var(--ok); }
.badge.bad { background: var(--warn-soft); color: var(--warn); }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 12px; }
.meter { background: #eef2f7; border-radius: 4px; height: 6px; margin-top: 4px; min-width: 60px; }
.meter span { display: block; height: 6px; border-radius: 4px; background: var(--accent); }
.empty { color: var(--muted); font-style: italic; margin: 8px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""

# Nothing is loaded from anywhere and no script runs: the page works offline by construction.
_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

_BADGES: Final = frozenset(
    {"secret", "token", "access", "identity", "deletion", "other", "grant", "change", "revoke"}
    | set(TIERS)
)

_CSS_MORE: Final = """
.range { display: flex; flex-wrap: wrap; gap: 6px 18px; align-items: baseline; font-size: 13px;
  background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 10px 18px; margin-bottom: 16px; }
.range strong { font-weight: 650; }
.delta { font-size: 12px; font-weight: 600; white-space: nowrap; }
.delta.up { color: #b45309; }
.delta.down { color: var(--ok); }
.delta.same { color: var(--muted); }
.badge.critical { background: #e11d48; color: #ffffff; }
.badge.high { background: #ffedd5; color: #9a3412; }
.badge.notable { background: #f1f5f9; color: #475569; }
.badge.grant { background: #dcfce7; color: #166534; }
.badge.revoke { background: var(--warn-soft); color: #9f1239; }
.badge.change { background: #e0f2fe; color: #075985; }
.badge.other { background: #f1f5f9; color: #475569; }
.tiers { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 10px;
  margin-bottom: 12px; }
.tier { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.tier .n { font-size: 22px; font-weight: 650; }
.tier.critical { border-color: #fda4af; background: #fff1f2; }
.tier.high { border-color: #fed7aa; background: #fff7ed; }
details.group { border: 1px solid var(--line); border-radius: 8px; margin-top: 10px; }
details.group > summary { cursor: pointer; padding: 8px 12px; font-weight: 600;
  list-style-position: inside; }
details.group > summary .sub { font-weight: 400; }
details.group[open] > summary { border-bottom: 1px solid var(--line); }
details.group > .table-wrap, details.group > p { padding: 4px 12px 8px; }
.heat { display: grid; grid-template-columns: 34px repeat(24, 1fr); gap: 2px; font-size: 10px;
  color: var(--muted); margin: 4px 0 12px; }
.heat div { height: 16px; border-radius: 2px; }
.heat .h { text-align: center; height: auto; }
.heat .d { height: auto; line-height: 16px; }
.heat .work { outline: 1px solid #93c5fd; outline-offset: -1px; }
"""


def _stat(
    label: str, value: str, note: str = "", *, small: bool = False, alert: bool = False
) -> str:
    cls = "card stat alert" if alert else "card stat"
    value_cls = "value small" if small else "value"
    note_html = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<div class="{cls}"><div class="label">{label}</div>'
        f'<div class="{value_cls}">{value}</div>{note_html}</div>'
    )


def _table(
    headers: Sequence[str], rows: Sequence[str], empty: str, numeric: Sequence[str] = ()
) -> str:
    if not rows:
        return f'<p class="empty">{empty}</p>'
    head = "".join(
        f'<th class="num">{h}</th>' if h in numeric else f"<th>{h}</th>" for h in headers
    )
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _group(title: str, count_note: str, body: str, *, open_: bool = False) -> str:
    """A collapsible group of rows: the page's filter, with no script."""
    state = " open" if open_ else ""
    return (
        f'<details class="group"{state}><summary>{title} '
        f'<span class="sub">{count_note}</span></summary>{body}</details>'
    )


def _badge(category: Any) -> str:
    cls = str(category) if category in _BADGES else ""
    return f'<span class="badge {cls}">{_e(category)}</span>'


def _who(slug: Any, display: Any, kind: Any, pat: Any = None) -> str:
    name = _e(slug if slug else display)
    extra = [_e(kind)] if kind else []
    if display and slug and display != slug:
        extra.insert(0, _e(display))
    if pat:
        extra.append(f"PAT {_e(pat)}")
    return f'{name}<div class="small">{" · ".join(extra)}</div>' if extra else name


def _what(rtype: Any, name: Any, fqn: Any) -> str:
    head = f"{_e(rtype)} · {_e(name)}" if name else _e(rtype)
    tail = f'<div class="small mono">{_e(fqn)}</div>' if fqn and fqn != name else ""
    return head + tail


def _span(data: _ReportData) -> str:
    days = (data.end - data.start).total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{days * 24:g} hours"


def _delta(cur: int, prev: int, *, short: bool = False) -> str:
    """How a figure compares with the previous range of the same length; `short` (for table
    cells) keeps the previous figure in the tooltip."""
    if cur == prev:
        cls, text = "same", "="
    elif prev == 0:
        cls, text = "up", f"▲ +{_n(cur)}"
    else:
        change = abs(cur - prev) / prev
        cls = "up" if cur > prev else "down"
        text = f"{'▲' if cur > prev else '▼'} {change:.0%}" if change >= 0.01 else "≈"
    if short:
        return f'<span class="delta {cls}" title="{_n(prev)} before">{text}</span>'
    return f'<span class="delta {cls}">{text}</span> vs {_n(prev)} before'


def _vs(data: _ReportData, cur: int, prev: int, *, short: bool = False) -> str:
    """`_delta`, where the previous range was loaded; else that there is nothing to compare
    with (the first sync skipped that history: its events are unknown, not zero)."""
    if data.prev_loaded or data.history_start is None:
        return _delta(cur, prev, short=short)
    why = f"no events loaded before {_e(_ts(data.history_start))}"
    if short:
        return f'<span class="delta same" title="{why}">—</span>'
    return f'<span class="muted">{why} to compare with</span>'


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "—"


def _range_bar(data: _ReportData) -> str:
    p = data.params
    return (
        '<div class="range">'
        f"<span>Range <strong>{_ts(data.start)} → {_ts(data.end)}</strong> UTC "
        f'<span class="muted">({_span(data)})</span></span>'
        f'<span class="muted">compared with {_ts(data.prev_start)} → {_ts(data.start)}</span>'
        f'<span class="muted">working hours {p.work_start:02d}-{p.work_end:02d} '
        f"Mon-Fri, {_e(p.timezone)}</span>"
        f'<span class="muted">{_n(data.all_time_events)} events loaded in all</span>'
        "</div>"
    )


def _headline(data: _ReportData) -> str:
    cur, prev = data.cur, data.prev

    span = "—"
    if cur.first_event_at and cur.last_event_at:
        span = f"{cur.first_event_at:%Y-%m-%d} → {cur.last_event_at:%Y-%m-%d}"
    last_sync = data.last_sync_at
    coverage = data.coverage
    incomplete = coverage.incomplete if coverage else 0
    critical, prev_critical = cur.tiers.get("critical", 0), prev.tiers.get("critical", 0)
    return (
        '<div class="grid stats">'
        + _stat("Events", _n(cur.events), _vs(data, cur.events, prev.events))
        + _stat("Subjects", _n(cur.subjects), _vs(data, cur.subjects, prev.subjects))
        + _stat(
            "New subjects", _n(cur.new_subjects), _vs(data, cur.new_subjects, prev.new_subjects)
        )
        + _stat("Active days", _n(cur.days), "UTC days with events")
        + _stat("Date range (UTC)", _e(span), "first and last event in range", small=True)
        + _stat(
            "Sensitive actions",
            _n(cur.sensitive),
            f"{_share(cur.sensitive, cur.events)} of events · "
            + _vs(data, cur.sensitive, prev.sensitive),
        )
        + _stat(
            "Critical actions",
            _n(critical),
            _vs(data, critical, prev_critical),
            alert=critical > 0,
        )
        + _stat(
            "Off-hours events",
            _n(cur.off_hours),
            f"{_share(cur.off_hours, cur.events)} · " + _vs(data, cur.off_hours, prev.off_hours),
        )
        + _stat(
            "Last sync (UTC)",
            _e(_ts(last_sync)),
            _e(_ago(last_sync, data.now)),
            small=True,
        )
        + _stat(
            "Incomplete windows",
            _n(incomplete),
            "see sync coverage" if incomplete else "every window read in full",
            alert=incomplete > 0,
        )
        + "</div>"
    )


def _activity_section(data: _ReportData) -> str:
    unit, svg = _daily_chart(data.daily)
    legend = (
        '<div class="legend"><span><span class="swatch" style="background:#3b82f6"></span>'
        'all events</span><span><span class="swatch" style="background:#e11d48"></span>'
        "sensitive actions</span></div>"
    )
    return (
        f'<section class="card"><h2>Events per {unit} <span class="sub">(UTC)</span></h2>'
        f"{legend}{svg}</section>"
    )


def _meter(value: int, peak: int) -> str:
    return f'<div class="meter"><span style="width:{100 * value / (peak or 1):.1f}%"></span></div>'


def _top_section(data: _ReportData) -> str:
    actions = [(a if a is not None else "(no action)", n) for a, n in data.top_actions]
    peak = max((int(r[4]) for r in data.top_subjects), default=0)
    subject_rows = [
        "<tr>"
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="num">{_n(int(events))}{_meter(int(events), peak)}</td>'
        f'<td class="num">{_n(int(distinct))}</td>'
        f'<td class="when">{_ts(last_seen)}</td>'
        f"<td>{_code(last_action)}</td>"
        "</tr>"
        for _sid, kind, slug, display, events, distinct, last_seen, last_action in (
            data.top_subjects
        )
    ]
    return (
        '<div class="grid pair">'
        f'<section class="card"><h2>Top actions</h2>'
        f"{_hbar_chart(actions, label='Events per action')}</section>"
        '<section class="card"><h2>Top subjects</h2>'
        + _table(
            ["Subject", "Events", "Actions", "Last seen (UTC)", "Last action"],
            subject_rows,
            "No subjects yet.",
            numeric=("Events", "Actions"),
        )
        + "</section></div>"
    )


_TIER_NOTES: Final = {
    "critical": "tenant, account, cluster, secret-group, role and identity-provider deletions;"
    " admin grants",
    "high": "secret deletions, tokens created, role and policy changes, accounts and identities",
    "notable": "every other action on secrets, tokens, access, identities; other deletions",
}


def _sensitive_section(data: _ReportData) -> str:
    cur, prev = data.cur, data.prev
    tiles = "".join(
        f'<div class="tier {tier}">{_badge(tier)} <span class="n">'
        f"{_n(cur.tiers.get(tier, 0))}</span>"
        f'<div class="small">{_vs(data, cur.tiers.get(tier, 0), prev.tiers.get(tier, 0))}</div>'
        f'<div class="small">{_TIER_NOTES[tier]}</div></div>'
        for tier in TIERS
    )
    chips = "".join(
        f"<span>{_badge(category)} {_n(n)}</span>"
        for category, n in sorted(cur.categories.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    groups = []
    for tier in TIERS:
        rows = [
            "<tr>"
            f'<td class="when">{_ts(when)}</td>'
            f"<td>{_badge(category)}</td>"
            f"<td>{_code(action)}</td>"
            f"<td>{_what(rtype, name, fqn)}</td>"
            f"<td>{_who(slug, display, kind, pat)}</td>"
            f'<td class="msg">{_e(message)}</td>'
            "</tr>"
            for when, category, action, rtype, name, fqn, slug, display, kind, pat, message in (
                data.sensitive_rows.get(tier, [])
            )
        ]
        total = cur.tiers.get(tier, 0)
        groups.append(
            _group(
                _badge(tier),
                _shown(len(rows), total),
                _table(
                    ["When (UTC)", "Category", "Action", "Resource", "Who", "Message"],
                    rows,
                    f"No {tier} actions in this range.",
                ),
                open_=tier == "critical",
            )
        )
    return (
        '<section class="card"><h2>Sensitive actions by severity '
        f'<span class="sub">{_n(cur.sensitive)} in range; tiers from the severity rules'
        "</span></h2>"
        f'<div class="tiers">{tiles}</div><div class="chips">{chips}</div>'
        + "".join(groups)
        + "</section>"
    )


ACCESS_HIGHLIGHTS: Final = 12
_CHANGE_TITLES: Final = {"grant": "Grants", "change": "Changes", "revoke": "Revocations"}


def _access_row(row: Row) -> str:
    when, change, severity, action, rtype, name, fqn, slug, display, kind, pat, message = row
    return (
        "<tr>"
        f'<td class="when">{_ts(when)}</td>'
        f"<td>{_badge(change)}</td>"
        f"<td>{_badge(severity)}</td>"
        f"<td>{_code(action)}</td>"
        f"<td>{_what(rtype, name, fqn)}</td>"
        f"<td>{_who(slug, display, kind, pat)}</td>"
        f'<td class="msg">{_e(message)}</td>'
        "</tr>"
    )


def _access_section(data: _ReportData) -> str:
    cur, prev = data.cur, data.prev
    headers = ["When (UTC)", "Change", "Severity", "Action", "What", "By whom", "Message"]
    # the latest critical and high changes stay in view; each kind of change folds away
    urgent = [r for r in data.access_rows if r[2] in ("critical", "high")][:ACCESS_HIGHLIGHTS]
    groups = []
    for change in ("grant", "change", "revoke"):
        rows = [_access_row(r) for r in data.access_rows if r[1] == change][:GROUP_LIMIT]
        n = cur.changes.get(change, 0)
        groups.append(
            _group(
                f"{_CHANGE_TITLES[change]} {_badge(change)}",
                f"{_shown(len(rows), n)} · {_vs(data, n, prev.changes.get(change, 0))}",
                _table(headers, rows, f"No {change}s in this range."),
            )
        )
    return (
        '<section class="card"><h2>Grants and role changes '
        f'<span class="sub">roles, role bindings, policies, teams, collaborators: '
        f"{_n(sum(cur.changes.values()))} in range</span></h2>"
        f'<p class="sub">Latest critical and high changes</p>'
        + _table(headers, [_access_row(r) for r in urgent], "No critical or high changes.")
        + "".join(groups)
        + "</section>"
    )


def _first_seen_section(data: _ReportData) -> str:
    rows = [
        "<tr>"
        f'<td class="when">{_ts(first)}</td>'
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="num">{_n(_int(events))}</td>'
        f"<td>{_code(action)}</td>"
        "</tr>"
        for first, _sid, kind, slug, display, events, _last, action in data.first_seen
    ]
    return (
        '<section class="card"><h2>Subjects seen for the first time '
        f'<span class="sub">{_shown(len(rows), data.cur.new_subjects)} · '
        f"{_vs(data, data.cur.new_subjects, data.prev.new_subjects)}</span></h2>"
        + _table(
            ["First seen (UTC)", "Subject", "Events", "Last action"],
            rows,
            "No new subjects in this range.",
            numeric=("Events",),
        )
        + "</section>"
    )


_KIND_TITLES: Final = {
    "external identity": "External identities",
    "virtual account": "Virtual accounts",
    "service account": "Service accounts",
    "agent identity": "Agent identities",
}
_KINDS: Final = tuple(_KIND_TITLES)


def _external_section(data: _ReportData) -> str:
    cur, prev = data.cur, data.prev
    groups = []
    for kind in _KINDS:
        members = [r for r in data.external if r[0] == kind]
        peak = max((_int(r[6]) for r in members), default=0)
        rows = [
            "<tr>"
            f"<td>{_who(slug, display, None)}</td>"
            f'<td class="small mono">{_e(ext_slug or controller)}</td>'
            f'<td class="num">{_n(_int(n))}{_meter(_int(n), peak)}</td>'
            f'<td class="num">{_n(_int(actions))}</td>'
            f'<td class="when">{_ts(last)}</td>'
            "</tr>"
            for _k, _sid, slug, display, ext_slug, controller, n, actions, last in members
        ]
        total = cur.kinds.get(kind, 0)
        groups.append(
            _group(
                _e(_KIND_TITLES[kind]),
                f"{_n(len(rows))} active, {_n(total)} events · "
                + _vs(data, total, prev.kinds.get(kind, 0)),
                _table(
                    ["Subject", "Identity / controller", "Events", "Actions", "Last seen (UTC)"],
                    rows,
                    f"No {kind} activity in this range.",
                    numeric=("Events", "Actions"),
                ),
                open_=kind in ("external identity", "virtual account"),
            )
        )
    return (
        '<section class="card"><h2>External identities and virtual accounts '
        f'<span class="sub">{_n(sum(cur.kinds.values()))} events by non-human or federated '
        "subjects</span></h2>" + "".join(groups) + "</section>"
    )


def _heatmap(data: _ReportData) -> str:
    p = data.params
    peak = max(data.heat.values(), default=0) or 1
    cells = ['<div class="h"></div>'] + [
        f'<div class="h">{h if h % 3 == 0 else ""}</div>' for h in range(24)
    ]
    for dow, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"), start=1):
        cells.append(f'<div class="d">{name}</div>')
        for hour in range(24):
            n = data.heat.get((dow, hour), 0)
            work = dow <= 5 and p.work_start <= hour < p.work_end
            alpha = 0.06 + 0.94 * (n / peak) ** 0.6 if n else 0.0
            color = "59,130,246" if work else "225,29,72"
            cls = ' class="work"' if work else ""
            cells.append(
                f'<div{cls} title="{name} {hour:02d}:00 {_n(n)} events" '
                f'style="background:rgba({color},{alpha:.2f})"></div>'
            )
    return f'<div class="heat">{"".join(cells)}</div>'


def _off_hours_section(data: _ReportData) -> str:
    p, cur = data.params, data.cur
    peak = max((_int(r[4]) for r in data.off_hours_subjects), default=0)
    subject_rows = [
        "<tr>"
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="num">{_n(_int(n))}{_meter(_int(n), peak)}</td>'
        f'<td class="num">{_n(_int(weekend))}</td>'
        "</tr>"
        for _sid, slug, display, kind, n, weekend in data.off_hours_subjects
    ]
    latest_rows = [
        "<tr>"
        f'<td class="when">{_ts(local) if isinstance(local, datetime) else _e(local)}</td>'
        f"<td>{_code(action)}</td>"
        f"<td>{_what(rtype, name, None)}</td>"
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="msg">{_e(message)}</td>'
        "</tr>"
        for local, action, rtype, name, slug, display, kind, message in data.off_hours_latest
    ]
    return (
        '<section class="card"><h2>Off-hours activity '
        f'<span class="sub">outside {p.work_start:02d}:00-{p.work_end:02d}:00 Mon-Fri in '
        f"{_e(p.timezone)}: {_n(cur.off_hours)} events, {_share(cur.off_hours, cur.events)} · "
        f"{_vs(data, cur.off_hours, data.prev.off_hours)}</span></h2>"
        '<div class="legend"><span>events per local hour of the week:</span>'
        '<span><span class="swatch" style="background:#3b82f6"></span>working hours</span>'
        '<span><span class="swatch" style="background:#e11d48"></span>off-hours</span></div>'
        + _heatmap(data)
        + _table(
            ["Most active off-hours", "Events", "At weekends"],
            subject_rows,
            "No off-hours activity in this range.",
            numeric=("Events", "At weekends"),
        )
        + _group(
            "Latest off-hours events",
            _shown(len(latest_rows), cur.off_hours),
            _table(
                [f"When ({_e(p.timezone)})", "Action", "Resource", "Who", "Message"],
                latest_rows,
                "None.",
            ),
        )
        + "</section>"
    )


def _token_rows(rows: Sequence[Row], data: _ReportData, *, dormant: bool) -> list[str]:
    out = []
    for sid, token, kind, slug, display, uses, actions, _first, last in rows:
        if dormant:
            idle = (data.end - last).days if isinstance(last, datetime) else 0
            figures = (
                f'<td class="when">{_ts(last)}</td><td class="num">{_n(idle)}</td>'
                f'<td class="num">{_n(_int(uses))}</td>'
            )
        else:
            before = data.tokens_prev.get((sid, token), 0)
            figures = (
                f'<td class="num">{_n(_int(uses))}</td>'
                f'<td class="num small">{_vs(data, _int(uses), before, short=True)}</td>'
                f'<td class="num">{_n(_int(actions))}</td><td class="when">{_ts(last)}</td>'
            )
        label = "PAT" if kind == "pat" else "account token"
        out.append(
            f"<tr><td><code>{_e(token)}</code><div class='small'>{label}</div></td>"
            f"<td>{_who(slug, display, None)}</td>{figures}</tr>"
        )
    return out


def _dormant_section(data: _ReportData) -> str:
    dormant = _table(
        ["Token", "Owner", "Last used (UTC)", "Days unused", "Uses"],
        _token_rows(data.dormant, data, dormant=True),
        "No token has been idle for 30 days.",
        numeric=("Days unused", "Uses"),
    )
    return (
        '<section class="card"><h2>Dormant tokens '
        f'<span class="sub">last used more than {DORMANT_AFTER.days} days before '
        f"{_ts(data.end)}: {_n(len(data.dormant))}</span></h2>{dormant}</section>"
    )


def _tokens_section(data: _ReportData) -> str:
    groups = []
    for kind, title in (("pat", "Personal access tokens"), ("account token", "Account tokens")):
        rows = [r for r in data.tokens if r[2] == kind]
        groups.append(
            _group(
                title,
                f"{_n(len(rows))} used in range",
                _table(
                    ["Token", "Owner", "Uses", "Change", "Actions", "Last used (UTC)"],
                    _token_rows(rows, data, dormant=False),
                    "None used in this range.",
                    numeric=("Uses", "Change", "Actions"),
                ),
                open_=kind == "pat",
            )
        )
    return (
        '<section class="card"><h2>Usage per token '
        f'<span class="sub">{_n(data.cur.token_uses)} events made with a token · '
        f"{_vs(data, data.cur.token_uses, data.prev.token_uses)}</span></h2>"
        + "".join(groups)
        + "</section>"
    )


def _scope_delta(data: _ReportData, column: str, key: Any, n: Any) -> str:
    return _vs(data, _int(n), data.scope_prev.get((column, key), 0), short=True)


def _scope_section(data: _ReportData) -> str:
    ws_peak = max((_int(r[3]) for r in data.workspaces), default=0)
    ws_rows = [
        "<tr>"
        f'<td title="{_e(wid)}">{_e(name or wid)}</td>'
        f'<td class="small mono">{_e(cluster)}</td>'
        f'<td class="num">{_n(_int(n))}{_meter(_int(n), ws_peak)}</td>'
        f'<td class="num small">{_scope_delta(data, "workspace_id", wid, n)}'
        "</td>"
        f'<td class="num">{_n(_int(subjects))}</td><td class="num">{_n(_int(deleted))}</td>'
        "</tr>"
        for wid, name, cluster, n, subjects, deleted in data.workspaces
    ]
    cl_peak = max((_int(r[2]) for r in data.clusters), default=0)
    cl_rows = [
        "<tr>"
        f'<td class="mono">{_e(cid)}</td><td class="num">{_n(_int(spaces))}</td>'
        f'<td class="num">{_n(_int(n))}{_meter(_int(n), cl_peak)}</td>'
        f'<td class="num small">{_scope_delta(data, "cluster_id", cid, n)}'
        "</td>"
        f'<td class="num">{_n(_int(subjects))}</td><td class="num">{_n(_int(deleted))}</td>'
        "</tr>"
        for cid, spaces, n, subjects, deleted in data.clusters
    ]
    numeric = ("Events", "Change", "Subjects", "Deletions", "Workspaces")
    ws_headers = ["Workspace", "Cluster", "Events", "Change", "Subjects", "Deletions"]
    # the busiest in view, the rest one click away
    rest = ws_rows[TOP_SUBJECTS:]
    more = (
        _group(
            "The other workspaces",
            f"{_n(len(rest))}, busiest first",
            _table(ws_headers, rest, "", numeric=numeric),
        )
        if rest
        else ""
    )
    return (
        '<div class="grid pair">'
        '<section class="card"><h2>By workspace '
        f'<span class="sub">{_n(len(ws_rows))} active</span></h2>'
        + _table(
            ws_headers,
            ws_rows[:TOP_SUBJECTS],
            "No workspace activity in this range.",
            numeric=numeric,
        )
        + more
        + '</section><section class="card"><h2>By cluster '
        f'<span class="sub">{_n(len(cl_rows))} active</span></h2>'
        + _table(
            ["Cluster", "Workspaces", "Events", "Change", "Subjects", "Deletions"],
            cl_rows,
            "No cluster activity in this range.",
            numeric=numeric,
        )
        + "</section></div>"
    )


def _latest_section(data: _ReportData) -> str:
    rows = [
        "<tr>"
        f'<td class="when">{_ts(when)}</td>'
        f"<td>{_code(action)}</td>"
        f"<td>{_what(rtype, name, fqn)}</td>"
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="msg">{_e(message)}</td>'
        "</tr>"
        for when, action, rtype, name, fqn, slug, display, kind, message in data.latest
    ]
    return (
        '<section class="card"><h2>Latest events</h2>'
        + _group(
            "Every event, newest first",
            _shown(len(rows), data.cur.events),
            _table(["When (UTC)", "Action", "Resource", "Who", "Message"], rows, "No events."),
        )
        + "</section>"
    )


def _anomalies_section(data: _ReportData) -> str:
    """What the sync had to change or could not place (`event_anomalies`, anomalies.py)."""
    if not data.anomaly_counts:
        return (
            '<section class="card"><h2>Odd events</h2><p class="empty">None recorded: every '
            "event was loaded as the service sent it.</p></section>"
        )
    rows = [
        "<tr>"
        f'<td class="when">{_ts(when)}</td>'
        f"<td>{_code(kind)}</td><td>{_code(action)}</td>"
        f'<td class="small mono">{_e(_clip(str(event_id or ""), 80))}</td>'
        f'<td class="small mono">{_e(_clip(str(path or ""), 160))}</td>'
        f'<td class="msg">{_e(detail)}</td>'
        "</tr>"
        for when, kind, action, event_id, path, detail in data.anomalies
    ]
    total = sum(data.anomaly_counts.values())
    return (
        '<section class="card"><h2>Odd events '
        f'<span class="sub">{_e(count_text(data.anomaly_counts))}</span></h2>'
        '<p class="muted">Events the sync loaded changed, capped or once only, or could not '
        f"place; table <code>{_e(ANOMALIES_TABLE)}</code> holds every record.</p>"
        + _group(
            "Latest records, newest first",
            _shown(len(rows), total),
            _table(["Recorded (UTC)", "Kind", "Action", "Event", "Field", "Detail"], rows, ""),
        )
        + "</section>"
    )


def _verify_facts(data: _ReportData) -> str:
    if data.verify is None:
        return (
            '<dt>Last verify</dt><dd><span class="badge bad">never verified</span> '
            '<span class="muted">run <code>tfy-audit verify</code> to compare the service\'s '
            "counts with the warehouse</span></dd>"
        )
    at, lo, hi, days, differing, missing = data.verify
    status = (
        f'<span class="badge bad">{_n(_int(differing))} day(s) differ, '
        f"{_n(_int(missing))} missing</span>"
        if _int(differing)
        else '<span class="badge ok">every day matches</span>'
    )
    return (
        f"<dt>Last verify (UTC)</dt><dd>{_e(_ts(at))} "
        f'<span class="muted">{_e(_ago(at, data.now))}</span> {status}</dd>'
        f"<dt>Verified range</dt><dd>{_e(_ts(lo))} → {_e(_ts(hi))}, {_n(_int(days))} days</dd>"
    )


def _history_fact(data: _ReportData) -> str:
    if data.history_start is None:
        return ""
    return (
        f"<dt>History from (UTC)</dt><dd>{_e(_ts(data.history_start))} "
        '<span class="muted">where the first sync started (--since); earlier events were not '
        "loaded</span></dd>"
    )


def _coverage_section(data: _ReportData) -> str:
    cov = data.coverage
    loads = (
        f"<dt>Loads</dt><dd>{_n(data.loads)} completed, last at {_e(_ts(data.last_load_at))}</dd>"
    )
    fresh = (
        f"<dt>Freshness</dt><dd>newest event {_e(_ts(data.last_loaded_event_at))} "
        f'<span class="muted">{_e(_ago(data.last_loaded_event_at, data.now))}</span></dd>'
    )
    verify = _verify_facts(data) + _history_fact(data)
    if cov is None:
        return (
            '<section class="card"><h2>Sync coverage</h2>'
            '<p class="empty">No sync windows recorded: this dataset was not loaded by '
            f'<code>tfy-audit sync</code>.</p><dl class="facts">{fresh}{verify}{loads}</dl>'
            "</section>"
        )
    status = (
        f'<span class="badge bad">{_n(cov.incomplete)} incomplete</span>'
        if cov.incomplete
        else '<span class="badge ok">all complete</span>'
    )
    facts = (
        '<dl class="facts">'
        f"<dt>Windows loaded</dt><dd>{_n(cov.windows)} {status}</dd>"
        f"<dt>Covered (UTC)</dt><dd>{_e(_ts(cov.covered_from))} → {_e(_ts(cov.covered_to))}</dd>"
        f"<dt>Rows read</dt><dd>{_n(cov.rows_read)}</dd>"
        f"<dt>Syncs</dt><dd>{_n(cov.syncs)}</dd>"
        f"<dt>Last sync (UTC)</dt><dd>{_e(_ts(cov.last_fetched_at))} "
        f'<span class="muted">{_e(_ago(cov.last_fetched_at, data.now))}</span></dd>'
        f"{fresh}{verify}{loads}</dl>"
    )
    rows = [
        "<tr>"
        f'<td class="when">{_ts(start)}</td><td class="when">{_ts(end)}</td>'
        f'<td class="small mono">{_e(key)}</td>'
        f'<td class="num">{_e(planned)}</td><td class="num">{_e(total)}</td>'
        f'<td class="num">{_e(read)}</td><td class="when">{_ts(fetched)}</td>'
        "</tr>"
        for start, end, key, planned, total, read, fetched in cov.incomplete_rows
    ]
    incomplete = (
        "<h2 style='margin-top:16px'>Incomplete windows "
        f'<span class="sub">{_shown(len(rows), cov.incomplete)}</span></h2>'
        + _table(
            ["Start", "End", "Filters", "Planned", "Service total", "Read", "Fetched"],
            rows,
            "",
            numeric=("Planned", "Service total", "Read"),
        )
        if rows
        else ""
    )
    return (
        '<section class="card"><h2>Sync coverage, verify and freshness</h2>'
        f"{facts}{incomplete}</section>"
    )


def _render_html(data: _ReportData) -> str:
    """The whole page as one string."""
    title = f"Audit log report: {data.dataset}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}{_CSS_MORE}</style></head><body><main>"
        "<header><div><h1>TrueFoundry audit log</h1>"
        f'<div class="sub">dataset <code>{_e(data.dataset)}</code> on '
        f"{_e(data.destination)}</div></div>"
        f'<div class="sub">generated {_e(_ts(data.now))} UTC</div></header>'
        + _range_bar(data)
        + _headline(data)
        + _activity_section(data)
        + _top_section(data)
        + _sensitive_section(data)
        + _access_section(data)
        + '<div class="grid pair">'
        + _first_seen_section(data)
        + _dormant_section(data)
        + "</div>"
        + _off_hours_section(data)
        + _external_section(data)
        + _tokens_section(data)
        + _scope_section(data)
        + _latest_section(data)
        + _coverage_section(data)
        + _anomalies_section(data)
        + "<footer>Generated by tfy-audit. Times are UTC unless a column names another zone. "
        "Each panel reads the SQL of a view: <code>sensitive_actions</code> (with "
        "<code>severity</code>), <code>access_changes</code>, <code>subject_activity</code>, "
        "<code>external_activity</code>, <code>off_hours_activity</code>, "
        "<code>token_usage</code>, <code>workspace_activity</code>. "
        "Changes compare with the previous range of the same length.</footer>"
        "</main></body></html>\n"
    )
