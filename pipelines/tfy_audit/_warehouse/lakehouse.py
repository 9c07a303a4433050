"""Delta Lake tables on the `filesystem` destination (`--table-format delta`).

Two jobs: the hints that make dlt write the four tables as Delta tables, three of them merged
(upserted) on their keys and `sync_windows` appended; and reading a filesystem dataset back
(its Delta tables through `deltalake`, its plain Parquet tables such as `sync_runs` through
the destination's own file system client, both as Arrow) in an in-memory DuckDB
(`DeltaSqlClient`, `connect`) for `verify`, `report`, `status`, `sql` and the sync's own reads.

Why the keyed tables are upserted, never appended: dlt's Delta merge is a `MERGE` on the
primary key, so a load job run twice (a kill between the Delta commit and dlt's bookkeeping)
changes nothing the second time, and every table holds each key once without the duplicate
check the append path needs. An upsert cannot remove a row, so `audit_log_metadata` is keyed on
`(audit_log_id, path)`, its rows and those of `audit_logs` carry the `_dlt_load_id` of the load
that wrote them, and the leaves an event lost when it was read again are deleted after the load
(`drop_stale_leaves`), as the SQL destinations' merge replaces all the leaves of an event read
again.

Reading never goes through dlt's own SQL client for the filesystem, which reads Delta tables
with DuckDB's `delta` extension and a bucket with its `httpfs` extension, extensions DuckDB
downloads on first use: no command may download anything at run time (an offline machine
fails there). The in-memory DuckDB is told never to install an extension.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import duckdb
import pyarrow as pa

from tfy_audit._compat.dlt import filesystem_client
from tfy_audit._core.errors import DestinationError, UsageError, one_line
from tfy_audit._core.settings import (
    ANOMALIES_TABLE,
    AUDIT_LOGS_TABLE,
    METADATA_TABLE,
    SUBJECTS_TABLE,
    SYNC_WINDOWS_TABLE,
)
from tfy_audit._warehouse.sql_text import sql_identifier as _quote
from tfy_audit._warehouse.sql_text import sql_string as _sql_string

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

DELTA: Final = "delta"
TABLE_FORMATS: Final[tuple[str, ...]] = (DELTA,)

# The key each table merges on.
KEYS: Final[dict[str, tuple[str, ...]]] = {
    AUDIT_LOGS_TABLE: ("id",),
    METADATA_TABLE: ("audit_log_id", "path"),
    SUBJECTS_TABLE: ("subject_id",),
    ANOMALIES_TABLE: ("anomaly_id",),
}

LOADS_TABLE: Final = "_dlt_loads"
LOAD_ID: Final = "_dlt_load_id"

# tfy-audit is installed from a clone or a built wheel, never from an index (README)
INSTALL_DELTA: Final = (
    'pip install ".[delta]" in the tfy-audit clone (or uv tool install --reinstall ".[delta]")'
)

# An in-memory DuckDB that reads what it is given and fetches nothing.
OFFLINE_DUCKDB: Final[dict[str, str | bool | int | float | list[str]]] = {
    "autoinstall_known_extensions": False,
}


def require_deltalake(why: str = "--table-format delta") -> None:
    """Raises `UsageError` naming the install command when `deltalake` cannot be imported:
    checked before the first request, as dlt would fail only when loading the first chunk."""
    try:
        import deltalake  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"{why} needs the deltalake package, which is not installed; install it with "
            f"{INSTALL_DELTA}"
        ) from exc


def stored_table_format(pipeline: dlt.Pipeline) -> str | None:
    """The table format `audit_logs` was written in, as the pipeline's schema records it."""
    if not pipeline.default_schema_name:
        return None
    table = pipeline.default_schema.tables.get(AUDIT_LOGS_TABLE)
    fmt = table.get("table_format") if table else None
    return str(fmt) if fmt else None


def is_delta(pipeline: dlt.Pipeline) -> bool:
    return stored_table_format(pipeline) == DELTA


def resolve_table_format(pipeline: dlt.Pipeline, requested: str | None) -> str | None:
    """The table format a sync writes: the one asked for, else the one the dataset has.

    Raises `UsageError` for a format the destination cannot write, or one that differs from
    the dataset's (dlt would write new rows beside the old ones in another format)."""
    destination = pipeline.destination
    stored = stored_table_format(pipeline)
    if requested is None:
        if stored == DELTA:
            require_deltalake(f"dataset {pipeline.dataset_name} (Delta tables)")
        return stored
    if requested not in TABLE_FORMATS:
        raise UsageError(
            f"--table-format {requested!r} is not supported; use --table-format delta "
            "(with --destination filesystem)"
        )
    formats = destination.capabilities().supported_table_formats if destination else None
    if requested not in (formats or ()):  # dlt's answer: only its filesystem writes them
        name = destination.destination_name if destination else None
        raise UsageError(
            f"--table-format {requested} needs --destination filesystem (got {name}); "
            "drop --table-format or write to a bucket"
        )
    loaded = pipeline.default_schema_name and AUDIT_LOGS_TABLE in pipeline.default_schema.tables
    if loaded and stored != requested:
        raise UsageError(
            f"dataset {pipeline.dataset_name} holds {stored or 'plain Parquet'} tables, not "
            f"{requested}; use a new --dataset for the {requested} tables"
        )
    require_deltalake()
    return requested


def apply_table_format(source: Any, table_format: str | None) -> None:
    """Make the source's tables Delta tables merged on their keys (see the module's doc);
    nothing for `None`. `source` is a `truefoundry_audit` source."""
    if table_format is None:
        return
    if table_format != DELTA:
        raise UsageError(f"--table-format {table_format!r} is not supported; use delta")
    resource = source.resources[AUDIT_LOGS_TABLE]
    for table, key in KEYS.items():
        hints: dict[str, Any] = {
            "write_disposition": {"disposition": "merge", "strategy": "upsert"},
            "primary_key": list(key),
            "table_format": DELTA,
        }
        if table == AUDIT_LOGS_TABLE:
            resource.apply_hints(**hints)
        else:
            # the metadata's merge key (delete-insert) has no meaning in an upsert
            resource.apply_hints(table_name=table, merge_key="", **hints, create_table_variant=True)
    resource.apply_hints(
        table_name=SYNC_WINDOWS_TABLE, table_format=DELTA, create_table_variant=True
    )
    resource.add_map(_with_load_id)


def _with_load_id(item: Any, meta: Any) -> Any:
    """An Arrow table of `audit_logs` or `audit_log_metadata` with the `_dlt_load_id` of the
    load package being extracted (dlt adds it to Arrow tables only if told to for every table
    of every pipeline in the process)."""
    import dlt

    table = getattr(meta, "table_name", AUDIT_LOGS_TABLE)
    if table not in (AUDIT_LOGS_TABLE, METADATA_TABLE) or not isinstance(item, pa.Table):
        return item
    load_id = dlt.current.load_package_state()["load_id"]
    column = pa.repeat(pa.scalar(load_id, pa.string()), item.num_rows)
    if LOAD_ID in item.column_names:
        return item.set_column(item.column_names.index(LOAD_ID), LOAD_ID, column)
    return item.append_column(LOAD_ID, column)


def delta_tables(pipeline: dlt.Pipeline, *names: str) -> dict[str, Any]:
    """`deltalake.DeltaTable`s of the dataset by name, opened with the destination's
    credentials; only the tables that exist."""
    wanted = [n for n in names if has_data(pipeline, n)]
    if not wanted:
        return {}
    require_deltalake(f"dataset {pipeline.dataset_name} (Delta tables)")
    from dlt.common.libs.deltalake import get_delta_tables

    try:
        return dict(get_delta_tables(pipeline, *wanted))
    except Exception as exc:
        raise DestinationError(
            f"cannot open the Delta tables of {pipeline.dataset_name} ({one_line(exc, 300)}); "
            "check the bucket URL and its credentials (DESTINATION__FILESYSTEM__...)"
        ) from exc


def arrow_table(table: Any, columns: Sequence[str] | None = None, filters: Any = None) -> pa.Table:
    """The Delta table's current rows (those matching the pyarrow expression `filters`) as an
    Arrow table, string columns as plain strings.

    Read whole rather than as a lazy `pyarrow.dataset`: the files the Delta merge rewrites hold
    `string_view` columns, which pyarrow cannot compare with the string constants of the
    filters DuckDB pushes into a dataset scan. So memory follows the columns read."""
    data: pa.Table = table.to_pyarrow_table(
        columns=list(columns) if columns else None, filters=filters
    )
    return _plain_strings(data)


def read_created_between(
    pipeline: dlt.Pipeline, columns: Sequence[str], start: datetime, end: datetime
) -> pa.Table:
    """`columns` of the `audit_logs` rows with `start <= created_at <= end` of a filesystem
    dataset (Delta or plain Parquet): the filter is applied while the files are read (a
    timestamp compares fine), so memory follows the range."""
    import pyarrow.dataset as ds

    stamp = pa.timestamp("us", "UTC")
    created = ds.field("created_at")
    where = (created >= pa.scalar(start, stamp)) & (created <= pa.scalar(end, stamp))
    if not is_delta(pipeline):
        data = read_files(pipeline, AUDIT_LOGS_TABLE, columns, where, ["created_at"])
        empty = pa.table({c: pa.array([], pa.string()) for c in columns})
        return data if data is not None else empty
    table = delta_tables(pipeline, AUDIT_LOGS_TABLE)[AUDIT_LOGS_TABLE]
    return arrow_table(table, columns, where)


def count_created_from(pipeline: dlt.Pipeline, start: datetime) -> int:
    """Rows of a filesystem dataset's `audit_logs` with `created_at >= start`; 0 before the
    first load."""
    import pyarrow.dataset as ds

    where = ds.field("created_at") >= pa.scalar(start, pa.timestamp("us", "UTC"))
    if not is_delta(pipeline):
        data = read_files(pipeline, AUDIT_LOGS_TABLE, ["created_at"], where)
        return data.num_rows if data is not None else 0
    table = delta_tables(pipeline, AUDIT_LOGS_TABLE).get(AUDIT_LOGS_TABLE)
    if table is None:
        return 0
    return int(arrow_table(table, ["created_at"], where).num_rows)


def drop_stale_leaves(pipeline: dlt.Pipeline, load_ids: Sequence[str]) -> int:
    """Delete the `audit_log_metadata` rows of the events `load_ids` wrote that these loads
    did not write (paths the service dropped from an event's metadata); returns how many.

    The upsert rewrote every leaf an event still has, with its new `_dlt_load_id`; an event of
    these loads whose new metadata is empty has no leaf of them, hence the events are taken
    from `audit_logs`."""
    if not load_ids:
        return 0
    opened = delta_tables(pipeline, AUDIT_LOGS_TABLE, METADATA_TABLE)
    if len(opened) < 2:
        return 0
    con = duckdb.connect()
    try:
        con.register("events", arrow_table(opened[AUDIT_LOGS_TABLE], ["id", LOAD_ID]))
        con.register("leaves", arrow_table(opened[METADATA_TABLE], ["audit_log_id", LOAD_ID]))
        con.register("loads", pa.table({"load_id": pa.array(list(load_ids), pa.string())}))
        rows = con.execute(
            "select distinct l.audit_log_id from leaves l"
            " join (select id from events where _dlt_load_id in (select load_id from loads)) e"
            " on e.id = l.audit_log_id"
            " where l._dlt_load_id is null or l._dlt_load_id not in (select load_id from loads)"
        ).fetchall()
    finally:
        con.close()
    if not rows:
        return 0
    ids = ", ".join(_sql_string(r[0]) for r in rows)
    kept = ", ".join(_sql_string(i) for i in load_ids)
    metrics = opened[METADATA_TABLE].delete(
        f"audit_log_id IN ({ids}) AND (_dlt_load_id IS NULL OR _dlt_load_id NOT IN ({kept}))"
    )
    deleted = int(metrics.get("num_deleted_rows", 0)) if isinstance(metrics, dict) else len(rows)
    logger.info("deleted %d metadata leaves the service no longer sends", deleted)
    return deleted


class DeltaSqlClient:
    """The part of dlt's SQL client that tfy-audit's readers use, over the in-memory DuckDB of
    `connect`, in which each table of the dataset is a view of its Arrow table, `_dlt_loads` a
    table, and the analysis views exist as they would in a warehouse. Use as a context
    manager."""

    def __init__(self, pipeline: dlt.Pipeline, tables: Sequence[str] | None = None) -> None:
        self.pipeline = pipeline
        self.tables = tables
        self.dataset_name: str = pipeline.dataset_name
        self._con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> DeltaSqlClient:
        self._con = connect(self.pipeline, self.tables)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def fully_qualified_dataset_name(self, quote: bool = True) -> str:
        return _quote(self.dataset_name) if quote else self.dataset_name

    def make_qualified_table_name(self, table_name: str, quote: bool = True) -> str:
        if not quote:
            return f"{self.dataset_name}.{table_name}"
        return f"{_quote(self.dataset_name)}.{_quote(table_name)}"

    def escape_column_name(self, column_name: str, quote: bool = True) -> str:
        return _quote(column_name) if quote else column_name

    def execute_sql(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of `sql`, its `%s` placeholders bound to `args` (dlt's style)."""
        from dlt.destinations.exceptions import DatabaseUndefinedRelation

        if self._con is None:
            raise RuntimeError("DeltaSqlClient is used outside its `with` block")
        try:
            return self._con.execute(sql.replace("%s", "?"), list(args)).fetchall()
        except duckdb.CatalogException as exc:
            raise DatabaseUndefinedRelation(exc) from exc


def connect(
    pipeline: dlt.Pipeline, tables: Sequence[str] | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the tables of a filesystem dataset as views under the dataset's
    name (`"<dataset>".audit_logs`, ...; also the default schema, so unqualified names work):
    the Delta tables read with `deltalake`, the others (`sync_runs`, or every table of a plain
    Parquet dataset) from their Parquet files; `_dlt_loads`; and the analysis views: the same
    SQL runs here as in a DuckDB or PostgreSQL warehouse. `tables`: only these tables, without
    `_dlt_loads` and the views. Nothing is downloaded (`OFFLINE_DUCKDB`). The caller closes the
    connection."""
    from tfy_audit._warehouse.views import VIEW_NAMES, view_sql

    dataset = _quote(pipeline.dataset_name)
    con = duckdb.connect(config=OFFLINE_DUCKDB)
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"CREATE SCHEMA {dataset}")
        con.execute(f"SET schema = {_sql_string(pipeline.dataset_name)}")
        names = [n for n in (tables or _data_tables(pipeline)) if has_data(pipeline, n)]
        delta = [n for n in names if _table_format(pipeline, n) == DELTA]
        files = [n for n in names if n not in delta]
        loaded = {**delta_tables(pipeline, *delta)} if delta else {}
        arrow = {name: arrow_table(table) for name, table in loaded.items()}
        arrow.update(_parquet_tables(pipeline, files))
        for name, data in arrow.items():
            arrow_name = f"_arrow_{name}"
            con.register(arrow_name, data)
            con.execute(
                f"CREATE VIEW {dataset}.{_quote(name)} AS SELECT * FROM {_quote(arrow_name)}"
            )
        loads = None if tables else _read_loads(pipeline)
        if loads is not None:
            con.register("_dlt_loads_arrow", loads)
            con.execute(
                f"CREATE TABLE {dataset}.{LOADS_TABLE} AS SELECT load_id, schema_name, status,"
                " CAST(inserted_at AS TIMESTAMPTZ) AS inserted_at, schema_version_hash"
                " FROM _dlt_loads_arrow"
            )
            con.unregister("_dlt_loads_arrow")
        if not tables and has_data(pipeline, AUDIT_LOGS_TABLE):
            for view in VIEW_NAMES:
                con.execute(view_sql(view, dataset))
    except BaseException:
        con.close()
        raise
    return con


def _data_tables(pipeline: dlt.Pipeline) -> list[str]:
    if not pipeline.default_schema_name:
        return []
    return [str(t["name"]) for t in pipeline.default_schema.data_tables()]


def _table_format(pipeline: dlt.Pipeline, table: str) -> str | None:
    fmt = pipeline.default_schema.tables.get(table, {}).get("table_format")
    return str(fmt) if fmt else None


def _parquet_tables(pipeline: dlt.Pipeline, names: Sequence[str]) -> dict[str, pa.Table]:
    """Tables written as plain Parquet files, each as one Arrow table (`read_files`)."""
    found = {name: read_files(pipeline, name) for name in names}
    return {name: data for name, data in found.items() if data is not None}


def read_files(
    pipeline: dlt.Pipeline,
    table: str,
    columns: Sequence[str] | None = None,
    where: Any = None,
    where_columns: Sequence[str] = (),
) -> pa.Table | None:
    """A table written as plain Parquet files: `columns` of its rows matching the pyarrow
    expression `where` (on `where_columns`), read file by file through the destination's file
    system client (fsspec, with dlt's credentials), so memory follows the rows kept; None when
    it has no file. A column an older file lacks is null there."""
    import pyarrow.parquet as pq

    parts = []
    try:
        with filesystem_client(pipeline) as client:
            for path in client.list_table_files(table):
                if not str(path).endswith(".parquet"):
                    continue
                with client.fs_client.open(path, "rb") as f:
                    parquet = pq.ParquetFile(f)
                    names = parquet.schema_arrow.names
                    wanted = [*columns, *where_columns] if columns else None
                    kept = list(dict.fromkeys(c for c in wanted if c in names)) if wanted else None
                    data = parquet.read(columns=kept)
                if where is not None:
                    data = data.filter(where)
                for column in columns or ():
                    if column not in names:
                        data = data.append_column(column, pa.nulls(data.num_rows, pa.string()))
                parts.append(_plain_strings(data.select(list(columns)) if columns else data))
    except FileNotFoundError:
        pass
    except Exception as exc:
        raise DestinationError(
            f"cannot read the Parquet files of {pipeline.dataset_name}.{table} "
            f"({one_line(exc, 300)}); check the bucket URL and its credentials "
            "(DESTINATION__FILESYSTEM__...)"
        ) from exc
    if not parts:
        return None
    return pa.concat_tables(parts, promote_options="permissive")


def _plain_strings(data: pa.Table) -> pa.Table:
    fields = [
        f.with_type(pa.string()) if f.type in (pa.string_view(), pa.large_string()) else f
        for f in data.schema
    ]
    return data.cast(pa.schema(fields))


def _read_loads(pipeline: dlt.Pipeline) -> pa.Table | None:
    """`_dlt_loads`, which dlt keeps as JSON lines beside the Delta tables."""
    try:
        with filesystem_client(pipeline) as client:
            files = client.list_table_files(LOADS_TABLE)
            rows = [
                json.loads(line)
                for path in files
                for line in client.fs_client.read_text(path, encoding="utf-8").splitlines()
                if line.strip()
            ]
    except FileNotFoundError:
        return None
    if not rows:
        return None
    columns = ("load_id", "schema_name", "status", "inserted_at", "schema_version_hash")
    return pa.table({c: [r.get(c) for r in rows] for c in columns})


def has_data(pipeline: dlt.Pipeline, table: str) -> bool:
    from tfy_audit._warehouse.readback import table_loaded

    return bool(table_loaded(pipeline, table))
