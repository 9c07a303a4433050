"""Every use of dlt beyond its documented API, in one place.

tfy-audit relies on a few of dlt's internals: its package folders (to finish what a crashed
run left behind), the DuckDB destination's credentials and SQL client classes, a schema helper,
where a source keeps its config fields, the traces of its configuration errors, the error of a
destination without SQL, and the text of one warning. A dlt upgrade may move or change any of
them without notice; `tests/unit/test_dlt_compat.py` exercises each one and fails with
"dlt X.Y changed <what>; update _dlt_compat.py" when it does. The rest of the package imports
these names from here, never from dlt's private modules.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

import dlt
from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    ConfigurationException,
    LookupTrace,
    LookupTraces,
)
from dlt.common.destination.configuration import ParquetFormatConfiguration
from dlt.common.destination.exceptions import DestinationUndefinedEntity, SqlClientNotAvailable
from dlt.common.destination.reference import Destination
from dlt.common.schema import Schema
from dlt.common.schema.typing import TColumnSchema, TTableSchema, TWriteDispositionConfig
from dlt.common.schema.utils import has_table_seen_data
from dlt.common.storages.load_package import PackageStorage, ParsedLoadJobFileName
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.state_sync import load_pipeline_state_from_destination

from tfy_audit._core.errors import (
    ConfigLookup,
    ConfigurationError,
    UnresolvedField,
    UsageError,
    describe_invalid_configuration,
    describe_missing_configuration,
    exception_chain,
    explain_database_in_use,
)

_logger = logging.getLogger(__name__)

__all__ = [
    "ARROW_HINT_WARNING",
    "PACKAGE_SCHEMA_FILE",
    "DatabaseUndefinedRelation",
    "Destination",
    "PackageFolders",
    "SqlClientNotAvailable",
    "TColumnSchema",
    "TWriteDispositionConfig",
    "configuration_error",
    "create_package_folders",
    "delete_extracted_package",
    "destination_from_reference",
    "duckdb_copy_job_class",
    "duckdb_destination",
    "explain_configuration_failure",
    "explain_destination_failure",
    "insert_values_job_class",
    "is_configuration_exception",
    "keeps_local_files",
    "merge_strategies",
    "package_folders",
    "package_roots",
    "persistent_sql_client",
    "pipeline_source_state",
    "restore_stored_schema",
    "source_config_fields",
    "sources_state",
    "stored_pipeline_state",
    "table_seen_data",
    "unresolved_config_fields",
    "update_source_state",
    "uses_table_scanners",
]

# Part of the warning dlt's extract logs when the Arrow tables' types differ from the column
# hints (JSON sent as text, by design): extract.py filters it out by this text.
ARROW_HINT_WARNING = "when merging arrow schema with dlt schema"


def duckdb_destination(
    database: str,
    *,
    memory_limit: str,
    threads: int,
    retry_keys: Mapping[str, Sequence[str]],
    read_only: bool = False,
    retry_memory_limit: str | None = None,
) -> Destination[Any, Any]:
    """A DuckDB destination on the file `database`, with DuckDB's own settings. The path is
    set as a field, not passed as a string: dlt parses a string as a URL, through SQLAlchemy
    when it is installed, which slows every start.

    Its copy jobs are safe to retry: dlt retries a job that raised anything but a terminal
    error, and a DuckDB `INSERT` can raise after its rows were committed ("Failed to commit:
    could not allocate block" under memory pressure), so the retry would add them again. A
    retried job of a table in `retry_keys` first deletes, in the transaction of its insert,
    the rows whose key (those columns) is in its file: whatever the failed attempt left. The
    first attempt runs as dlt's own, so this costs nothing on the normal path.

    `read_only`: DuckDB opens the file read-only (for a file the file system will not let us
    write; nothing can be loaded then).

    A copy job that runs out of `memory_limit` (a row of one event of many MB: DuckDB's "Out of
    Memory Error") runs again at once, and any retry by dlt runs, with DuckDB's memory limit
    raised to `retry_memory_limit`, kept for the rest of the database's session; the normal path
    keeps the small limit that holds the peak low."""
    credentials = DuckDbCredentials(
        global_config={"memory_limit": memory_limit, "threads": threads}
    )
    credentials.database = database
    credentials.read_only = read_only
    destination: Destination[Any, Any] = _retry_safe_duckdb()(credentials=credentials)
    destination.retry_keys = {table: tuple(keys) for table, keys in retry_keys.items()}  # type: ignore[attr-defined]
    destination.memory_limits = (memory_limit, retry_memory_limit)  # type: ignore[attr-defined]
    return destination


def duckdb_copy_job_class() -> type[Any]:
    """dlt's DuckDB copy job (tests wrap its `run` to make it fail after writing)."""
    from dlt.destinations.impl.duckdb.duck import DuckDbCopyJob

    return DuckDbCopyJob


def insert_values_job_class() -> type[Any]:
    """dlt's INSERT job, which loads PostgreSQL here (tests wrap its `run` to make it fail)."""
    from dlt.destinations.insert_job_client import InsertValuesLoadJob

    return InsertValuesLoadJob


@cache
def _retry_safe_duckdb() -> type[Any]:
    """dlt's DuckDB destination factory, its client making retry-safe copy jobs. Built on
    first use: it imports duckdb, which a sync into another destination never needs."""
    from dlt.destinations.impl.duckdb.duck import DuckDbClient, DuckDbCopyJob
    from dlt.destinations.impl.duckdb.factory import duckdb as duckdb_factory

    class RetrySafeCopyJob(DuckDbCopyJob):
        def __init__(
            self,
            file_path: str,
            keys: Mapping[str, tuple[str, ...]],
            memory_limits: tuple[str, str | None],
        ) -> None:
            super().__init__(file_path)
            self._keys = keys
            self._memory_limits = memory_limits

        def run(self) -> None:
            retried = ParsedLoadJobFileName.parse(self._file_path).retry_count > 0
            larger = self._memory_limits[1]
            if larger is None:
                self._run(delete_first=retried)
                return
            if not retried:
                try:
                    self._run(delete_first=False)
                    return
                except Exception as exc:
                    if "Out of Memory" not in str(exc):
                        raise
                    # a row too large for the usual limit: again at once with the larger one,
                    # rather than through dlt's retry (which logs a traceback for each)
                    _logger.info(
                        "loading %s again with DuckDB's memory limit raised to %s",
                        self.load_table_name,
                        larger,
                    )
            # Raised for the rest of the database's session, never set back here: the limit
            # is the database's, not the job's, other jobs may be copying beside this one (a
            # chunk's files are cut by size), and lowering it under them failed their copy or
            # DuckDB's checkpoint after a commit. The file opens at the usual limit again next time.
            self._job_client.sql_client.execute_sql(f"SET memory_limit = '{larger}'")
            self._run(delete_first=True)

        def _run(self, *, delete_first: bool) -> None:
            keys = self._keys.get(self.load_table_name)
            if not keys or not delete_first:
                super().run()
                return
            sql_client = self._job_client.sql_client
            table = sql_client.make_qualified_table_name(self.load_table_name)
            columns = [sql_client.escape_column_name(k) for k in keys]
            source = f"read_parquet('{self._file_path}', union_by_name=true)"
            match = " and ".join(f"t.{c} = f.{c}" for c in columns)
            with sql_client.begin_transaction():
                sql_client.execute_sql(
                    f"delete from {table} as t using (select distinct {', '.join(columns)}"
                    f" from {source}) f where {match}"
                )
                super().run()

    class RetrySafeClient(DuckDbClient):
        retry_keys: Mapping[str, tuple[str, ...]] = {}
        memory_limits: tuple[str, str | None] = ("", None)

        def create_load_job(
            self, table: Any, file_path: str, load_id: str, restore: bool = False
        ) -> Any:
            job = super().create_load_job(table, file_path, load_id, restore)
            if type(job) is DuckDbCopyJob:
                job = RetrySafeCopyJob(file_path, self.retry_keys, self.memory_limits)
            return job

    class RetrySafeDuckDb(duckdb_factory):
        retry_keys: Mapping[str, tuple[str, ...]] = {}
        memory_limits: tuple[str, str | None] = ("", None)

        @property
        def destination_type(self) -> str:
            # dlt's own type: the pipeline's state names the destination by it
            return str(duckdb_factory().destination_type)

        @property
        def client_class(self) -> type[Any]:
            return RetrySafeClient

        def _raw_capabilities(self) -> Any:
            # Load files uncompressed: dlt cuts them by their size on disk, and the one-job
            # transaction DuckDB holds in memory grows with their size uncompressed. Manifests
            # compress tens of times, so a compressed file under the cap could hold hundreds of
            # MB, more than DuckDB's limit in a 1 GiB container; uncompressed, the cap bounds
            # each job. A user's `DATA_WRITER__COMPRESSION` still overrides it.
            caps = super()._raw_capabilities()
            caps.parquet_format = ParquetFormatConfiguration(compression="none")
            return caps

        def client(self, schema: Any, initial_config: Any = None) -> Any:
            client: Any = super().client(schema, initial_config)
            client.retry_keys = self.retry_keys
            client.memory_limits = self.memory_limits
            return client

    return RetrySafeDuckDb


def memoize_configuration(destination: Destination[Any, Any]) -> Destination[Any, Any]:
    """`destination`, its resolved configurations and capabilities kept for its lifetime.

    dlt resolves a destination's whole configuration from every provider (the environment,
    the TOML files, each under several sections) each time a pipeline asks for a client or
    for the capabilities, dozens of times in one run; each resolution reads the same values.
    A command makes its destination for one run, in which the configuration does not change,
    so each distinct request is resolved once and a copy of the result handed out: the
    first of several equal requests still raises what dlt raises (nothing is kept then).
    Requests are equal when their configurations hold equal values (`repr`, the same
    credentials object) and name the same naming convention."""
    resolve = destination.configuration
    capabilities = destination.capabilities
    configs: dict[tuple[Any, ...], Any] = {}
    caps: dict[tuple[Any, ...], Any] = {}

    def configuration(initial_config: Any = None, accept_partial: bool = False) -> Any:
        key = (_config_key(initial_config), accept_partial)
        if key not in configs:
            configs[key] = resolve(initial_config, accept_partial=accept_partial)
        return copy.copy(configs[key])

    def capabilities_of(config: Any = None, naming: Any = None) -> Any:
        key = (_config_key(config), _naming_key(naming))
        if key not in caps:
            caps[key] = capabilities(config, naming)
        return copy.copy(caps[key])

    destination.configuration = configuration  # type: ignore[method-assign]
    destination.capabilities = capabilities_of  # type: ignore[method-assign]
    return destination


def _config_key(config: Any) -> tuple[Any, ...] | None:
    if config is None:
        return None
    return (type(config), tuple((name, repr(value)) for name, value in config.items()))


def _naming_key(naming: Any) -> tuple[Any, ...] | None:
    if naming is None:
        return None
    return (type(naming), getattr(naming, "max_length", None))


def destination_from_reference(name: str) -> Destination[Any, Any] | None:
    """The destination a name like `postgres` refers to (raises if dlt knows no such one)."""
    return Destination.from_reference(name)


def iterator_resource(items: Iterator[Any], name: str) -> Any:
    """`dlt.resource(items, name=name)`, without dlt's look-up of a generator's module.

    Given a generator object, dlt.resource finds the module of its frame with
    `inspect.getmodule`, which walks and resolves the file of every module loaded until one
    matches (about 1,200 of them with dlt's, 25 ms the first time). The section it names is
    not used for a resource a source returns. dlt takes any other iterator as it is, so the
    generator goes in wrapped. For a generator with nothing to release when stopped early: dlt
    closes a generator it stops, but not another iterator, so the wrapped one is closed only
    when dropped (or by the wrapper's `close`)."""
    return dlt.resource(_Items(items), name=name)


class _Items(Iterator[Any]):
    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items

    def __next__(self) -> Any:
        return next(self._items)

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()


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


def package_roots(pipeline: dlt.Pipeline) -> dict[str, str]:
    """The folders holding a pipeline's packages, by step: `extracted` (normalize's input),
    `new`, `normalized` and `loaded` (the load storage's)."""
    load_storage = pipeline._get_load_storage()
    normalize_storage = pipeline._get_normalize_storage()
    return {
        "extracted": normalize_storage.extracted_packages.storage.storage_path,
        "new": load_storage.new_packages.storage.storage_path,
        "normalized": load_storage.normalized_packages.storage.storage_path,
        "loaded": load_storage.loaded_packages.storage.storage_path,
    }


# a package dlt can process has its schema; a folder without one was cut short
PACKAGE_SCHEMA_FILE = PackageStorage.SCHEMA_FILE_NAME


def create_package_folders(pipeline: dlt.Pipeline) -> None:
    """Create whichever of the package folders is missing, as dlt does for a new pipeline:
    dlt's pipeline opens its storages without creating them, and lists packages (as
    `has_pending_data` does) in folders it assumes exist."""
    from dlt.common.storages import LoadStorage, NormalizeStorage

    NormalizeStorage(True, pipeline._normalize_storage_config())
    LoadStorage(True, [], pipeline._load_storage_config())


def delete_extracted_package(pipeline: dlt.Pipeline, load_id: str) -> None:
    pipeline._get_normalize_storage().extracted_packages.delete_package(load_id)


def _packages(storage: PackageStorage) -> set[str]:
    """The load ids in one of dlt's package folders; none if dlt has not made it yet (a run
    killed before its first normalize leaves no `load/new`)."""
    try:
        return set(storage.list_packages())
    except FileNotFoundError:
        return set()


def restore_stored_schema(pipeline: dlt.Pipeline, schema_name: str) -> bool:
    """Install the destination's newest stored schema `schema_name` into a pipeline that has
    no schema yet; False when the destination holds none. dlt restores schemas only along with
    the pipeline's own state (found by the pipeline's name), so a pipeline of another name, or
    one whose working dir and name are new, would otherwise not know the dataset's tables."""
    import json

    with pipeline.destination_client() as client:
        info = client.get_stored_schema(schema_name)  # type: ignore[attr-defined]
    if info is None:
        return False
    schema = Schema.from_dict(json.loads(info.schema))
    pipeline._schema_storage.save_schema(schema)
    pipeline._set_default_schema_name(schema)
    return True


def stored_pipeline_state(pipeline: dlt.Pipeline, pipeline_name: str) -> dict[str, Any] | None:
    """The newest state the pipeline `pipeline_name` committed to this pipeline's dataset."""
    with pipeline.destination_client() as client:
        try:
            state = load_pipeline_state_from_destination(pipeline_name, client)  # type: ignore[arg-type]
        except DestinationUndefinedEntity:
            return None
    return dict(state) if state else None


def update_source_state(
    pipeline: dlt.Pipeline, source_name: str, values: Mapping[str, Any]
) -> None:
    """Set keys of a source's state outside an extract; the pipeline keeps them in its working
    dir, and its next extract commits them to the destination with its rows."""
    with pipeline.managed_state() as state:
        sources: Any = state.setdefault("sources", {})
        sources.setdefault(source_name, {}).update(values)


# -- reading dlt's SQL clients and configuration errors ------------------------------------


def persistent_sql_client(pipeline: dlt.Pipeline) -> Any | None:
    """The pipeline's SQL client when its destination has a persistent SQL engine (where
    tables created by plain SQL stay); None for the others: no SQL client at all, or the
    filesystem's in-memory DuckDB over its files."""
    try:
        client: Any = pipeline.sql_client()
    except SqlClientNotAvailable:
        return None
    return None if uses_table_scanners(client) else client


def persistent_sql_client_or_refuse(pipeline: dlt.Pipeline, refusal: str) -> Any:
    """`persistent_sql_client`, or a UsageError of `refusal` (one line: what cannot be kept
    here, and the fix) for a destination without one."""
    client = persistent_sql_client(pipeline)
    if client is None:
        raise UsageError(refusal)
    return client


def _unresolved(traces: Any, owner: str) -> Iterator[UnresolvedField]:
    """Each field dlt could not resolve, through nested configurations (credentials inside a
    destination's configuration: a `LookupTraces` among a field's lookups)."""
    if not isinstance(traces, dict):
        return
    for name, tried in traces.items():
        tried = tried if isinstance(tried, list) else []
        lookups = [t for t in tried if isinstance(t, LookupTrace)]
        nested = [t for t in tried if isinstance(t, LookupTraces)]
        for inner in nested:
            yield from _unresolved(inner.traces, inner.spec_name)
        if lookups or not nested:
            yield UnresolvedField(
                owner=owner,
                name=str(name),
                lookups=tuple(
                    ConfigLookup(str(t.provider), tuple(t.sections), str(t.key)) for t in lookups
                ),
            )


def unresolved_config_fields(exc: BaseException) -> list[UnresolvedField] | None:
    """The fields dlt could not resolve when `exc` is its `ConfigFieldMissingException`
    (read from the exception's traces); None for any other exception."""
    if not isinstance(exc, ConfigFieldMissingException):
        return None
    return list(_unresolved(exc.traces, exc.spec_name))


def is_configuration_exception(exc: BaseException) -> bool:
    """Whether `exc` is one of dlt's configuration errors (a configuration it refused)."""
    return isinstance(exc, ConfigurationException)


def explain_configuration_failure(exc: BaseException) -> str | None:
    """One line for a dlt configuration error anywhere in `exc`'s chain: the field dlt could
    not resolve and where to set it; None if there is no such error."""
    for current in exception_chain(exc):
        missing = unresolved_config_fields(current)
        if missing is not None:
            return describe_missing_configuration(missing) if missing else None
        if is_configuration_exception(current):
            return describe_invalid_configuration(current)
    return None


def configuration_error(exc: BaseException) -> ConfigurationError | None:
    """A dlt configuration error anywhere in `exc`'s chain, as our one-line usage error."""
    explained = explain_configuration_failure(exc)
    return ConfigurationError(explained) if explained is not None else None


def explain_destination_failure(exc: BaseException) -> str | None:
    """What a destination failure means and what to do, for the causes a user can fix (its
    configuration, a DuckDB file open elsewhere); None for the rest."""
    return explain_configuration_failure(exc) or explain_database_in_use(exc)


def keeps_local_files(destination: Destination[Any, Any]) -> bool:
    """Whether the destination's configuration keeps its data in local files (dlt's
    `WithLocalFiles`: a DuckDB file, a local filesystem bucket), as opposed to a server."""
    from dlt.common.storages.configuration import WithLocalFiles

    return issubclass(destination.spec, WithLocalFiles)


def merge_strategies(caps: Any, table_name: str, table_format: str | None = None) -> list[str]:
    """The merge strategies a destination of capabilities `caps` (`capabilities()`) offers a
    table in `table_format` (None: its plain tables), as its selector answers: none for plain
    files on the filesystem."""
    supported = list(caps.supported_merge_strategies or ())
    selector = caps.merge_strategies_selector
    if selector is None:
        return supported
    table: Any = {"name": table_name}
    if table_format is not None:
        table["table_format"] = table_format
    return list(selector(supported, table_schema=table))


def sources_state(state: Mapping[str, Any] | None, source_name: str) -> dict[str, Any]:
    """A copy of one source's state in a pipeline state (`state["sources"][source_name]`, as
    dlt keeps it); empty when it has none."""
    sources = (state or {}).get("sources") or {}
    return dict(sources.get(source_name) or {})


def pipeline_source_state(pipeline: dlt.Pipeline, source_name: str) -> dict[str, Any]:
    """A copy of one source's state in the pipeline's working state."""
    return sources_state(pipeline.state, source_name)


@contextmanager
def filesystem_client(pipeline: dlt.Pipeline) -> Iterator[Any]:
    """The filesystem destination's job client, whose table-file listing
    (`list_table_files`) and fsspec client (`fs_client`) read a dataset's files with dlt's
    credentials. A TypeError on any other destination."""
    from dlt.destinations.impl.filesystem.filesystem import FilesystemClient

    with pipeline.destination_client() as client:
        if not isinstance(client, FilesystemClient):
            raise TypeError(f"{type(client).__name__} is not dlt's filesystem client")
        yield client
