"""`tfy-audit status`: freshness per filter set, read from the destination only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._cli.commands.status import format_lag
from tfy_audit._core.settings import HISTORY_START
from tfy_audit.simulator import SimulatorServer, format_ts

from tests.conftest import NOW, Workspace, make_simulator, ts
from tests.integration.test_destinations import (
    cli_output,
    postgres,
    postgres_dataset,  # noqa: F401 (a fixture)
)

DOCUMENT_FIELDS = {
    # the fields every command's --json document has (cli.py), then the status's own
    "command",
    "exit_code",
    "error",
    "status",
    "checked_at",
    "destination",
    "dataset",
    "pipeline_name",
    "max_lag_seconds",
    "filter_sets",
    "last_verify",
    "anomalies",
}
FILTER_SET_FIELDS = {
    "covered_ranges",
    "filter_key",
    "filters",
    "high_water_mark",
    "lag_seconds",
    "last_run",
    "last_successful_run",
    "open_incomplete_windows",
    "covered",
    "first_sync_start",
}
RUN_FIELDS = {
    "run_id",
    "started_at",
    "finished_at",
    "status",
    "audit_log_rows",
    "events_read",
    "error",
}


def status(ws: Workspace, *extra: str) -> tuple[int, dict[str, Any]]:
    code, out = cli_output("status", "--db", str(ws.db), "--json", *extra)
    return code, json.loads(out)


def synced(ws: Workspace, url: str, *extra: str) -> dict[str, Any]:
    code, out = cli_output(*ws.sync_args(url, "--json", *extra))
    assert code == 0
    parsed: dict[str, Any] = json.loads(out)
    return parsed


def test_fresh_warehouse_exits_0_with_every_field(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(600, days=3)
    with SimulatorServer(sim) as srv:
        summary = synced(workspace, srv.url)
        sim.reset_stats()
        capsys.readouterr()
        before = datetime.now(UTC)
        code, doc = status(workspace, "--max-lag", "2h")
        after = datetime.now(UTC)
        assert sim.stats.total == 0  # the service is not asked
    assert code == 0 and capsys.readouterr().err == ""
    assert set(doc) == DOCUMENT_FIELDS
    assert doc["status"] == "ok"
    assert (doc["destination"], doc["dataset"], doc["pipeline_name"]) == (
        "duckdb",
        "truefoundry_audit",
        "tfy_audit",
    )
    assert doc["max_lag_seconds"] == 7200.0
    assert before <= ts(doc["checked_at"]) <= after
    assert doc["last_verify"] is None
    (item,) = doc["filter_sets"]
    assert set(item) == FILTER_SET_FIELDS
    mark = ts(summary["covered_until"])
    assert (item["filter_key"], item["filters"]) == ("all", {})
    assert ts(item["high_water_mark"]) == mark
    assert item["lag_seconds"] == round((ts(doc["checked_at"]) - mark).total_seconds(), 3)
    assert item["open_incomplete_windows"] == []
    assert item["covered"] == {"start": HISTORY_START.isoformat(), "end": mark.isoformat()}
    assert item["first_sync_start"] == HISTORY_START.isoformat()
    (run_id, started, finished) = workspace.query(
        "select run_id, started_at, finished_at from truefoundry_audit.sync_runs"
    )[0]
    assert item["last_run"] == {
        "run_id": run_id,
        "started_at": started.astimezone(UTC).isoformat(),
        "finished_at": finished.astimezone(UTC).isoformat(),
        "status": "ok",
        "audit_log_rows": 600,
        "events_read": 600,
        "error": None,
    }
    assert set(item["last_run"]) == RUN_FIELDS
    assert item["last_successful_run"] == item["last_run"]


def test_last_verify_is_shown(workspace: Workspace) -> None:
    sim = make_simulator(400, days=3)
    with SimulatorServer(sim) as srv:
        synced(workspace, srv.url)
        assert cli_output("verify", "--host", srv.url, "--db", str(workspace.db))[0] == 0
    code, doc = status(workspace)
    assert code == 0
    ((verified_at, start, end, days),) = workspace.query(
        "select verified_at, range_start, range_end, days from truefoundry_audit.verify_runs"
    )
    assert doc["last_verify"] == {
        "verified_at": verified_at.astimezone(UTC).isoformat(),
        "range_start": start.astimezone(UTC).isoformat(),
        "range_end": end.astimezone(UTC).isoformat(),
        "days": days,
        "differing_days": 0,
        "missing": 0,
    }


def test_a_warehouse_the_service_moved_past_exits_3_with_one_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last run ended three hours ago (a mark in the past); the service has events since."""
    sim = make_simulator(3_000, days=10)
    with SimulatorServer(sim) as srv:
        summary = synced(workspace, srv.url, "--end", format_ts(NOW - timedelta(hours=3)))
        mark = ts(summary["covered_until"])
        capsys.readouterr()
        code, doc = status(workspace, "--max-lag", "2h")
        err = capsys.readouterr().err
        assert code == 3 and doc["status"] == "stale"
        assert err.count("\n") == 1
        lag = doc["filter_sets"][0]["lag_seconds"]
        assert lag > 3 * 3600
        assert lag < 4 * 3600
        assert err == (
            f"tfy-audit: stale: filter set 'all' is {format_lag(lag)} behind (mark "
            f"{mark.isoformat()}), {format_lag(lag - 7200)} more than --max-lag 2h; check "
            "that the scheduled sync runs and succeeds (sync_runs)\n"
        )
        assert format_lag(lag).startswith("3h ")
        # without --max-lag, status only reports
        assert status(workspace)[0] == 0
        # --check-service: one count and one page, and exactly the events after the mark
        sim.reset_stats()
        code, doc = status(workspace, "--check-service", "--host", srv.url)
        assert sim.stats.total == 2
    after = [e for e in sim.events() if ts(e["createdAt"]) >= mark]
    assert 0 < len(after) <= 1000
    assert code == 0
    assert doc["filter_sets"][0]["service"] == {
        "events_after_mark": len(after),
        "newest_event_at": max(ts(e["createdAt"]) for e in after).isoformat(),
    }


def test_a_missing_database_is_one_line_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "nowhere" / "audit.duckdb"
    code, out = cli_output("status", "--db", str(db), "--max-lag", "1h")
    err = capsys.readouterr().err
    assert (code, out) == (2, "")
    assert (
        err == f"tfy-audit: error: {db} does not exist; run `tfy-audit sync` first or pass --db\n"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_a_postgres_dataset_never_synced_is_one_line_and_stays_absent(
    postgres_dataset: str,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = cli_output("status", "--destination", "postgres", "--dataset", postgres_dataset)
    err = capsys.readouterr().err
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "run `tfy-audit sync` first" in err
    with postgres() as cur:
        cur.execute(
            "select count(*) from information_schema.schemata where schema_name like %s",
            (f"{postgres_dataset}%",),
        )
        assert cur.fetchone() == (0,)


@pytest.mark.postgres
def test_postgres_status_after_syncs(postgres_dataset: str, tmp_path: Path) -> None:  # noqa: F811
    args = (
        "--destination", "postgres", "--dataset", postgres_dataset,
        "--pipeline-name", f"pg_{postgres_dataset}",
    )  # fmt: skip
    sim = make_simulator(300, days=2)
    with SimulatorServer(sim) as srv:
        code, out = cli_output(
            "sync", "--host", srv.url, *args, "--pipelines-dir", str(tmp_path), "--json"
        )
        assert code == 0
        mark = json.loads(out)["covered_until"]
    code, out = cli_output("status", *args, "--json", "--max-lag", "1h")
    assert code == 0
    (item,) = json.loads(out)["filter_sets"]
    assert item["high_water_mark"] == mark
    assert item["last_run"]["status"] == "ok" and item["last_run"]["audit_log_rows"] == 300


def test_status_shows_where_the_first_sync_started(workspace: Workspace) -> None:
    """`sync --since` skipped older history on purpose; status says from when the warehouse
    holds events, read from the destination alone."""
    sim = make_simulator(600, days=6)
    with SimulatorServer(sim) as srv:
        summary = synced(workspace, srv.url, "--since", "2d")
    first = ts(summary["first_run_start"])
    code, doc = status(workspace)
    assert code == 0
    (item,) = doc["filter_sets"]
    assert ts(item["first_sync_start"]) == first
    code, out = cli_output("status", "--db", str(workspace.db))
    assert code == 0
    assert (
        f"  first sync started: {first.isoformat()} (its --since; older events are not loaded)"
        in out.splitlines()
    )


def test_status_of_state_without_the_record_reads_the_first_start_from_sync_runs(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State written by a version that kept no first start: status (and report) read it from
    the run history, the first run that moved the mark."""
    import tfy_audit._source.state

    sim = make_simulator(600, days=6)
    with SimulatorServer(sim) as srv, monkeypatch.context() as older:
        older.setattr(tfy_audit._source.state, "FIRST_START_KEY", "not_kept_by_older_versions")
        summary = synced(workspace, srv.url, "--since", "2d")
    code, doc = status(workspace)
    assert code == 0
    (item,) = doc["filter_sets"]
    assert ts(item["first_sync_start"]) == ts(summary["first_run_start"])
    out = workspace.db.parent / "report.html"
    code, _ = cli_output("report", "--db", str(workspace.db), "--out", str(out))
    assert code == 0
    first = ts(summary["first_run_start"])
    page = out.read_text(encoding="utf-8")
    assert f"<dt>History from (UTC)</dt><dd>{first:%Y-%m-%d %H:%M:%S} " in page


def test_status_shows_the_ranges_read_and_a_one_off_names_what_it_left(
    workspace: Workspace,
) -> None:
    """`--since 30d`, then a one-off week two months back: status once said `covered: <the
    one-off's start> .. <mark>` although the month between was never read."""
    sim = make_simulator(4_000, days=80)
    start = (NOW - timedelta(days=67)).replace(hour=0, minute=0, second=0)
    end = start + timedelta(days=7)
    with SimulatorServer(sim) as srv:
        first = synced(workspace, srv.url, "--since", "30d")
        code, text = cli_output(
            *workspace.sync_args(srv.url, "--start", start.isoformat(), "--end", end.isoformat())
        )
        assert code == 0
        again = synced(workspace, srv.url)  # a plain sync: the mark moves on, nothing new
    since = ts(first["first_run_start"])
    assert ts(first["start"]) == since
    mark = ts(again["covered_until"])
    assert mark >= ts(first["covered_until"])
    # the one-off's summary names the range it left unread, and how to read it
    assert (
        f"  not read: {end.isoformat()} .. {since.isoformat()} (between this range and what "
        f"the syncs read); `tfy-audit sync --start {end.isoformat()} --end "
        f"{since.isoformat()}` reads it"
    ) in text.splitlines(), text
    code, doc = status(workspace)
    assert code == 0
    (item,) = doc["filter_sets"]
    assert item["covered_ranges"] == [
        {"start": start.isoformat(), "end": end.isoformat()},
        {"start": since.isoformat(), "end": mark.isoformat()},
    ]
    assert item["covered"] == {"start": since.isoformat(), "end": mark.isoformat()}
    code, plain = cli_output("status", "--db", str(workspace.db))
    assert (
        f"  covered: {start.isoformat()} .. {end.isoformat()}, {since.isoformat()} .. "
        f"{mark.isoformat()} (not read: {end.isoformat()} .. {since.isoformat()})"
    ) in plain.splitlines(), plain
