"""The plain source honours each option as `tfy-audit sync` does: `since` from dlt config starts
its first run where the CLI's does, and the state records it the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest
from tfy_audit import AuditLogFilters, truefoundry_audit
from tfy_audit._source.state import covered_until, first_start, stream_state
from tfy_audit.simulator import SimulatorServer

from tests.conftest import (
    DATASET,
    NOW,
    Workspace,
    assert_warehouse_matches,
    events_between,
    make_simulator,
    run_cli,
)


def _state(pipeline: dlt.Pipeline) -> Any:
    return stream_state(dict(pipeline.state["sources"]["truefoundry_audit"]), AuditLogFilters())


@pytest.mark.timeout(120)
def test_since_from_config_starts_the_plain_sources_first_run_as_the_clis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    sim = make_simulator(1_200, days=10, seed=23)
    since = (NOW - timedelta(days=3, hours=5)).replace(microsecond=0)
    expected = events_between(sim, since, NOW + timedelta(days=1))
    assert expected and len(expected) < len(sim.events())  # the config key cuts the history
    plain = Workspace(tmp_path / "plain.duckdb", tmp_path / "plain-pipelines")
    cli = Workspace(tmp_path / "cli.duckdb", tmp_path / "cli-pipelines")
    with SimulatorServer(sim) as srv:
        monkeypatch.setenv("TFY_HOST", srv.url)
        monkeypatch.setenv("SOURCES__TRUEFOUNDRY_AUDIT__SINCE", since.isoformat())
        pipeline = dlt.pipeline(
            pipeline_name="plain_since",
            destination=dlt.destinations.duckdb(str(plain.db)),
            dataset_name=DATASET,
            pipelines_dir=str(plain.pipelines_dir),
        )
        pipeline.run(truefoundry_audit(), loader_file_format="parquet")
        assert run_cli(*cli.sync_args(srv.url)) == 0
    assert_warehouse_matches(plain, expected)
    assert_warehouse_matches(cli, expected)
    entry = _state(pipeline)
    assert first_start(entry) == since
    cli_pipeline = dlt.attach("tfy_audit", pipelines_dir=str(cli.pipelines_dir))
    assert first_start(_state(cli_pipeline)) == since
    assert covered_until(entry) is not None and covered_until(entry) > since


@pytest.mark.timeout(120)
def test_the_plain_source_takes_since_and_lookback_in_sync_options_units(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A `timedelta` or the flag's text (`2h`, `4d`) for a duration, as SyncOptions takes them."""
    sim = make_simulator(600, days=6, seed=29)
    ws = Workspace(tmp_path / "units.duckdb", tmp_path / "units-pipelines")
    with SimulatorServer(sim) as srv:
        monkeypatch.setenv("TFY_HOST", srv.url)
        pipeline = dlt.pipeline(
            pipeline_name="plain_units",
            destination=dlt.destinations.duckdb(str(ws.db)),
            dataset_name=DATASET,
            pipelines_dir=str(ws.pipelines_dir),
        )
        before = datetime.now(UTC)
        pipeline.run(truefoundry_audit(since="4d", lookback=timedelta(hours=2)))
        after = datetime.now(UTC)
    started = first_start(_state(pipeline))
    assert started is not None
    assert before - timedelta(days=4, seconds=1) <= started <= after - timedelta(days=4)
    assert_warehouse_matches(ws, events_between(sim, started, NOW + timedelta(days=1)))


@pytest.mark.timeout(120)
def test_open_dataset_reads_a_synced_duckdb_dataset_with_its_views(
    tmp_path: Path, server: SimulatorServer, simulator: Any
) -> None:
    """docs/lakehouse.md's way into the data, through public names only."""
    from tfy_audit import DestinationOptions, UsageError, open_dataset

    ws = Workspace(tmp_path / "open.duckdb", tmp_path / "open-pipelines")
    target = DestinationOptions(db=str(ws.db), pipelines_dir=str(ws.pipelines_dir))
    with pytest.raises(UsageError, match="does not exist; run `tfy-audit sync` first"):
        open_dataset(target)
    assert run_cli(*ws.sync_args(server.url)) == 0
    con = open_dataset(target)
    try:
        ids = {r[0] for r in con.sql("select id from audit_logs").fetchall()}
        (days,) = con.sql("select count(*) from daily_activity").fetchone() or (0,)
        with pytest.raises(Exception, match="read-only"):
            con.execute("delete from audit_logs")
    finally:
        con.close()
    assert ids == {e["id"] for e in simulator.events()}
    assert days > 0
    with pytest.raises(UsageError, match="not postgres; query it with its own client"):
        open_dataset(DestinationOptions(destination="postgres"))


@pytest.mark.timeout(120)
def test_open_dataset_reads_a_filesystem_dataset_into_memory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: SimulatorServer, simulator: Any
) -> None:
    from tfy_audit import DestinationOptions, open_dataset

    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(tmp_path / "bucket"))
    monkeypatch.chdir(tmp_path)
    args = ["sync", "--host", server.url, "--destination", "filesystem", "--no-progress"]
    assert run_cli(*args) == 0
    con = open_dataset(DestinationOptions(destination="filesystem"))
    try:
        ids = {r[0] for r in con.sql("select id from audit_logs").fetchall()}
        (days,) = con.sql("select count(*) from daily_activity").fetchone() or (0,)
    finally:
        con.close()
    assert ids == {e["id"] for e in simulator.events()}
    assert days > 0
