"""The run history (`sync_runs`): one row per sync run, ok, incomplete, failed or interrupted,
with its figures, on DuckDB, PostgreSQL and the filesystem."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt
import pytest
import tfy_audit
from tfy_audit._core.options import DestinationOptions
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._warehouse.run_log import RunRecorder, pending_dir
from tfy_audit.simulator import Simulator, SimulatorServer, dense_burst, format_ts

from tests.conftest import NOW, Workspace, make_simulator, ts
from tests.integration.test_destinations import (
    cli_output,
    parquet,
    postgres,
    postgres_dataset,  # noqa: F401 (a fixture)
    query,
)

COLUMNS = (
    "run_id",
    "status",
    "started_at",
    "finished_at",
    "range_start",
    "range_end",
    "audit_log_rows",
    "rows",
    "new_rows",
    "events_read",
    "requests",
    "retries",
    "windows",
    "incomplete_windows",
    "chunks",
    "mark_before",
    "mark_after",
    "filter_key",
    "filters",
    "error",
    "tfy_audit_version",
    "dlt_version",
    "hostname",
)

Runs = list[dict[str, Any]]


def utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def as_dicts(rows: list[tuple[Any, ...]]) -> Runs:
    runs = [dict(zip(COLUMNS, (utc(v) for v in row), strict=True)) for row in rows]
    return sorted(runs, key=lambda r: r["started_at"])


def sync_json(*args: str) -> tuple[int, dict[str, Any] | None]:
    code, out = cli_output(*args, "--json")
    return code, (json.loads(out) if out.strip() else None)


def three_runs(sim: Simulator, url: str, sync: Callable[..., list[str]]) -> list[dict[str, Any]]:
    """Two scheduled-style runs (new events arrive between them), then one the service refuses
    (a wrong key: HTTP 401). Returns the two runs' summaries."""
    code, first = sync_json(*sync(url))
    assert code == 0 and first is not None
    # three late events, created just before the mark: the next run's lookback re-reads them
    mark = datetime.fromisoformat(first["covered_until"])
    late = [dict(e, id=f"late-{i}") for i, e in enumerate(sim.events()[-3:])]
    for i, event in enumerate(late):
        event["createdAt"] = format_ts(mark - timedelta(seconds=1, milliseconds=i))
    sim.add_events(late)
    code, second = sync_json(*sync(url))
    assert code == 0 and second is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TFY_API_KEY", "not-the-key")
        code, _ = sync_json(*sync(url))
    assert code == 1
    return [first, second]


EVENT_TABLES = ("audit_logs", "audit_log_metadata")


def assert_three_rows(runs: Runs, summaries: list[dict[str, Any]], *, merges: bool) -> None:
    assert [r["status"] for r in runs] == ["ok", "ok", "failed"]
    # the first run appends every event: all new; the second re-reads its lookback, where
    # only a destination that cannot merge (it skips the ids it holds) knows what is new
    first_rows = {t: summaries[0]["rows"][t] for t in EVENT_TABLES}
    assert json.loads(runs[0]["new_rows"]) == first_rows
    second_rows = {t: summaries[1]["rows"][t] for t in EVENT_TABLES}
    assert json.loads(runs[1]["new_rows"]) == ({} if merges else second_rows)
    if not merges:
        assert second_rows["audit_logs"] == 3  # the late events, and nothing re-read
    assert json.loads(runs[2]["new_rows"]) == {}
    assert len({r["run_id"] for r in runs}) == 3
    first, second = summaries
    for run, summary in zip(runs, summaries, strict=False):
        assert run["range_start"] == datetime.fromisoformat(summary["start"])
        assert run["range_end"] == datetime.fromisoformat(summary["end"])
        assert json.loads(run["rows"]) == summary["rows"]
        assert run["audit_log_rows"] == summary["rows"]["audit_logs"]
        assert run["events_read"] == summary["events_read"]
        assert run["requests"] == summary["requests"]
        assert run["retries"] == summary["retries"]
        assert run["windows"] == summary["windows"]
        assert run["chunks"] == summary["chunks"]
        assert run["incomplete_windows"] == 0
        assert run["mark_after"] == datetime.fromisoformat(summary["covered_until"])
        assert run["error"] is None
        assert run["started_at"] < run["finished_at"]
    assert runs[0]["mark_before"] is None
    assert runs[1]["mark_before"] == datetime.fromisoformat(first["covered_until"])
    failed = runs[2]
    assert failed["mark_before"] == datetime.fromisoformat(second["covered_until"])
    assert failed["mark_after"] is None
    assert "HTTP 401" in failed["error"] and "not-the-key" not in failed["error"]
    assert failed["events_read"] == 0 and failed["chunks"] == 0 and failed["requests"] >= 1
    assert failed["started_at"] < failed["finished_at"]
    for run in runs:
        assert run["filter_key"] == "all" and json.loads(run["filters"]) == {}
        assert run["tfy_audit_version"] == tfy_audit.__version__
        assert run["dlt_version"] == dlt.__version__
        assert run["hostname"] == socket.gethostname()


def test_duckdb_keeps_one_row_per_run(workspace: Workspace) -> None:
    sim = make_simulator(800, days=3)
    with SimulatorServer(sim) as srv:
        summaries = three_runs(sim, srv.url, workspace.sync_args)
    cols = ", ".join(COLUMNS)
    runs = as_dicts(workspace.query(f"select {cols} from truefoundry_audit.sync_runs"))
    assert_three_rows(runs, summaries, merges=True)
    assert runs[0]["audit_log_rows"] == 800 and runs[1]["audit_log_rows"] >= 3
    # every record reached the warehouse: none is left pending
    options = DestinationOptions(db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir))
    assert list(pending_dir(options).glob("*")) == []


def test_a_run_killed_before_it_could_record_itself_is_recorded_as_interrupted(
    workspace: Workspace,
) -> None:
    sim = make_simulator(300, days=2)
    target = DestinationOptions(db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir))
    with SimulatorServer(sim) as srv:
        assert cli_output(*workspace.sync_args(srv.url))[0] == 0
        # what `kill -9` leaves: the record written at the start, never finished
        killed = RunRecorder(target, AuditLogFilters()).__enter__()
        assert cli_output(*workspace.sync_args(srv.url))[0] == 0
    rows = workspace.query(
        "select run_id, status, finished_at, error from truefoundry_audit.sync_runs "
        "order by started_at"
    )
    assert [(r[1], r[2] is None) for r in rows] == [
        ("ok", False),
        ("interrupted", True),
        ("ok", False),
    ]
    assert rows[1][0] == killed.record.run_id and rows[1][3] is None
    assert list(pending_dir(target).glob("*")) == []


def test_an_incomplete_run_is_recorded_and_its_windows_stay_open_in_status(
    workspace: Workspace,
) -> None:
    """1,500 events in one millisecond and a service that pages 1,000 deep: the run is
    `incomplete`, and `status` lists its unread windows until a run reads them."""
    sim = make_simulator(1_000, days=5, max_offset=1_000)
    burst_at = NOW - timedelta(days=2)
    sim.add_events(dense_burst(burst_at, 1_500, seed=9))
    status = ("status", "--db", str(workspace.db), "--pipelines-dir", "unused", "--json")
    with SimulatorServer(sim) as srv:
        code, summary = sync_json(*workspace.sync_args(srv.url, "--max-offset", "1000"))
        assert code == 3 and summary is not None
        ((state, incomplete),) = workspace.query(
            "select status, incomplete_windows from truefoundry_audit.sync_runs"
        )
        assert (state, incomplete) == ("incomplete", len(summary["incomplete_windows"]))
        code, out = cli_output(*status)
        assert code == 0
        (item,) = json.loads(out)["filter_sets"]
        opened = [
            f"[{format_ts(ts(w['start']))}, {format_ts(ts(w['end']))})"
            for w in item["open_incomplete_windows"]
        ]
        assert opened == sorted(summary["incomplete_windows"])
        assert item["last_run"]["status"] == "incomplete"
        assert item["last_successful_run"] is None
        sim.config.max_offset = None
        assert sync_json(*workspace.sync_args(srv.url))[0] == 0
        code, out = cli_output(*status)
    (item,) = json.loads(out)["filter_sets"]
    assert item["open_incomplete_windows"] == []
    assert item["last_run"]["status"] == "ok"
    assert item["last_successful_run"] == item["last_run"]


@pytest.mark.postgres
def test_postgres_keeps_one_row_per_run(postgres_dataset: str, tmp_path: Path) -> None:  # noqa: F811
    ds = postgres_dataset

    def sync(url: str) -> list[str]:
        return [
            "sync", "--host", url, "--destination", "postgres", "--dataset", ds,
            "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(tmp_path / "p"),
            "--no-progress",
        ]  # fmt: skip

    sim = make_simulator(800, days=3)
    with SimulatorServer(sim) as srv:
        summaries = three_runs(sim, srv.url, sync)
    with postgres() as cur:
        cur.execute(f'select {", ".join(COLUMNS)} from "{ds}".sync_runs')
        runs = as_dicts(cur.fetchall())
    assert_three_rows(runs, summaries, merges=True)


@pytest.mark.postgres
def test_a_run_that_cannot_reach_postgres_is_recorded_by_the_next(
    postgres_dataset: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds = postgres_dataset
    args = (
        "--destination", "postgres", "--dataset", ds, "--pipeline-name", f"pg_{ds}",
        "--pipelines-dir", str(tmp_path / "p"), "--no-progress",
    )  # fmt: skip
    sim = make_simulator(300, days=2)
    with SimulatorServer(sim) as srv:
        with pytest.MonkeyPatch.context() as mp:
            # nothing listens on port 1
            mp.setenv("DESTINATION__POSTGRES__CREDENTIALS", "postgresql://u:pw@127.0.0.1:1/test")
            assert cli_output("sync", "--host", srv.url, *args)[0] == 1
        target = DestinationOptions(
            "postgres", dataset=ds, pipeline_name=f"pg_{ds}", pipelines_dir=str(tmp_path / "p")
        )
        (pending,) = pending_dir(target).glob("*.json")
        assert json.loads(pending.read_text())["status"] == "failed"
        assert cli_output("sync", "--host", srv.url, *args)[0] == 0
    with postgres() as cur:
        cur.execute(f'select status, error, events_read from "{ds}".sync_runs order by started_at')
        rows = cur.fetchall()
    assert [r[0] for r in rows] == ["failed", "ok"]
    assert "127.0.0.1:1" in rows[0][1] or "connect" in rows[0][1].lower()
    assert rows[0][2] == 0 and rows[1][2] == 300
    assert list(pending_dir(target).glob("*")) == []


def test_filesystem_keeps_one_row_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = tmp_path / "bucket"
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(bucket))
    monkeypatch.setenv("RUNTIME__LOG_LEVEL", "ERROR")  # dlt warns about the append fallback

    def sync(url: str) -> list[str]:
        return [
            "sync", "--host", url, "--destination", "filesystem", "--dataset", "fs_runs",
            "--pipeline-name", "fs_runs", "--pipelines-dir", str(tmp_path / "p"),
            "--no-progress",
        ]  # fmt: skip

    sim = make_simulator(500, days=2)
    with SimulatorServer(sim) as srv:
        summaries = three_runs(sim, srv.url, sync)
    rows = query(f"select {', '.join(COLUMNS)} from {parquet(bucket, 'fs_runs', 'sync_runs')}")
    assert_three_rows(as_dicts(rows), summaries, merges=False)
    # and `status` reads them back
    code, out = cli_output(
        "status", "--destination", "filesystem", "--dataset", "fs_runs",
        "--pipeline-name", "fs_runs", "--json",
    )  # fmt: skip
    assert code == 0
    (item,) = json.loads(out)["filter_sets"]
    assert item["last_run"]["status"] == "failed"
    assert (
        item["last_successful_run"]["run_id"]
        == sorted(as_dicts(rows), key=lambda r: r["started_at"])[1]["run_id"]
    )
    assert ts(item["high_water_mark"]) == datetime.fromisoformat(summaries[1]["covered_until"])


def test_a_record_written_twice_stays_one_row(workspace: Workspace) -> None:
    """A kill between writing the pending records and deleting them writes them again."""
    from tfy_audit._warehouse.destination import make_pipeline
    from tfy_audit._warehouse.run_log import RunRecord, load_records

    target = DestinationOptions(db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir))
    record = RunRecord("r1", NOW, "all", {}, status="failed", error="first")
    pipeline = make_pipeline(target)
    load_records(pipeline, target, [record])
    record.error = "second"
    load_records(pipeline, target, [record, RunRecord("r2", NOW, "all", {})])
    rows = workspace.query("select run_id, status, error from truefoundry_audit.sync_runs")
    assert sorted(rows) == [("r1", "failed", "second"), ("r2", "interrupted", None)]


def test_ctrl_c_keeps_the_record_for_the_next_run(tmp_path: Path) -> None:
    target = DestinationOptions(db=str(tmp_path / "a.duckdb"), pipelines_dir=str(tmp_path / "p"))
    with pytest.raises(KeyboardInterrupt), RunRecorder(target, AuditLogFilters()) as recorder:
        raise KeyboardInterrupt
    (path,) = pending_dir(target).glob("*.json")
    saved = json.loads(path.read_text())
    assert (saved["run_id"], saved["status"], saved["error"]) == (
        recorder.record.run_id,
        "interrupted",
        "KeyboardInterrupt:",
    )
    assert saved["finished_at"] is not None
    assert not (tmp_path / "a.duckdb").exists()  # nothing was written to the destination


def test_a_sync_runs_table_without_the_clock_offset_gets_it(workspace: Workspace) -> None:
    """A warehouse whose `sync_runs` an earlier version made (no `clock_offset_seconds`): the
    next run adds the column and records its offset; the earlier rows keep theirs, null."""
    import duckdb

    sim = make_simulator(200, days=1)
    with SimulatorServer(sim) as srv:
        assert cli_output(*workspace.sync_args(srv.url))[0] == 0
        con = duckdb.connect(str(workspace.db))
        try:
            con.execute("alter table truefoundry_audit.sync_runs drop column clock_offset_seconds")
        finally:
            con.close()
        assert cli_output(*workspace.sync_args(srv.url))[0] == 0
    rows = workspace.query(
        "select status, clock_offset_seconds from truefoundry_audit.sync_runs order by started_at"
    )
    assert rows == [("ok", None), ("ok", 0.0)]


@pytest.mark.postgres
def test_a_postgres_sync_runs_table_without_the_clock_offset_gets_it(
    postgres_dataset: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    ds = postgres_dataset
    args = (
        "--destination", "postgres", "--dataset", ds, "--pipeline-name", f"pg_{ds}",
        "--pipelines-dir", str(tmp_path / "p"), "--no-progress",
    )  # fmt: skip
    sim = make_simulator(200, days=1)
    with SimulatorServer(sim) as srv:
        assert cli_output("sync", "--host", srv.url, *args)[0] == 0
        with postgres() as cur:
            cur.execute(f'alter table "{ds}".sync_runs drop column clock_offset_seconds')
        assert cli_output("sync", "--host", srv.url, *args)[0] == 0
    with postgres() as cur:
        cur.execute(
            f'select status, clock_offset_seconds from "{ds}".sync_runs order by started_at'
        )
        rows = cur.fetchall()
    assert rows == [("ok", None), ("ok", 0.0)]
