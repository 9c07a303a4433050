"""The adapter of a SQL destination with no kind of its own (MotherDuck, BigQuery, Snowflake,
Redshift, ...): everything through dlt's SQL client and `dataset()`, decided from the
destination's capabilities. The other SQL kinds (`duckdb_file`, `postgres`) build on it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import pyarrow as pa

from tfy_audit._compat.dlt import Destination, destination_from_reference, merge_strategies
from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import DestinationOptions
from tfy_audit._core.settings import AUDIT_LOGS_TABLE
from tfy_audit._warehouse.adapter import LockKind, QueryRoute

if TYPE_CHECKING:
    import dlt

# The SQL dialects whose text cannot hold U+0000 (PostgreSQL's text and jsonb; Redshift is
# PostgreSQL's kin): nul.py replaces it before their rows are written.
NO_NUL_DIALECTS: Final = frozenset({"postgres", "redshift"})
# The dialects `sync_runs` is written in by SQL (as `verify_runs` is): one statement on the
# connection the sync already has, instead of a dlt load of its own (run_log.py).
RUNS_SQL_DIALECTS: Final = frozenset({"duckdb", "postgres"})
# The merge the sync's tables use on SQL destinations (a merge key: delete-insert).
SQL_MERGE: Final = "delete-insert"

# The working dirs of destinations other than a DuckDB file, in the folder a command runs from.
WORK_DIR = ".tfy-audit"


class SqlWarehouse:
    """A SQL destination read through dlt's SQL client; `destination` None: none configured
    (nothing merges, nothing is read)."""

    holds_connection = False
    files = False
    hashes_keys = False
    stamps_views = False
    load_workers: int | None = None
    lock: LockKind = "none"
    query_route: QueryRoute | None = None

    def __init__(self, destination: Destination[Any, Any] | None, caps: Any = None) -> None:
        """`caps`: the destination's `capabilities()` (None without a destination)."""
        self.destination = destination
        dialect = caps.sqlglot_dialect if caps is not None else None
        self.merges = caps is not None and SQL_MERGE in merge_strategies(caps, AUDIT_LOGS_TABLE)
        self.holds_nul = dialect not in NO_NUL_DIALECTS
        self.runs_by_sql = dialect in RUNS_SQL_DIALECTS
        # Arrow tables go as Parquet to the engines that read it natively (DuckDB's)
        self.loader_file_format: Literal["parquet", "insert_values"] | None = (
            "parquet" if dialect == "duckdb" else None
        )

    def pipelines_dir(self, target: DestinationOptions) -> str:
        return str(Path(WORK_DIR, "pipelines", _safe(f"{target.destination}-{target.dataset}")))

    def make_destination(
        self, target: DestinationOptions, *, read_only: bool
    ) -> Destination[Any, Any]:
        name = target.destination
        try:
            destination = destination_from_reference(name)
        except Exception as exc:
            raise UsageError(
                f"unknown destination {name!r}: use duckdb (default), postgres, filesystem, "
                "bigquery, snowflake, motherduck, clickhouse or another dlt destination name"
            ) from exc
        if destination is None:
            raise UsageError(f"unknown destination {name!r}")
        return destination

    def write_refusal(self, target: DestinationOptions) -> str | None:
        return None

    def database_file(self, target: DestinationOptions) -> Path | None:
        return None

    def sql_reader(self, pipeline: dlt.Pipeline, tables: list[str] | None = None) -> Any:
        return pipeline.sql_client()

    def subject_rows(self, pipeline: dlt.Pipeline, columns: tuple[str, ...]) -> list[Any]:
        from tfy_audit._core.settings import SUBJECTS_TABLE

        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(SUBJECTS_TABLE)
            names = ", ".join(client.escape_column_name(c) for c in columns)
            return list(client.execute_sql(f"select {names} from {table}") or [])

    def ids_between(self, pipeline: dlt.Pipeline, start: datetime, end: datetime) -> set[str]:
        relation = pipeline.dataset().query(
            f"select id from {AUDIT_LOGS_TABLE} where created_at >= TIMESTAMPTZ "
            f"'{start.isoformat()}' and created_at <= TIMESTAMPTZ '{end.isoformat()}'"
        )
        return {row[0] for row in relation.fetchall()}

    def undated_ids(self, pipeline: dlt.Pipeline) -> set[str]:
        # Every sync asks, and almost always for nothing: the SQL client answers without what
        # `dataset()` costs first (parsing the query with sqlglot, whose dialect it imports).
        query = "select id from {table} where created_at is null"
        if not self.merges:  # no SQL client of its own: dlt's dataset() reads it
            relation = pipeline.dataset().query(query.format(table=AUDIT_LOGS_TABLE))
            return {row[0] for row in relation.fetchall()}
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
            return {row[0] for row in client.execute_sql(query.format(table=table)) or []}

    def events_between(
        self, pipeline: dlt.Pipeline, columns: tuple[str, ...], start: datetime, end: datetime
    ) -> pa.Table:
        # the range is filtered in the warehouse, so memory follows the range, not the history
        relation = pipeline.dataset().query(
            f"select {', '.join(columns)} from {AUDIT_LOGS_TABLE} "
            f"where created_at >= TIMESTAMPTZ '{start.isoformat()}' "
            f"and created_at <= TIMESTAMPTZ '{end.isoformat()}'"
        )
        table: pa.Table = relation.arrow()
        return table

    def newest_created_at(self, pipeline: dlt.Pipeline) -> datetime | None:
        rows: Sequence[Sequence[Any]]
        if not self.merges:  # no SQL client of its own: dlt's dataset() reads it
            rows = (
                pipeline.dataset()
                .query(f"select max(created_at) from {AUDIT_LOGS_TABLE}")
                .fetchall()
            )
        else:
            with pipeline.sql_client() as client:
                table = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
                rows = client.execute_sql(f"select max(created_at) from {table}") or []
        newest: datetime | None = rows[0][0] if rows else None
        return newest

    def count_created_from(self, pipeline: dlt.Pipeline, start: datetime) -> int | None:
        with pipeline.sql_client() as client:
            table = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
            rows = client.execute_sql(
                f"select count(*) from {table} where created_at >= %s or created_at is null", start
            )
        return int(rows[0][0]) if rows else None

    def own_reader(self, pipeline: dlt.Pipeline) -> bool:
        return False

    def prepare_source(self, source: Any) -> None:
        return None

    def after_chunk(self, pipeline: dlt.Pipeline, load_ids: list[str], *, appended: bool) -> None:
        return None

    def after_sync(self, pipeline: dlt.Pipeline) -> list[str]:
        return []

    def for_analysis(self, client: Any) -> None:
        return None


def _safe(name: str) -> str:
    """A folder name of a destination reference and a dataset name (letters, digits, `._-`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"
