"""PostgreSQL as a user meets it: no warning about the loader on every run, and `audit_logs`
indexed on `id` and `created_at`, made by tfy-audit itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from tfy_audit.simulator import SimulatorServer

from tests.conftest import make_simulator, run_cli_process
from tests.integration.test_destinations import postgres, postgres_dataset

__all__ = ["postgres_dataset"]  # the fixture, used by name


@pytest.mark.postgres
def test_postgres_runs_print_no_loader_warning_and_index_id_and_created_at(
    postgres_dataset: str, tmp_path: Path
) -> None:
    ds = postgres_dataset
    sim = make_simulator(1_500, days=5)
    args = [
        "sync", "--destination", "postgres", "--dataset", ds,
        "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(tmp_path), "--no-progress",
    ]  # fmt: skip
    with SimulatorServer(sim) as srv:
        for _ in range(2):
            proc = run_cli_process(*args, "--host", srv.url)
            assert proc.returncode == 0, proc.stderr
            assert "degrade performance" not in proc.stderr, proc.stderr
            assert "InsertValuesWriter" not in proc.stderr, proc.stderr
    with postgres() as cur:
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s "
            "AND tablename = 'audit_logs'",
            (ds,),
        )
        indexes = dict(cur.fetchall())
        cur.execute(f'SELECT count(*), count(DISTINCT id) FROM "{ds}".audit_logs')
        assert cur.fetchone() == (1_500, 1_500)
        # the README's kind of query finds its rows through the index
        cur.execute("SET enable_seqscan = off")
        recent = "created_at >= now() - interval '1 day'"
        cur.execute(f'EXPLAIN SELECT * FROM "{ds}".audit_logs WHERE {recent}')
        plan = " ".join(row[0] for row in cur.fetchall())
    assert indexes["audit_logs_id_idx"].endswith("USING btree (id)")
    assert indexes["audit_logs_created_at_idx"].endswith("USING btree (created_at)")
    assert "audit_logs_created_at_idx" in plan
