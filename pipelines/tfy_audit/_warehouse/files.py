"""The adapter of plain Parquet files on dlt's `filesystem` destination (a destination with
table formats whose plain tables cannot merge): rows are appended, a re-read chunk skips the
ids already loaded, and everything is read back by tfy-audit itself, file by file through the
destination's file system client or in an in-memory DuckDB (lakehouse.py), as dlt's own
reader there downloads DuckDB extensions."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tfy_audit._compat.dlt import filesystem_client
from tfy_audit._core.settings import AUDIT_LOGS_TABLE, SUBJECTS_TABLE
from tfy_audit._warehouse.adapter import LockKind, QueryRoute
from tfy_audit._warehouse.generic import SqlWarehouse
from tfy_audit._warehouse.lakehouse import (
    DeltaSqlClient,
    count_created_from,
    has_data,
    read_created_between,
    read_files,
)

if TYPE_CHECKING:
    import dlt


class ParquetFiles(SqlWarehouse):
    """Plain Parquet tables in a bucket or folder."""

    files = True
    lock: LockKind = "none"
    query_route: QueryRoute | None = "files"

    def __init__(self, destination: Any, caps: Any) -> None:
        super().__init__(destination, caps)
        # written by a dlt load of their own: there is no SQL connection to write them on
        self.runs_by_sql = False

    def sql_reader(self, pipeline: dlt.Pipeline, tables: list[str] | None = None) -> Any:
        if self.own_reader(pipeline):
            return DeltaSqlClient(pipeline, tables)
        return pipeline.sql_client()

    def subject_rows(self, pipeline: dlt.Pipeline, columns: tuple[str, ...]) -> list[Any]:
        with DeltaSqlClient(pipeline, [SUBJECTS_TABLE]) as files:
            return list(files.execute_sql(f"select {', '.join(columns)} from {SUBJECTS_TABLE}"))

    def ids_between(self, pipeline: dlt.Pipeline, start: datetime, end: datetime) -> set[str]:
        data = read_created_between(pipeline, ["id"], start, end)
        return set(data.column("id").to_pylist())

    def undated_ids(self, pipeline: dlt.Pipeline) -> set[str]:
        import pyarrow.dataset as ds

        where = ds.field("created_at").is_null()
        data = read_files(pipeline, AUDIT_LOGS_TABLE, ["id"], where, ["created_at"])
        return set(data.column("id").to_pylist()) if data is not None else set()

    def events_between(
        self, pipeline: dlt.Pipeline, columns: tuple[str, ...], start: datetime, end: datetime
    ) -> pa.Table:
        return read_created_between(pipeline, columns, start, end)

    def newest_created_at(self, pipeline: dlt.Pipeline) -> datetime | None:
        import pyarrow.compute as pc

        data = read_files(pipeline, AUDIT_LOGS_TABLE, ["created_at"])
        newest: datetime | None = (
            pc.max(data.column("created_at")).as_py() if data is not None else None
        )
        return newest

    def count_created_from(self, pipeline: dlt.Pipeline, start: datetime) -> int | None:
        return count_created_from(pipeline, start)

    def own_reader(self, pipeline: dlt.Pipeline) -> bool:
        """Whether tfy-audit reads the dataset with `lakehouse.connect`: Parquet tables, as
        `tfy-audit sync` writes them. A dataset dlt wrote in another file format (JSON lines:
        `pipeline.run` with dlt's defaults) is left to dlt's own SQL client."""
        if not has_data(pipeline, AUDIT_LOGS_TABLE):
            return True
        try:
            with filesystem_client(pipeline) as client:
                found = client.list_table_files(AUDIT_LOGS_TABLE)
        except FileNotFoundError:
            return True
        return all(str(path).endswith(".parquet") for path in found)
