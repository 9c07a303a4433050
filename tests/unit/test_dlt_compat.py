"""The dlt internals tfy-audit relies on, all reached through `_dlt_compat.py`: each one is
exercised here, so that a dlt upgrade that moves or changes one fails with what changed."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import dlt
import pyarrow as pa
import pytest


@contextmanager
def expect(what: str) -> Iterator[None]:
    """Fail with the message a maintainer needs when dlt no longer does `what`."""
    try:
        yield
        return
    except Exception as exc:
        failure = (
            f"dlt {dlt.__version__} changed {what}; update _dlt_compat.py "
            f"({type(exc).__name__}: {exc})"
        )
    pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture(scope="module")
def compat() -> ModuleType:
    with expect("a module or name _dlt_compat.py imports"):
        return importlib.import_module("tfy_audit._compat.dlt")


def _pipeline(compat: ModuleType, tmp_path: Path, name: str = "compat") -> dlt.Pipeline:
    destination = compat.duckdb_destination(
        str(tmp_path / f"{name}.duckdb"),
        memory_limit="64MB",
        threads=1,
        retry_keys={"t": ("id",)},
    )
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=destination,
        dataset_name="compat_data",
    )


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": str(i), "n": i} for i in range(n)]


def test_the_package_folders_follow_a_package_through_its_steps(
    compat: ModuleType, tmp_path: Path
) -> None:
    pipeline = _pipeline(compat, tmp_path)
    with expect(
        "where a pipeline keeps its load packages (_get_normalize_storage/_get_load_storage)"
    ):
        empty = compat.package_folders(pipeline)
        assert (empty.extracted, empty.new, empty.normalized, empty.loaded) == (
            set(),
            set(),
            set(),
            set(),
        )
        extracted = pipeline.extract(dlt.resource(_rows(3), name="t"))
        (load_id,) = extracted.loads_ids
        assert compat.package_folders(pipeline).extracted == {load_id}
        pipeline.normalize()
        folders = compat.package_folders(pipeline)
        assert (folders.extracted, folders.normalized) == (set(), {load_id})
        pipeline.load()
        folders = compat.package_folders(pipeline)
        assert (folders.normalized, folders.loaded) == (set(), {load_id})
    with expect("how an extracted load package is deleted"):
        (second,) = pipeline.extract(dlt.resource(_rows(2), name="t")).loads_ids
        assert compat.package_folders(pipeline).extracted == {second}
        compat.delete_extracted_package(pipeline, second)
        assert compat.package_folders(pipeline).extracted == set()
        assert not pipeline.has_pending_data


def test_the_duckdb_destination_takes_a_path_and_settings(
    compat: ModuleType, tmp_path: Path
) -> None:
    pipeline = _pipeline(compat, tmp_path, "settings")
    with expect("the DuckDB destination's credentials (DuckDbCredentials)"):
        pipeline.run(dlt.resource(_rows(2), name="t"))
        assert (tmp_path / "settings.duckdb").is_file()
        with pipeline.sql_client() as client:
            rows = client.execute_sql(
                "select current_setting('threads'), current_setting('memory_limit')"
            )
        assert rows is not None
        threads, memory = rows[0]
        assert int(threads) == 1
        assert memory.endswith("MiB") and float(memory.split()[0]) < 64


def test_a_copy_job_retried_after_writing_copies_its_rows_once(
    compat: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _pipeline(compat, tmp_path, "retried")
    with expect("the DuckDB destination's type, client and copy job (DuckDbClient, DuckDbCopyJob)"):
        assert pipeline.destination is not None
        assert pipeline.destination.destination_type == "dlt.destinations.duckdb"
        assert pipeline.destination.destination_name == "duckdb"
        job_class = compat.duckdb_copy_job_class()
        original = job_class.run
        attempts: list[str] = []

        def run(self: Any) -> None:
            original(self)
            attempts.append(self._file_path)
            if len(attempts) == 1:
                raise RuntimeError("Failed to commit: could not allocate block")

        monkeypatch.setattr(job_class, "run", run)
        table = pa.table({"id": ["a", "b", "c"], "n": [1, 2, 3]})
        pipeline.run(dlt.resource([table], name="t"), loader_file_format="parquet")
    with expect("how dlt retries a job (the retry count in its file name)"):
        assert [Path(a).name.split(".")[2] for a in attempts] == ["0", "1"]
        with pipeline.sql_client() as client:
            rows = client.execute_sql("select id, n from t order by id")
        assert [tuple(r) for r in rows or []] == [("a", 1), ("b", 2), ("c", 3)]


def test_the_duckdb_destinations_load_files_are_uncompressed(
    compat: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt cuts load files by their size on disk: uncompressed, that size bounds the rows one
    copy job holds in DuckDB's transaction (manifests compress tens of times)."""
    import pyarrow.parquet as pq

    pipeline = _pipeline(compat, tmp_path, "uncompressed")
    with expect("the destination's parquet_format capability reaching the Parquet writer"):
        job_class = compat.duckdb_copy_job_class()
        original = job_class.run
        codecs: set[str] = set()

        def run(self: Any) -> None:
            meta = pq.ParquetFile(self._file_path).metadata
            codecs.update(
                meta.row_group(g).column(c).compression
                for g in range(meta.num_row_groups)
                for c in range(meta.num_columns)
            )
            original(self)

        monkeypatch.setattr(job_class, "run", run)
        table = pa.table({"id": ["a", "b"], "text": ["x" * 1000, "y" * 1000]})
        pipeline.run(dlt.resource([table], name="t"), loader_file_format="parquet")
        assert codecs == {"UNCOMPRESSED"}


def test_a_destinations_configuration_is_resolved_once_per_distinct_request(
    compat: ModuleType, tmp_path: Path
) -> None:
    destination = compat.duckdb_destination(
        str(tmp_path / "memo.duckdb"), memory_limit="64MB", threads=1, retry_keys={}
    )
    resolved: list[Any] = []
    resolve = destination.configuration

    def counting(initial_config: Any = None, accept_partial: bool = False) -> Any:
        resolved.append(initial_config)
        if len(resolved) == 1:
            raise RuntimeError("the first resolution fails")
        return resolve(initial_config, accept_partial=accept_partial)

    def spec(dataset: str) -> Any:
        config = destination.spec()
        config.dataset_name = dataset
        return config

    destination.configuration = counting
    memo = compat.memoize_configuration(destination)
    with expect("Destination.configuration and capabilities (their signatures)"):
        with pytest.raises(RuntimeError):  # a failure is raised, and not kept
            memo.configuration(spec("a"))
        first = memo.configuration(spec("a"))
        again = memo.configuration(spec("a"))
        other = memo.configuration(spec("b"))
        assert len(resolved) == 3  # the failure, "a" once, "b" once
        assert first is not again  # each caller gets its own copy
        assert (first.dataset_name, again.dataset_name, other.dataset_name) == ("a", "a", "b")
        caps = memo.capabilities()
        assert memo.capabilities() is not caps
        assert memo.capabilities().preferred_loader_file_format == caps.preferred_loader_file_format


def test_a_destination_is_found_by_its_name(compat: ModuleType) -> None:
    with expect("Destination.from_reference"):
        destination = compat.destination_from_reference("postgres")
        assert destination is not None and destination.destination_name == "postgres"
    try:
        compat.destination_from_reference("no_such_destination_here")
        unknown_raised = False
    except Exception:  # any error: make_destination turns it into its own message
        unknown_raised = True
    with expect("Destination.from_reference on an unknown name (it raised before)"):
        assert unknown_raised


def test_a_generators_resource_is_made_without_looking_up_its_module(
    compat: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt.resource looks a generator's module up through its frame (a walk of every module
    loaded); the wrapped generator is taken as an iterator instead, and loads the same rows."""
    import inspect

    looked_up: list[Any] = []
    getmodule = inspect.getmodule

    def recording(obj: Any, *args: Any) -> Any:
        looked_up.append(obj)
        return getmodule(obj, *args)

    def rows() -> Iterator[dict[str, Any]]:
        yield from _rows(3)

    with expect("dlt.resource's look-up of a generator's module (inspect.getmodule)"):
        monkeypatch.setattr(inspect, "getmodule", recording)
        dlt.resource(rows(), name="t")
        assert any(inspect.isframe(obj) for obj in looked_up)
    looked_up.clear()
    resource = compat.iterator_resource(rows(), name="t")
    monkeypatch.undo()
    assert looked_up == []
    pipeline = _pipeline(compat, tmp_path, "iterated")
    with expect("a resource made from an iterator"):
        pipeline.run(resource)
        with pipeline.sql_client() as client:
            assert client.execute_sql("select id, n from t order by n") == [
                ("0", 0),
                ("1", 1),
                ("2", 2),
            ]


def test_dlts_start_only_configures_its_requests_helper_and_it_comes_back_whole() -> None:
    """In a process of its own (dlt not imported yet): dlt's start calls nothing of its
    requests helper but `init`, so `requests` stays unimported; the first other use imports
    the real module, configured by every `init` dlt made, and a submodule imports as usual."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        """
        import os, sys
        os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
        os.environ["RUNTIME__REQUEST_TIMEOUT"] = "17"
        from tfy_audit._compat.deferred import REQUESTS_HELPER, defer_requests_helper

        assert defer_requests_helper()
        import dlt

        dlt.config.get("sources.compat.anything")  # dlt's runtime starts here
        assert "requests" not in sys.modules, "dlt used more than init"
        from dlt.sources.helpers.requests.retry import Client  # a submodule, as usual

        from dlt.sources.helpers import requests

        assert requests.client._session_kwargs["timeout"] == 17.0  # init replayed
        assert sys.modules[REQUESTS_HELPER].client is requests.client
        assert isinstance(requests.client, Client) and "requests" in sys.modules
        assert not defer_requests_helper()  # dlt is imported: never twice
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    with expect("what its start asks of dlt.sources.helpers.requests (init only)"):
        assert done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_table_has_seen_data_once_loaded(compat: ModuleType, tmp_path: Path) -> None:
    pipeline = _pipeline(compat, tmp_path, "seen")
    with expect("has_table_seen_data"):
        assert not compat.table_seen_data({"name": "t", "columns": {}})
        pipeline.run(dlt.resource(_rows(2), name="t"))
        assert compat.table_seen_data(pipeline.default_schema.tables["t"])


def test_the_filesystem_sql_client_scans_tables(compat: ModuleType, tmp_path: Path) -> None:
    """views.py skips destinations whose SQL client is an in-memory DuckDB over files."""
    pipeline = dlt.pipeline(
        pipeline_name="scanner",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.filesystem(str(tmp_path / "bucket")),
        dataset_name="compat_data",
    )
    pipeline.run(dlt.resource(_rows(2), name="t"), loader_file_format="parquet")
    with expect("the filesystem destination's SQL client class (WithTableScanners)"):
        assert compat.uses_table_scanners(pipeline.sql_client())
    with expect("the DuckDB destination's SQL client class (WithTableScanners)"):
        duckdb_pipeline = _pipeline(compat, tmp_path, "no_scanner")
        duckdb_pipeline.run(dlt.resource(_rows(2), name="t"))
        assert not compat.uses_table_scanners(duckdb_pipeline.sql_client())


def test_a_destination_without_sql_says_so(compat: ModuleType, tmp_path: Path) -> None:
    """views.py skips a destination whose pipeline has no SQL client, by this error."""
    pipeline = dlt.pipeline(
        pipeline_name="no_sql",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination="dummy",
        dataset_name="compat_data",
    )
    with expect("the error of a destination without an SQL client (SqlClientNotAvailable)"):
        try:
            pipeline.sql_client()
        except compat.SqlClientNotAvailable:
            return
        raise AssertionError("no SqlClientNotAvailable")


def test_the_arrow_hint_warning_is_still_the_one_filtered(
    compat: ModuleType,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """extract.py hides the warning dlt logs for JSON columns sent as Arrow text, by its text."""
    import tfy_audit._source.extract  # noqa: F401  (installs the filter, which this test sets aside)

    monkeypatch.setattr(logging.getLogger("dlt"), "filters", [])
    pipeline = _pipeline(compat, tmp_path, "hints")
    resource = dlt.resource(
        [pa.table({"id": ["1"], "doc": ['{"a": 1}']})],
        name="t",
        columns={"doc": {"data_type": "json"}},
    )
    with caplog.at_level(logging.WARNING, logger="dlt"):
        pipeline.extract(resource)
    with expect("the text of the warning about Arrow types and column hints"):
        assert any(compat.ARROW_HINT_WARNING in r.getMessage() for r in caplog.records)


def test_a_sources_config_fields_are_its_defaulted_arguments(compat: ModuleType) -> None:
    @dlt.source(name="compat_source")
    def source(required: str, setting: int = 1, other: str | None = None) -> Any:
        return dlt.resource([required], name="t")

    with expect("where a source's config SPEC is kept (.ref.SPEC)"):
        assert compat.source_config_fields(source) == ["setting", "other"]


def test_another_pipeline_finds_the_datasets_schema_and_state(
    compat: ModuleType, tmp_path: Path
) -> None:
    """A pipeline of another name into the same dataset: the stored schema and the first
    pipeline's committed state are read back; its own state takes keys outside an extract."""

    @dlt.source(name="compat_src")
    def source() -> Any:
        @dlt.resource(name="t")
        def rows() -> Iterator[dict[str, Any]]:
            dlt.current.source_state()["mark"] = "m1"
            yield from _rows(3)

        return rows

    first = _pipeline(compat, tmp_path)
    first.run(source())
    second = dlt.pipeline(
        pipeline_name="second",
        pipelines_dir=str(tmp_path / "pipelines2"),
        destination=first.destination,
        dataset_name="compat_data",
    )
    with expect("restoring a stored schema by name (get_stored_schema, _schema_storage)"):
        second.sync_destination()
        assert not second.default_schema_name
        assert compat.restore_stored_schema(second, "compat_src") is True
        assert compat.restore_stored_schema(second, "no_such_schema") is False
        assert second.default_schema_name == "compat_src"
        assert "t" in second.default_schema.tables
    with expect("reading another pipeline's state (load_pipeline_state_from_destination)"):
        state = compat.stored_pipeline_state(second, "compat")
        assert state is not None and state["sources"]["compat_src"] == {"mark": "m1"}
        assert compat.stored_pipeline_state(second, "never_ran") is None
    with expect("setting source state outside an extract (Pipeline.managed_state)"):
        compat.update_source_state(second, "compat_src", {"mark": "m2"})
        assert second.state["sources"]["compat_src"] == {"mark": "m2"}


def test_missing_package_folders_are_created_where_dlt_lists_them(
    compat: ModuleType, tmp_path: Path
) -> None:
    import shutil

    pipeline = _pipeline(compat, tmp_path)
    pipeline.run(_rows(2), table_name="t")
    with expect("where a pipeline's package folders are (load and normalize storages)"):
        roots = compat.package_roots(pipeline)
        assert set(roots) == {"extracted", "new", "normalized", "loaded"}
        assert all(Path(root).is_dir() for root in roots.values())
        for root in roots.values():
            shutil.rmtree(root)
        compat.create_package_folders(pipeline)
        assert all(Path(root).is_dir() for root in roots.values())
        assert not pipeline.has_pending_data
        assert compat.PACKAGE_SCHEMA_FILE == "schema.json"


def test_only_a_persistent_sql_engine_gives_a_client_for_run_logs(
    compat: ModuleType, tmp_path: Path
) -> None:
    """verify_log.py and run_log.py keep their tables by plain SQL where it persists."""
    duckdb_pipeline = _pipeline(compat, tmp_path, "persistent")
    duckdb_pipeline.run(dlt.resource(_rows(2), name="t"))
    with expect("the SQL client of the DuckDB destination"):
        assert compat.persistent_sql_client(duckdb_pipeline) is not None
    lake = dlt.pipeline(
        pipeline_name="lake",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination=dlt.destinations.filesystem(str(tmp_path / "bucket")),
        dataset_name="compat_data",
    )
    lake.run(dlt.resource(_rows(2), name="t"), loader_file_format="parquet")
    dummy = dlt.pipeline(
        pipeline_name="dummy",
        pipelines_dir=str(tmp_path / "pipelines"),
        destination="dummy",
        dataset_name="compat_data",
    )
    with expect("the filesystem's or a SQL-less destination's SQL client"):
        assert compat.persistent_sql_client(lake) is None
        assert compat.persistent_sql_client(dummy) is None


def test_a_missing_field_is_read_from_dlts_configuration_error(
    compat: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """errors.py names the field dlt could not resolve and where it looked, from the traces of
    its ConfigFieldMissingException; other configuration errors are told apart by class."""
    from dlt.common.configuration import resolve_configuration
    from dlt.common.configuration.exceptions import ConfigurationValueError
    from dlt.destinations.impl.postgres.configuration import PostgresClientConfiguration

    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres@127.0.0.1:5432/test"
    )
    with pytest.raises(Exception) as err:
        resolve_configuration(
            PostgresClientConfiguration()._bind_dataset_name(dataset_name="d"),
            sections=("destination", "postgres"),
        )
    with expect("ConfigFieldMissingException's traces (LookupTrace, LookupTraces)"):
        missing = compat.unresolved_config_fields(err.value)
        assert [(field.owner, field.name) for field in missing] == [
            ("PostgresCredentials", "password")
        ]
        env_lookups = {
            (lookup.sections, lookup.key)
            for lookup in missing[0].lookups
            if lookup.provider == "Environment Variables"
        }
        assert env_lookups == {
            (
                ("destination", "postgres", "credentials"),
                "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD",
            ),
            (("destination", "credentials"), "DESTINATION__CREDENTIALS__PASSWORD"),
            (("credentials",), "CREDENTIALS__PASSWORD"),
        }
    with expect("the classes of dlt's configuration errors"):
        assert compat.unresolved_config_fields(ValueError("x")) is None
        assert compat.is_configuration_exception(ConfigurationValueError("bad"))
        assert not compat.is_configuration_exception(ValueError("x"))
