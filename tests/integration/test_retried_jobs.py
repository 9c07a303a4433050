"""A load job dlt retries after it had written its rows (DuckDB's "Failed to commit: could not
allocate block" under memory pressure) leaves no row twice: on the append path (a first sync)
and on the merge path (a full re-merge, through the staging tables)."""

from __future__ import annotations

from typing import Any

import pytest
from tfy_audit._compat import dlt as _dlt_compat
from tfy_audit.simulator import SimulatorServer

from tests.conftest import DATASET, Workspace, assert_warehouse_matches, make_simulator, run_cli

TABLES = ("audit_logs", "audit_log_metadata", "subjects", "sync_windows")


def _fail_once_after_writing(monkeypatch: pytest.MonkeyPatch, table: str) -> list[str]:
    """dlt's DuckDB copy job writes its file, then raises as DuckDB does when a commit runs out
    of memory: once per phase (the test clears the list), for `table`'s first job."""
    job_class = _dlt_compat.duckdb_copy_job_class()
    original = job_class.run
    failed: list[str] = []

    def run(self: Any) -> None:
        original(self)
        if self.load_table_name == table and not failed:
            failed.append(self._file_path)
            raise RuntimeError(
                "TransactionContext Error: Failed to commit: could not allocate block of size "
                "256.0 KiB (32.0 MiB/32.0 MiB used)"
            )

    monkeypatch.setattr(job_class, "run", run)
    return failed


@pytest.mark.parametrize("table", TABLES)
def test_a_copy_job_retried_after_writing_leaves_no_row_twice(
    table: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = make_simulator(3_000, days=3, seed=31)
    failed = _fail_once_after_writing(monkeypatch, table)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0  # appended
        assert len(failed) == 1
        assert_warehouse_matches(workspace, sim.events())
        failed.clear()
        # everything again, merged through the staging tables
        assert run_cli(*workspace.sync_args(srv.url, "--start", "2015-01-01")) == 0
        # a re-read that changes no subject writes none
        assert len(failed) == (0 if table == "subjects" else 1)
    assert_warehouse_matches(workspace, sim.events())
    ((total, distinct),) = workspace.query(
        "select count(*), count(distinct (sync_id, filter_key, window_start, window_end))"
        f" from {DATASET}.sync_windows"
    )
    assert total == distinct, f"sync_windows holds duplicates: {total} rows, {distinct} keys"
