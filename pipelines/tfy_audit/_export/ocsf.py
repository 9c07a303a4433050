"""Export the warehouse's events as OCSF Parquet in AWS Security Lake's custom-source layout:

    <out>/<source>/region=<region>/accountId=<account>/eventDay=<YYYYMMDD>/<YYYYMMDD>-<run>.parquet

with one `<source>` folder per OCSF class (classes.csv: `truefoundry_api_activity`,
`truefoundry_account_change`), since a Security Lake custom source holds one class. The rows
are the `ocsf_api_activity` view's (one mapping, in the warehouse's SQL), nested by
`_ocsf/nest.py`; a day is the UTC day of the event's `time`.

A day is the unit of writing. Writing a day replaces its partitions: the new file is written
first, then the day's older files are deleted, so a reader sees the day whole (for a moment
twice, never not at all); a crash between the two leaves the mark unchanged for that day, and
the next run writes it again and deletes both. Which days a run writes: `mark.py`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import dlt
import pyarrow as pa

from tfy_audit._export.mark import read_marks, write_marks
from tfy_audit._export.options import ExportOptions
from tfy_audit._export.store import Store, open_store
from tfy_audit._ocsf.mapping import classes
from tfy_audit._ocsf.nest import arrow_schema, class_columns, nest
from tfy_audit._warehouse.adapter import sql_reader
from tfy_audit._warehouse.views import view_columns, view_select

logger = logging.getLogger(__name__)

VIEW: Final = "ocsf_api_activity"
_DAY_MS: Final = 86_400_000


@dataclass
class ExportSummary:
    out: str
    days: list[str] = field(default_factory=list)  # the days written (YYYYMMDD), in order
    events: int = 0
    events_by_class: dict[int, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # the Parquet files written, under `out`
    replaced: int = 0  # older files of those days deleted


def _fingerprints(client: Any, audit_logs: str) -> dict[str, str]:
    """Each UTC day's fingerprint: its dated events' count, newest `updated_at`, smallest and
    largest id. A late event, a correction the lookback wrote, or a deleted row changes it."""
    rows = client.execute_sql(
        "SELECT CAST(timezone('UTC', created_at) AS DATE) AS day, count(*), max(updated_at), "
        f"min(id), max(id) FROM {audit_logs} WHERE created_at IS NOT NULL "
        "GROUP BY CAST(timezone('UTC', created_at) AS DATE)"
    )
    out = {}
    for day, count, updated, low, high in rows:
        newest = updated.astimezone(UTC).isoformat() if updated is not None else ""
        out[day.strftime("%Y%m%d")] = f"{int(count)}|{newest}|{low}|{high}"
    return out


def _day_bounds(day: str) -> tuple[int, int]:
    start = datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC)
    low = int(start.timestamp()) * 1000
    return low, low + _DAY_MS


def _write_day(
    store: Store,
    options: ExportOptions,
    day: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    summary: ExportSummary,
) -> None:
    run = uuid.uuid4().hex[:12]
    records = [dict(zip(columns, row, strict=True)) for row in rows]
    for ocsf_class in classes().values():
        folder = (
            f"{ocsf_class.source}/region={options.region}/accountId={options.account_id}/"
            f"eventDay={day}"
        )
        older = store.files_in(folder)
        kept = class_columns(columns, ocsf_class)
        events = [
            nest({c: r[c] for c in kept}) for r in records if r["class_uid"] == ocsf_class.uid
        ]
        if events:
            table = pa.Table.from_pylist(events, schema=arrow_schema(kept))
            store.write_parquet(f"{folder}/{day}-{run}.parquet", table)
            summary.files.append(f"{folder}/{day}-{run}.parquet")
            summary.events_by_class[ocsf_class.uid] = summary.events_by_class.get(
                ocsf_class.uid, 0
            ) + len(events)
            summary.events += len(events)
        for path in older:
            store.delete(path)
        summary.replaced += len(older)


def export_ocsf(
    pipeline: dlt.Pipeline, options: ExportOptions, *, now: datetime | None = None
) -> ExportSummary:
    """Write the days `options` ask for (see `ExportOptions`) and move the mark; returns what
    was written. `now` (UTC-aware, default the current time) ends a range without `end`."""
    now = now or datetime.now(UTC)
    store = open_store(options.out)
    marks = read_marks(store)
    key = f"{options.region}/{options.account_id}"
    done = marks.setdefault(key, {})
    summary = ExportSummary(out=options.out)
    columns = view_columns(VIEW)
    with sql_reader(pipeline) as client:
        current = _fingerprints(client, client.make_qualified_table_name("audit_logs"))
        asked = options.days(now)
        if asked is None:
            todo = sorted(d for d in set(current) | set(done) if current.get(d) != done.get(d))
        else:
            todo = asked
        select = view_select(VIEW, client.fully_qualified_dataset_name())
        listed = ", ".join(f"o.{c}" for c in columns)
        for day in todo:
            low, high = _day_bounds(day)
            rows = client.execute_sql(
                f"SELECT {listed} FROM (\n{select}\n) AS o "
                f"WHERE o.time >= {low} AND o.time < {high} ORDER BY o.time, o.metadata__uid"
            )
            _write_day(store, options, day, columns, rows, summary)
            summary.days.append(day)
            if day in current:
                done[day] = current[day]
            else:
                done.pop(day, None)
            write_marks(store, marks)
            logger.debug("exported %s: %d events", day, len(rows))
    return summary
