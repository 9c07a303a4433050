"""Every use of dlt beyond its documented API, in one place.

tfy-audit relies on a few of dlt's internals: its package folders (to finish what a crashed
run left behind), the DuckDB destination's credentials and SQL client classes, a schema helper,
where a source keeps its config fields, the error of a destination without SQL, and the text of
one warning. A dlt upgrade may move or change any of them without notice;
`tests/unit/test_dlt_compat.py` exercises each one and fails with "dlt X.Y changed <what>;
update _dlt_compat.py" when it does. The rest of the package imports these names from here,
never from dlt's private modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dlt
from dlt.common.destination.exceptions import SqlClientNotAvailable
from dlt.common.destination.reference import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.schema.typing import TColumnSchema, TTableSchema, TWriteDispositionConfig
from dlt.common.schema.utils import has_table_seen_data
from dlt.common.storages.load_package import PackageStorage
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials

__all__ = [
    "ARROW_HINT_WARNING",
    "Destination",
    "PackageFolders",
    "SqlClientNotAvailable",
    "TColumnSchema",
    "TWriteDispositionConfig",
    "default_pipelines_dir",
    "delete_extracted_package",
    "destination_from_reference",
    "duckdb_destination",
    "package_folders",
    "source_config_fields",
    "table_seen_data",
    "uses_table_scanners",
]

# Part of the warning dlt's extract logs when the Arrow tables' types differ from the column
# hints (JSON sent as text, by design): extract.py filters it out by this text.
ARROW_HINT_WARNING = "when merging arrow schema with dlt schema"


def default_pipelines_dir() -> str:
    """dlt's default working directory for pipelines."""
    return get_dlt_pipelines_dir()


def duckdb_destination(database: str, *, memory_limit: str, threads: int) -> Destination[Any, Any]:
    """A DuckDB destination on the file `database`, with DuckDB's own settings. The path is
    set as a field, not passed as a string: dlt parses a string as a URL, through SQLAlchemy
    when it is installed, which slows every start."""
    credentials = DuckDbCredentials(
        global_config={"memory_limit": memory_limit, "threads": threads}
    )
    credentials.database = database
    destination: Destination[Any, Any] = dlt.destinations.duckdb(credentials=credentials)
    return destination


def destination_from_reference(name: str) -> Destination[Any, Any] | None:
    """The destination a name like `postgres` refers to (raises if dlt knows no such one)."""
    return Destination.from_reference(name)


def uses_table_scanners(client: Any) -> bool:
    """Whether an SQL client is an in-memory DuckDB over the destination's files (filesystem's):
    what is created there vanishes with it. Imported here, not at the top: it imports duckdb,
    which a sync into another destination never needs."""
    from dlt.destinations.impl.duckdb.sql_client import WithTableScanners

    return isinstance(client, WithTableScanners)


def source_config_fields(source: Any) -> list[str]:
    """The config fields dlt resolves for a `@dlt.source` function (its defaulted arguments)."""
    return list(source.ref.SPEC.get_resolvable_fields())


def table_seen_data(table: TTableSchema) -> bool:
    """Whether a table of the schema has received data (so it exists in the destination)."""
    return has_table_seen_data(table)


@dataclass(frozen=True)
class PackageFolders:
    """The load ids in each of a pipeline's package folders."""

    extracted: set[str]  # extracted, not normalized yet
    new: set[str]  # (partly) moved into the load storage by a normalize
    normalized: set[str]  # normalized, not loaded yet
    loaded: set[str]  # loaded, kept until dlt deletes them


def package_folders(pipeline: dlt.Pipeline) -> PackageFolders:
    load_storage = pipeline._get_load_storage()
    return PackageFolders(
        extracted=_packages(pipeline._get_normalize_storage().extracted_packages),
        new=_packages(load_storage.new_packages),
        normalized=_packages(load_storage.normalized_packages),
        loaded=_packages(load_storage.loaded_packages),
    )


def delete_extracted_package(pipeline: dlt.Pipeline, load_id: str) -> None:
    pipeline._get_normalize_storage().extracted_packages.delete_package(load_id)


def _packages(storage: PackageStorage) -> set[str]:
    """The load ids in one of dlt's package folders; none if dlt has not made it yet (a run
    killed before its first normalize leaves no `load/new`)."""
    try:
        return set(storage.list_packages())
    except FileNotFoundError:
        return set()
