"""Reading what the report shows: every panel's rows, for a range and the one before it.

Every panel reads the SELECT of one of the views in `_warehouse/sql/` (with the same severity
rules, time zone and working hours), so the report and the views always agree, and the views
need not exist. The SELECTs themselves are in `sql/` (see `queries.py`).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import dlt

from tfy_audit._core.settings import ANOMALIES_TABLE
from tfy_audit._core.times import utc as as_utc
from tfy_audit._report.alerts import collect_alerts
from tfy_audit._report.data import (
    ANOMALY_LIMIT,
    DORMANT_AFTER,
    GROUP_LIMIT,
    INCOMPLETE_LIMIT,
    LATEST_LIMIT,
    TOP_ACTIONS,
    TOP_SUBJECTS,
    Coverage,
    Period,
    ReportData,
    Row,
)
from tfy_audit._report.queries import (
    AUDIT_LOGS,
    DLT_LOADS,
    SYNC_WINDOWS,
    Sources,
    as_int,
    between,
    exists,
    grouped,
    one,
    query,
    rows,
    utc_rows,
)
from tfy_audit._warehouse.severity import TIERS
from tfy_audit._warehouse.sql_text import sql_timestamp as literal
from tfy_audit._warehouse.verify_log import VERIFY_RUNS
from tfy_audit._warehouse.view_params import ViewParams

logger = logging.getLogger(__name__)


def collect(
    client: Any,
    pipeline: dlt.Pipeline,
    now: datetime,
    start: datetime,
    end: datetime,
    params: ViewParams,
) -> ReportData:
    """Everything the page shows, read through `client` (the pipeline's SQL client)."""
    destination = pipeline.destination.destination_name if pipeline.destination else "unknown"
    data = ReportData(
        dataset=pipeline.dataset_name,
        destination=destination,
        now=now,
        start=start,
        end=end,
        params=params,
    )
    data.history_start = history_start(pipeline)
    if exists(client, AUDIT_LOGS):
        src = Sources(client, params)
        data.cur = _collect_period(client, src, start, end)
        data.prev = _collect_period(client, src, data.prev_start, start)
        _collect_events(client, src, data)
    else:
        logger.warning(
            "no %s table in %s: the report will be empty",
            AUDIT_LOGS,
            client.fully_qualified_dataset_name(),
        )
    if exists(client, SYNC_WINDOWS):
        data.coverage = _collect_coverage(client, client.make_qualified_table_name(SYNC_WINDOWS))
    if exists(client, VERIFY_RUNS):
        runs = client.make_qualified_table_name(VERIFY_RUNS)
        found = utc_rows(rows(client, query("last_verify", runs=runs)))
        data.verify = found[0] if found else None
    if exists(client, ANOMALIES_TABLE):
        records = client.make_qualified_table_name(ANOMALIES_TABLE)
        data.anomaly_counts = grouped(client, query("anomaly_kinds", records=records))
        data.anomalies = utc_rows(
            rows(client, query("anomalies", records=records, limit=ANOMALY_LIMIT))
        )
    data.alerts = collect_alerts(client, start, end)
    if exists(client, DLT_LOADS):
        loads = client.make_qualified_table_name(DLT_LOADS)
        count, last = one(client, query("loads", loads=loads))
        data.loads, data.last_load_at = as_int(count), as_utc(last)
    return data


def history_start(pipeline: dlt.Pipeline) -> datetime | None:
    """Where the unfiltered filter set's first sync started, from the state the destination
    carries (else, for older state, the run history); None when the whole history was read,
    or nothing recorded it."""
    from tfy_audit._compat.dlt import pipeline_source_state
    from tfy_audit._core.settings import HISTORY_START, SOURCE_NAME
    from tfy_audit._service.client import AuditLogFilters
    from tfy_audit._source.state import first_start, stream_state
    from tfy_audit._warehouse.run_log import first_run_start

    source_state = pipeline_source_state(pipeline, SOURCE_NAME)
    streams = dict(source_state.get("streams", {}))
    start = first_start(stream_state({"streams": streams}, AuditLogFilters()))
    start = start or first_run_start(pipeline, AuditLogFilters())  # older state
    return start if start is not None and start > HISTORY_START else None


def _collect_period(client: Any, src: Sources, lo: datetime, hi: datetime) -> Period:
    within = between(lo, hi)

    def count_by(source: str, column: str) -> dict[str, int]:
        return grouped(client, query("count_by", source=source, column=column, within=within))

    def count(source: str, where: str = within) -> int:
        (n,) = one(client, query("count", source=source, within=where))
        return as_int(n)

    events, subjects, days, first, last = one(
        client, query("period_totals", logs=src.logs, within=within)
    )
    return Period(
        events=as_int(events),
        subjects=as_int(subjects),
        days=as_int(days),
        first_event_at=as_utc(first),
        last_event_at=as_utc(last),
        tiers=count_by(src.sensitive, "severity"),
        categories=count_by(src.sensitive, "category"),
        new_subjects=count(src.subjects, between(lo, hi, "first_seen_at")),
        off_hours=count(src.off_hours),
        changes=count_by(src.access, "change"),
        kinds=count_by(src.external, "subject_kind"),
        token_uses=count(src.tokens),
    )


def _collect_events(client: Any, src: Sources, data: ReportData) -> None:
    within = between(data.start, data.end)
    before = between(data.prev_start, data.start)
    logs = src.logs

    def read(name: str, **values: object) -> list[Row]:
        return rows(client, query(name, within=within, **values))

    all_time, last_loaded = one(client, query("all_time", logs=logs))
    data.all_time_events, data.last_loaded_event_at = as_int(all_time), as_utc(last_loaded)

    flagged: dict[Any, Any] = dict(read("daily_sensitive", sensitive=src.sensitive))
    data.daily = [
        (day, as_int(n), as_int(flagged.get(day)))
        for day, n in read("daily_totals", logs=logs)
        if day is not None
    ]
    data.top_actions = [
        (action, as_int(n)) for action, n in read("top_actions", logs=logs, limit=TOP_ACTIONS)
    ]
    data.top_subjects = utc_rows(read("top_subjects", logs=logs, limit=TOP_SUBJECTS))
    for tier in TIERS:
        data.sensitive_rows[tier] = utc_rows(
            read("sensitive_rows", sensitive=src.sensitive, tier=tier, limit=GROUP_LIMIT)
        )
    data.access_rows = utc_rows(read("access_rows", access=src.access, limit=3 * GROUP_LIMIT))
    data.first_seen = utc_rows(
        rows(
            client,
            query(
                "first_seen",
                subjects=src.subjects,
                within=between(data.start, data.end, "first_seen_at"),
                limit=GROUP_LIMIT,
            ),
        )
    )
    data.external = utc_rows(read("external", external=src.external))
    data.off_hours_subjects = read(
        "off_hours_subjects", off_hours=src.off_hours, limit=TOP_SUBJECTS
    )
    data.off_hours_latest = read("off_hours_latest", off_hours=src.off_hours, limit=LATEST_LIMIT)
    data.heat = {
        (as_int(dow), as_int(hour)): as_int(n)
        for dow, hour, n in read("heat", logs=logs, zone=data.params.timezone)
    }
    data.dormant = utc_rows(
        rows(
            client,
            query(
                "dormant_tokens",
                tokens=src.tokens,
                end=literal(data.end),
                idle_since=literal(data.end - DORMANT_AFTER),
            ),
        )
    )
    data.tokens = utc_rows(read("tokens", tokens=src.tokens))
    data.tokens_prev = {
        (sid, name): as_int(n)
        for sid, name, n in rows(client, query("token_counts", tokens=src.tokens, within=before))
    }
    data.workspaces = read("workspaces", scope=src.scope)
    data.clusters = read("clusters", scope=src.scope)
    for column in ("workspace_id", "cluster_id"):
        sql = query("scope_counts", scope=src.scope, column=column, within=before)
        for key, n in rows(client, sql):
            data.scope_prev[(column, key)] = as_int(n)
    data.latest = utc_rows(read("latest", logs=logs, limit=LATEST_LIMIT))


def _collect_coverage(client: Any, windows: str) -> Coverage:
    count, missing, start, end, rows_read, syncs, fetched = one(
        client, query("coverage", windows=windows)
    )
    incomplete_rows = utc_rows(
        rows(client, query("incomplete_windows", windows=windows, limit=INCOMPLETE_LIMIT))
    )
    return Coverage(
        windows=as_int(count),
        incomplete=as_int(missing),
        covered_from=as_utc(start),
        covered_to=as_utc(end),
        rows_read=as_int(rows_read),
        syncs=as_int(syncs),
        last_fetched_at=as_utc(fetched),
        incomplete_rows=incomplete_rows,
    )
