"""The adapter of Delta tables on dlt's `filesystem` destination (`--table-format delta`, a
table format whose tables the destination can merge): the keyed tables are upserted, so a
chunk never skips ids it re-reads, and the leaves an upsert left are dropped after each
merged chunk. lakehouse.py says why, and reads the tables."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from tfy_audit._core.settings import AUDIT_LOGS_TABLE
from tfy_audit._warehouse.files import ParquetFiles
from tfy_audit._warehouse.lakehouse import (
    DELTA,
    DeltaSqlClient,
    apply_table_format,
    drop_stale_leaves,
)

if TYPE_CHECKING:
    import dlt


class DeltaFiles(ParquetFiles):
    """Delta tables in a bucket or folder."""

    def __init__(self, destination: Any, caps: Any) -> None:
        super().__init__(destination, caps)
        self.merges = True  # upserted on their keys (choose() asked the destination)

    def undated_ids(self, pipeline: dlt.Pipeline) -> set[str]:
        # upserted on the id, never appended: no chunk needs to skip them
        return set()

    def newest_created_at(self, pipeline: dlt.Pipeline) -> datetime | None:
        with DeltaSqlClient(pipeline, [AUDIT_LOGS_TABLE]) as delta:
            rows = delta.execute_sql(f"select max(created_at) from {AUDIT_LOGS_TABLE}")
        newest: datetime | None = rows[0][0] if rows else None
        return newest

    def own_reader(self, pipeline: dlt.Pipeline) -> bool:
        return True

    def prepare_source(self, source: Any) -> None:
        apply_table_format(source, DELTA)

    def after_chunk(self, pipeline: dlt.Pipeline, load_ids: list[str], *, appended: bool) -> None:
        if not appended:  # an upsert never removes rows: leaves an event no longer has go here
            drop_stale_leaves(pipeline, load_ids)
