"""The adapter of a PostgreSQL destination (SQL dialect `postgres`): what it gets beyond dlt's
tables: indexes on `audit_logs` for the queries users run (an event by id, a time range), an
advisory lock (engine/lock.py), NUL replaced in text, and no warning about the loader chosen.

PostgreSQL is loaded with INSERT statements built from the Arrow tables
(`PostgresWarehouse.loader_file_format`): dlt's CSV `COPY` would turn every empty string into
NULL, and `""` is a value the service sends (tenant-level events have `clusterId: ""`). dlt
warns on every run that this conversion "will degrade performance"; it is a choice made for
correctness, so the warning is not passed on.

The index on `id` is not unique: a crash between an appended load job's commit and dlt's
bookkeeping re-runs the job, and the next sync re-merges the day it doubled (see sync.py).
A unique index would make that re-run fail instead, and every later sync with it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from tfy_audit._core.settings import AUDIT_LOGS_TABLE
from tfy_audit._warehouse.adapter import LockKind, QueryRoute
from tfy_audit._warehouse.generic import SqlWarehouse
from tfy_audit._warehouse.readback import table_loaded

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

# (index name, column) on audit_logs
INDEXES: tuple[tuple[str, str], ...] = (
    ("audit_logs_id_idx", "id"),
    ("audit_logs_created_at_idx", "created_at"),
)

_INSERT_VALUES_NOTE = "writer is used that internally converts arrow"


class _HideInsertValuesWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _INSERT_VALUES_NOTE not in record.getMessage()


def hide_insert_values_warning() -> None:
    """Drop dlt's warning about converting Arrow to INSERT statements (idempotent)."""
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, _HideInsertValuesWarning) for f in dlt_logger.filters):
        dlt_logger.addFilter(_HideInsertValuesWarning())


class PostgresWarehouse(SqlWarehouse):
    """A PostgreSQL database."""

    lock: LockKind = "postgres advisory lock"
    query_route: QueryRoute | None = "postgres"

    def __init__(self, destination: Any, caps: Any) -> None:
        super().__init__(destination, caps)
        self.loader_file_format: Literal["parquet", "insert_values"] | None = "insert_values"

    def after_sync(self, pipeline: dlt.Pipeline) -> list[str]:
        return ensure_indexes(pipeline)


def ensure_indexes(pipeline: dlt.Pipeline) -> list[str]:
    """Create the indexes of `INDEXES` on a PostgreSQL dataset that are missing; the names of
    those now in place. A failure is logged, never raised: the data is loaded either way."""
    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return []
    made: list[str] = []
    table = AUDIT_LOGS_TABLE
    try:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
            for name, column in INDEXES:
                client.execute_sql(
                    f"CREATE INDEX IF NOT EXISTS {client.escape_column_name(name)} "
                    f"ON {table} ({client.escape_column_name(column)})"
                )
                made.append(name)
    except Exception as exc:
        logger.warning(
            "the data is loaded, but the indexes on %s could not be made: %s", table, exc
        )
    return made


hide_insert_values_warning()
