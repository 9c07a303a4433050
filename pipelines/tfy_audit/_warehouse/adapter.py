"""One adapter per destination kind, behind one protocol, chosen once from dlt's answers.

What tfy-audit does differently per destination (can it merge, which file format it loads, how
ids, subjects and events are read back, which SQL reader, whether run records go by SQL, its
lock, its working dir, a connection held across a sync, NUL in text, what follows a load) is
decided here, by `choose`, from the destination's `capabilities()` (its merge strategies for
a table, its SQL dialect, its table formats) and its configuration (local files or a server),
plus the table format: never from the destination's name. The rest of the package asks the
adapter (`warehouse_of(pipeline)`, `warehouse_for(target)`) and branches on nothing else.

The kinds: `duckdb_file.DuckDBFile` (a DuckDB database file), `postgres.PostgresWarehouse`,
`files.ParquetFiles` (plain Parquet on the filesystem destination: append only),
`delta.DeltaFiles` (Delta tables there: upserted), and `generic.SqlWarehouse` for every other
SQL destination dlt supports (MotherDuck, BigQuery, Snowflake, ...). Adding a kind is one
module with a class implementing `Warehouse`, one line in `choose`, and its tests
(docs/destinations.md).
"""

from __future__ import annotations

import weakref
from contextlib import AbstractContextManager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Literal, Protocol

import dlt
import pyarrow as pa

from tfy_audit._compat.dlt import (
    Destination,
    destination_from_reference,
    keeps_local_files,
    merge_strategies,
)
from tfy_audit._core.options import DestinationOptions
from tfy_audit._core.settings import AUDIT_LOGS_TABLE

# How a destination's dataset is kept from two writers at once (engine/lock.py does it).
LockKind = Literal["lock file", "postgres advisory lock", "none"]
# How `tfy-audit sql` reads the dataset: the DuckDB file read-only, PostgreSQL in a read-only
# transaction, files in an in-memory DuckDB; None: the command does not read it.
QueryRoute = Literal["duckdb file", "postgres", "files"]


class Warehouse(Protocol):
    """What a destination kind does for tfy-audit. Methods taking a pipeline read its dataset."""

    # the merge the sync relies on (delete-insert on SQL, upsert of Delta tables) is offered
    merges: bool
    # the file format dlt loads the Arrow tables in; None: dlt's preferred one
    loader_file_format: Literal["parquet", "insert_values"] | None
    # load jobs dlt runs at once; None: dlt's default
    load_workers: int | None
    # text may hold U+0000 as it is (else nul.py replaces it before the rows are written)
    holds_nul: bool
    # `sync_runs` is written by SQL on the sync's connection, not as a dlt load of its own
    runs_by_sql: bool
    # a connection is held across a sync's steps (database.py)
    holds_connection: bool
    # the dataset is files tfy-audit reads itself (no SQL engine of dlt's)
    files: bool
    # keys are grouped by their 64-bit hash in the checks for doubled rows (recovery.py), so
    # a large chunk's string keys need not fit the engine's memory (a DuckDB file's is small)
    hashes_keys: bool
    # each view keeps a digest of its statement as its comment, and a sync replaces only the
    # views whose digest differs (views.py); where a replaced view drops its comment
    stamps_views: bool
    lock: LockKind
    query_route: QueryRoute | None

    def pipelines_dir(self, target: DestinationOptions) -> str:
        """dlt's working dir for the target when none is given (destination.pipelines_dir)."""
        ...

    def make_destination(
        self, target: DestinationOptions, *, read_only: bool
    ) -> Destination[Any, Any]: ...

    def write_refusal(self, target: DestinationOptions) -> str | None:
        """Why the file system will not let the target be written; None when it will."""
        ...

    def database_file(self, target: DestinationOptions) -> Path | None:
        """The local database file the target names (a read-only command refuses a missing
        one: it would create it); None for a destination without one."""
        ...

    def sql_reader(self, pipeline: dlt.Pipeline, tables: list[str] | None = None) -> Any:
        """A SQL client on the dataset (a context manager with `execute_sql` and
        `make_qualified_table_name`); `tables`: all it needs to read (files)."""
        ...

    def subject_rows(self, pipeline: dlt.Pipeline, columns: tuple[str, ...]) -> list[Any]: ...

    def ids_between(self, pipeline: dlt.Pipeline, start: datetime, end: datetime) -> set[str]: ...

    def undated_ids(self, pipeline: dlt.Pipeline) -> set[str]: ...

    def events_between(
        self, pipeline: dlt.Pipeline, columns: tuple[str, ...], start: datetime, end: datetime
    ) -> pa.Table: ...

    def newest_created_at(self, pipeline: dlt.Pipeline) -> datetime | None: ...

    def count_created_from(self, pipeline: dlt.Pipeline, start: datetime) -> int | None: ...

    def own_reader(self, pipeline: dlt.Pipeline) -> bool:
        """Whether tfy-audit reads the dataset itself (`lakehouse.connect`)."""
        ...

    def prepare_source(self, source: Any) -> None:
        """Hints the kind needs on a `truefoundry_audit` source before its extract."""
        ...

    def after_chunk(self, pipeline: dlt.Pipeline, load_ids: list[str], *, appended: bool) -> None:
        """What follows a chunk's load (Delta: drop the leaves an upsert left)."""
        ...

    def after_sync(self, pipeline: dlt.Pipeline) -> list[str]:
        """What follows a sync's loads (PostgreSQL: its indexes); names of what is in place."""
        ...

    def for_analysis(self, client: Any) -> None:
        """Ready an open SQL client for queries over the whole history (detection rules'
        joins), where the kind holds its loads to less (a DuckDB file: a small memory limit)."""
        ...


def choose(destination: Destination[Any, Any] | None, table_format: str | None) -> Warehouse:
    """The adapter of `destination` writing (or holding) tables in `table_format`, from what dlt
    says the destination can do. The one place a destination kind is decided; chosen once per
    destination and format (dlt builds its capabilities anew at each call)."""
    if destination is None:
        return _choose(None, table_format)
    chosen = _CHOSEN.setdefault(destination, {})
    if table_format not in chosen:
        chosen[table_format] = _choose(destination, table_format)
    return chosen[table_format]


# the adapters chosen, by destination object and table format
_CHOSEN: weakref.WeakKeyDictionary[Destination[Any, Any], dict[str | None, Warehouse]] = (
    weakref.WeakKeyDictionary()
)


def _choose(destination: Destination[Any, Any] | None, table_format: str | None) -> Warehouse:
    from tfy_audit._warehouse.delta import DeltaFiles
    from tfy_audit._warehouse.duckdb_file import DuckDBFile
    from tfy_audit._warehouse.files import ParquetFiles
    from tfy_audit._warehouse.generic import SqlWarehouse
    from tfy_audit._warehouse.postgres import PostgresWarehouse

    if destination is None:
        return SqlWarehouse(None)
    caps = destination.capabilities()
    # a destination with table formats whose plain tables cannot merge writes files
    if caps.supported_table_formats and not merge_strategies(caps, AUDIT_LOGS_TABLE):
        if table_format is not None and merge_strategies(caps, AUDIT_LOGS_TABLE, table_format):
            return DeltaFiles(destination, caps)
        return ParquetFiles(destination, caps)
    if caps.sqlglot_dialect == "duckdb" and keeps_local_files(destination):
        return DuckDBFile(destination, caps)
    if caps.sqlglot_dialect == "postgres":
        return PostgresWarehouse(destination, caps)
    return SqlWarehouse(destination, caps)


def warehouse_of(pipeline: dlt.Pipeline, table_format: str | None = None) -> Warehouse:
    """The adapter of the pipeline's destination, for `table_format` or the one its schema
    records for `audit_logs`."""
    from tfy_audit._warehouse.lakehouse import stored_table_format

    if table_format is None:
        plain = choose(pipeline.destination, None)
        # Only a destination that writes files has a kind per table format (`_choose`): the
        # schema is read for the others' never. dlt loads it anew at each read of
        # `default_schema`, and a sync asks for the adapter a dozen times.
        if not plain.files:
            return plain
    fmt = table_format or stored_table_format(pipeline)
    return choose(pipeline.destination, fmt)


def warehouse_for(target: DestinationOptions) -> Warehouse:
    """The adapter of the destination `target` names, before any pipeline is made; the generic
    one for a name dlt does not know (making its destination then says so)."""
    return _for_name(target.destination, target.table_format)


@cache
def _for_name(name: str, table_format: str | None) -> Warehouse:
    try:
        destination = destination_from_reference(name)
    except Exception:
        destination = None
    return choose(destination, table_format)


def sql_reader(
    pipeline: dlt.Pipeline, tables: list[str] | None = None
) -> AbstractContextManager[Any]:
    """A SQL client on the pipeline's dataset (`Warehouse.sql_reader`)."""
    reader: AbstractContextManager[Any] = warehouse_of(pipeline).sql_reader(pipeline, tables)
    return reader
