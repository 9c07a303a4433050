"""A load whose `audit_logs` job fails, after the other tables' jobs committed, leaves
`audit_log_metadata` rows without their event; the next run heals it: every event arrives and
no leaf is left without its event, on DuckDB and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dlt.common.destination.exceptions import DestinationTerminalException
from tfy_audit._compat import dlt as _dlt_compat
from tfy_audit.simulator import SimulatorServer

from tests.conftest import DATASET, Workspace, assert_warehouse_matches, make_simulator, run_cli
from tests.integration.test_destinations import (
    TEXT_COLUMNS,
    assert_rows_match,
    postgres,
    postgres_dataset,  # noqa: F401 (a fixture)
)

ORPHANS = (
    "select count(*) from {ds}.audit_log_metadata m"
    " where not exists (select 1 from {ds}.audit_logs a where a.id = m.audit_log_id)"
)


def _fail_audit_logs_jobs(
    monkeypatch: pytest.MonkeyPatch, error: Exception, job_class: type[Any] | None = None
) -> list[int]:
    """Every attempt of dlt's load job (DuckDB's copy job unless `job_class`) of `audit_logs`
    raises `error` before writing; the other tables load. Returns the list the attempts are
    counted in."""
    job_class = job_class or _dlt_compat.duckdb_copy_job_class()
    original = job_class.run
    attempts: list[int] = []

    def run(self: Any) -> None:
        if self.load_table_name == "audit_logs":
            attempts.append(1)
            raise error
        original(self)

    monkeypatch.setattr(job_class, "run", run)
    return attempts


def _leaf_owners(events: list[dict[str, Any]]) -> set[str]:
    return {e["id"] for e in events if e.get("metaData")}


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Out of Memory Error: could not allocate block of size 16.0 MiB"),
        DestinationTerminalException("the audit_logs job failed for good"),
    ],
    ids=["retried", "terminal"],
)
@pytest.mark.parametrize("next_dir", ["same", "fresh"])
def test_a_failed_audit_logs_job_is_healed_by_the_next_run(
    error: Exception, next_dir: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next run from the same working dir finishes the failed package; from a fresh one
    (a scheduled Job without a volume) the package is gone, and the run reads the events
    again after deleting the leaves left without them."""
    sim = make_simulator(2_000, days=3, seed=41)
    with SimulatorServer(sim) as srv:
        with monkeypatch.context() as patch:
            attempts = _fail_audit_logs_jobs(patch, error)
            # jobs side by side, as dlt runs them by default (a DuckDB file is loaded one job at
            # a time unless LOAD__WORKERS says otherwise): the leaves load beside the failing
            # job, where one at a time a terminal failure may stop the load before them
            patch.setenv("LOAD__WORKERS", "20")
            assert run_cli(*workspace.sync_args(srv.url)) == 1
            assert attempts
        # the half-loaded package: leaves committed, their events not
        assert workspace.ids() == set()
        ((orphans,),) = workspace.query(ORPHANS.format(ds=DATASET))
        assert orphans > 0
        if next_dir == "fresh":
            workspace = Workspace(workspace.db, workspace.pipelines_dir.with_name("fresh"))
        assert run_cli(*workspace.sync_args(srv.url)) == 0
    assert_warehouse_matches(workspace, sim.events())
    assert workspace.query(ORPHANS.format(ds=DATASET)) == [(0,)]
    owners = {
        r[0] for r in workspace.query(f"select audit_log_id from {DATASET}.audit_log_metadata")
    }
    assert owners == _leaf_owners(sim.events())


@pytest.mark.postgres
@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("server closed the connection unexpectedly"),
        DestinationTerminalException("the audit_logs job failed for good"),
    ],
    ids=["retried", "terminal"],
)
@pytest.mark.parametrize("next_dir", ["same", "fresh"])
def test_a_failed_audit_logs_job_is_healed_on_postgres(
    error: Exception,
    next_dir: str,
    postgres_dataset: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds = postgres_dataset
    sim = make_simulator(1_000, days=3, seed=43)
    target = (
        "--destination", "postgres", "--dataset", ds, "--pipeline-name", f"pg_{ds}",
        "--pipelines-dir", str(tmp_path / "p"), "--no-progress",
    )  # fmt: skip

    def query(sql: str) -> list[tuple[Any, ...]]:
        with postgres() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    with SimulatorServer(sim) as srv:
        with monkeypatch.context() as patch:
            attempts = _fail_audit_logs_jobs(patch, error, _dlt_compat.insert_values_job_class())
            assert run_cli("sync", "--host", srv.url, *target) == 1
            assert attempts
        assert query(f'SELECT count(*) FROM "{ds}".audit_logs') == [(0,)]
        ((orphans,),) = query(ORPHANS.format(ds=f'"{ds}"'))
        assert orphans > 0
        if next_dir == "fresh":
            target = (*target[:-2], str(tmp_path / "fresh"), "--no-progress")
        assert run_cli("sync", "--host", srv.url, *target) == 0
    assert_rows_match(query(f'SELECT {TEXT_COLUMNS} FROM "{ds}".audit_logs'), sim.events())
    assert query(ORPHANS.format(ds=f'"{ds}"')) == [(0,)]
    owners = {r[0] for r in query(f'SELECT audit_log_id FROM "{ds}".audit_log_metadata')}
    assert owners == _leaf_owners(sim.events())
