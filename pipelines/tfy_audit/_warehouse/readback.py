"""What tfy-audit reads back from the destination: which tables hold data, the subjects known,
the ids already loaded in a range, and the events verify counts. Where the way to read
differs by destination kind, the kind's adapter (adapter.py) reads."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tfy_audit._compat.dlt import table_seen_data
from tfy_audit._core.errors import DestinationError
from tfy_audit._core.settings import ANOMALIES_TABLE, AUDIT_LOGS_TABLE, MIN_WINDOW, SUBJECTS_TABLE
from tfy_audit._core.times import utc as _utc
from tfy_audit._service.columns import SUBJECTS_SCHEMA
from tfy_audit._service.planning import Chunk
from tfy_audit._service.subjects import SubjectObservation

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

# the subjects table's columns, in the order its schema declares them
_SUBJECT_COLUMNS = tuple(SUBJECTS_SCHEMA.names)


def table_loaded(pipeline: dlt.Pipeline, table: str) -> bool:
    """Whether the pipeline's schema says the table has received data (so it exists)."""
    if not pipeline.default_schema_name:
        return False
    tables = pipeline.default_schema.tables
    return table in tables and table_seen_data(tables[table])


def read_subjects(pipeline: dlt.Pipeline) -> dict[str, SubjectObservation]:
    """Subjects already in the destination, so first/last seen survive incremental loads.

    Read through the destination's SQL client; on the filesystem through `DeltaSqlClient`
    (dlt's own reader there downloads DuckDB extensions)."""
    from tfy_audit._warehouse.adapter import warehouse_of

    if not table_loaded(pipeline, SUBJECTS_TABLE):
        return {}
    try:
        rows = warehouse_of(pipeline).subject_rows(pipeline, _SUBJECT_COLUMNS)
    except Exception as exc:
        raise DestinationError(
            f"cannot read {SUBJECTS_TABLE} from the destination ({exc}); check that the "
            "destination is reachable and the dataset was not altered by hand"
        ) from exc
    subjects: dict[str, SubjectObservation] = {}
    for subject_id, kind, slug, name, pat, controller, identity, first, last in rows:
        subjects[subject_id] = SubjectObservation(
            subject_id, kind, slug, name, pat, controller, identity, _utc(first), _utc(last)
        )
    return subjects


def existing_ids(pipeline: dlt.Pipeline, chunk: Chunk) -> set[str]:
    """Ids already loaded in a chunk's range, for destinations that cannot merge: the chunk then
    skips them, so a re-read (the lookback, a repair) adds only what is missing."""
    from tfy_audit._warehouse.adapter import warehouse_of

    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return set()
    return warehouse_of(pipeline).ids_between(pipeline, chunk.start - MIN_WINDOW, chunk.end)


def undated_ids(pipeline: dlt.Pipeline) -> set[str]:
    """Ids of the events loaded without a usable createdAt. The service may return such an
    event to any query, so a chunk appending rows skips those already loaded (extract.py).
    Empty for Delta tables, which are upserted on the id, never appended."""
    from tfy_audit._warehouse.adapter import warehouse_of

    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return set()
    return warehouse_of(pipeline).undated_ids(pipeline)


def known_repeated_ids(pipeline: dlt.Pipeline) -> set[str]:
    """Every id recorded in `event_anomalies` as served twice (`repeated_id`): a sync meeting
    one again has no news. Read by SQL on the anomalies table alone (small), not through
    `dataset()`; empty where it cannot be read (the run then reports the id once more)."""
    if not table_loaded(pipeline, ANOMALIES_TABLE):
        return set()
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(ANOMALIES_TABLE)
            rows = client.execute_sql(
                f"select distinct event_id from {table} where kind = %s", "repeated_id"
            )
    except Exception as exc:
        logger.debug("cannot read %s: %s", ANOMALIES_TABLE, exc)
        return set()
    return {str(r[0]) for r in rows or [] if r[0] is not None}


def recorded_repeated_ids(
    pipeline: dlt.Pipeline, start: datetime | None = None, end: datetime | None = None
) -> dict[str, datetime]:
    """Ids recorded in `event_anomalies` as served twice (`repeated_id`), each with its event's
    createdAt as loaded; only events created in `[start, end)` when given. Empty where the
    tables are not loaded or cannot be read (a figure, never a reason to fail)."""
    where = "a.kind = 'repeated_id'"
    if start is not None:
        where += f" and l.created_at >= TIMESTAMPTZ '{start.isoformat()}'"
    if end is not None:
        where += f" and l.created_at < TIMESTAMPTZ '{end.isoformat()}'"
    rows = _anomalies_with_events(pipeline, "distinct a.event_id, l.created_at", "join", where)
    return {str(event_id): _utc(at) or at for event_id, at in rows}


def recorded_set_aside(
    pipeline: dlt.Pipeline, start: datetime | None = None, end: datetime | None = None
) -> list[tuple[datetime, datetime]]:
    """The windows (start, end) of the events a sync set aside as too large for any response
    (`event_too_large`, `not_loaded` in `event_anomalies`) and that the warehouse still lacks,
    one per event; only windows overlapping `[start, end)` when given. Empty where the table is
    not loaded or cannot be read (a figure, never a reason to fail)."""
    where = "a.kind = 'event_too_large' and a.action = 'not_loaded' and l.id is null"
    where += " and a.window_start is not null and a.window_end is not null"
    if start is not None:
        where += f" and a.window_end > TIMESTAMPTZ '{start.isoformat()}'"
    if end is not None:
        where += f" and a.window_start < TIMESTAMPTZ '{end.isoformat()}'"
    rows = _anomalies_with_events(pipeline, "a.window_start, a.window_end", "left join", where)
    return [(_utc(s) or s, _utc(e) or e) for s, e in rows]


def _anomalies_with_events(
    pipeline: dlt.Pipeline, columns: str, join: str, where: str
) -> list[Any]:
    """Rows of `event_anomalies` (as `a`) joined with `audit_logs` (as `l`) by event id; none
    where either table is not loaded or cannot be read (a figure, never a reason to fail)."""
    if not table_loaded(pipeline, ANOMALIES_TABLE) or not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return []
    try:
        relation = pipeline.dataset().query(
            f"select {columns} from {ANOMALIES_TABLE} a "
            f"{join} {AUDIT_LOGS_TABLE} l on l.id = a.event_id where {where}"
        )
        return list(relation.fetchall())
    except Exception as exc:
        logger.debug("cannot read %s: %s", ANOMALIES_TABLE, exc)
        return []


# what verify needs of each event: its time and the columns the endpoint's filters look at
_WAREHOUSE_COLUMNS = (
    "created_at",
    "action",
    "resource_id",
    "resource_type",
    "resource_name",
    "resource_fqn",
    "cluster_id",
    "workspace_id",
    "message",
    "subject__subject_slug",
)


def read_warehouse_events(
    pipeline: dlt.Pipeline,
    start: datetime,
    end: datetime,
    *,
    with_ids: bool = False,
    filtered: bool = True,
) -> pa.Table:
    """The events of `[start - 1 ms, end]` (verify's padded range), `_WAREHOUSE_COLUMNS` only
    (only `created_at` when not `filtered`: no filter needs the others), and their `id` with
    `with_ids` (verify --ids)."""
    columns = _WAREHOUSE_COLUMNS if filtered else ("created_at",)
    if with_ids:
        columns = (*columns, "id")
    from tfy_audit._warehouse.adapter import warehouse_of

    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return warehouse_of(pipeline).events_between(pipeline, columns, start - MIN_WINDOW, end)
