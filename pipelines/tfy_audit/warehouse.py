"""What tfy-audit reads back from the destination: known subjects, per-day counts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from dlt.common.pipeline import SupportsPipeline
from dlt.common.schema.utils import has_table_seen_data

from .errors import DestinationError
from .lakehouse import DeltaSqlClient, is_delta
from .rows import SubjectObservation
from .settings import SUBJECTS_TABLE

logger = logging.getLogger(__name__)

_SUBJECT_COLUMNS = (
    "subject_id",
    "subject_type",
    "subject_slug",
    "subject_display_name",
    "subject_pat_name",
    "subject_controller_name",
    "subject_external_identity_slug",
    "first_seen_at",
    "last_seen_at",
)


def table_loaded(pipeline: Any, table: str) -> bool:
    """Whether the pipeline's schema says the table has received data (so it exists)."""
    if not pipeline.default_schema_name:
        return False
    tables = pipeline.default_schema.tables
    return table in tables and has_table_seen_data(tables[table])


def read_subjects(pipeline: SupportsPipeline) -> dict[str, SubjectObservation]:
    """Subjects already in the destination, so first/last seen survive incremental loads.

    Read through the destination's SQL client; `dataset()` (which the filesystem destination
    needs) costs ~0.1 s more on every run, building its SQL model of the schema first."""
    if not table_loaded(pipeline, SUBJECTS_TABLE):
        return {}
    try:
        if is_delta(pipeline):
            with DeltaSqlClient(pipeline, [SUBJECTS_TABLE]) as delta:
                rows = delta.execute_sql(f"select {', '.join(_SUBJECT_COLUMNS)} from subjects")
        elif getattr(pipeline.destination, "destination_name", None) == "filesystem":
            relation = pipeline.dataset()[SUBJECTS_TABLE].select(*_SUBJECT_COLUMNS)  # type: ignore[attr-defined]
            rows = [tuple(r.values()) for r in relation.arrow().to_pylist()]
        else:
            with pipeline.sql_client() as client:  # type: ignore[attr-defined]
                table = client.make_qualified_table_name(SUBJECTS_TABLE)
                columns = ", ".join(client.escape_column_name(c) for c in _SUBJECT_COLUMNS)
                rows = client.execute_sql(f"select {columns} from {table}") or []
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


def _utc(value: datetime | None) -> datetime | None:
    """A timestamp as the destination's driver returns it (aware in the session's zone, or
    naive UTC), as an aware UTC datetime."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
