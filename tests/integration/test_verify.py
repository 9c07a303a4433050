"""`tfy-audit verify` finds gaps by UTC day; `--repair` closes exactly those days."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from pipelines.simulator import Simulator, SimulatorServer, make_event
from tests.conftest import (
    DATASET,
    NOW,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
    run_cli_process,
    ts,
)


def verify_args(ws: Workspace, url: str, *extra: str) -> list[str]:
    return [
        "verify",
        "--host",
        url,
        "--db",
        str(ws.db),
        "--pipelines-dir",
        str(ws.pipelines_dir),
        *extra,
    ]


def test_verify_passes_on_a_complete_warehouse(
    simulator: Simulator,
    server: SimulatorServer,
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(*workspace.sync_args(server.url)) == 0
    capsys.readouterr()
    assert run_cli(*verify_args(workspace, server.url, "--json")) == 0
    result = json.loads(capsys.readouterr().out)["result"]
    days = {ts(e["createdAt"]).date() for e in simulator.events()}
    assert result["differing"] == []
    assert result["days"] == len(days)


def test_verify_names_the_days_with_gaps_and_repair_closes_them(workspace: Workspace) -> None:
    sim = make_simulator(4_000, days=20)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        # a gap of two kinds: events that reached the service long after the lookback...
        late_day = (NOW - timedelta(days=6)).date()
        at = datetime(late_day.year, late_day.month, late_day.day, 13, tzinfo=UTC)
        import random

        sim.add_events(
            [make_event(random.Random(f"late{i}"), at + timedelta(seconds=i)) for i in range(7)]
        )
        # ...and rows lost from the warehouse on another day
        lost_day = (NOW - timedelta(days=12)).date()
        con = duckdb.connect(str(workspace.db))
        con.execute(
            f"delete from {DATASET}.audit_logs where id in (select id from {DATASET}.audit_logs "
            f"where cast(timezone('UTC', created_at) as date) = ? order by id limit 5)",
            [lost_day],
        )
        con.close()

        proc = run_cli_process(*verify_args(workspace, srv.url))
        assert proc.returncode == 3, proc.stderr
        named = proc.stderr.strip().splitlines()[-1]
        assert named == (
            f"tfy-audit: 2 day(s) differ: {lost_day.isoformat()}, {late_day.isoformat()}; "
            "run `tfy-audit verify --repair` to re-sync them"
        )
        assert f"{late_day.isoformat()}" in proc.stdout and "7" in proc.stdout

        assert run_cli(*verify_args(workspace, srv.url, "--repair")) == 0
        assert run_cli(*verify_args(workspace, srv.url)) == 0
    assert_warehouse_matches(workspace, sim.events())


def test_verify_with_filters_compares_only_matching_events(workspace: Workspace) -> None:
    sim = make_simulator(2_000, days=10)
    action = sim.events()[0]["action"]
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--action", action)) == 0
        assert run_cli(*verify_args(workspace, srv.url, "--action", action)) == 0
        # the unfiltered view of the same warehouse is incomplete, and verify says so
        assert run_cli(*verify_args(workspace, srv.url, "--end", NOW.isoformat())) == 3
