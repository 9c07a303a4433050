"""What tfy-audit reads back from the destination: known subjects, per-day counts."""

from __future__ import annotations

import logging
from typing import Any

from dlt.common.pipeline import SupportsPipeline
from dlt.common.schema.utils import has_table_seen_data

from .errors import DestinationError
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
    """Subjects already in the destination, so first/last seen survive incremental loads."""
    if not table_loaded(pipeline, SUBJECTS_TABLE):
        return {}
    try:
        arrow = pipeline.dataset()[SUBJECTS_TABLE].select(*_SUBJECT_COLUMNS).arrow()  # type: ignore[attr-defined]
    except Exception as exc:
        raise DestinationError(
            f"cannot read {SUBJECTS_TABLE} from the destination ({exc}); check that the "
            "destination is reachable and the dataset was not altered by hand"
        ) from exc
    subjects: dict[str, SubjectObservation] = {}
    for row in arrow.to_pylist():
        subjects[row["subject_id"]] = SubjectObservation(**row)
    return subjects
