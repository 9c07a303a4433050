"""`tfy-audit verify` finds gaps by UTC day; `--repair` closes exactly those days."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from tfy_audit.simulator import Simulator, SimulatorServer, make_event

from tests.conftest import (
    DATASET,
    NOW,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
    run_cli_captured,
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


def test_verify_names_the_days_with_gaps_and_repair_closes_them(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
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

        proc = run_cli_captured(capfd, *verify_args(workspace, srv.url))
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
        assert run_cli(*verify_args(workspace, srv.url, "--action", action, "--ids")) == 0
        # the unfiltered view of the same warehouse is incomplete, and verify says so
        assert run_cli(*verify_args(workspace, srv.url, "--end", NOW.isoformat())) == 3


@pytest.mark.parametrize(
    ("start_inclusive", "end_inclusive"),
    [(True, False), (False, True), (False, False), (True, True)],
    ids=["[start,end)", "(start,end]", "(start,end)", "[start,end]"],
)
@pytest.mark.parametrize("victim_at", ["last-ms-of-the-day", "mid-day"])
def test_an_event_on_midnight_neither_hides_a_missing_one_nor_misplaces_it(
    start_inclusive: bool,
    end_inclusive: bool,
    victim_at: str,
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """However the service reads its bounds, an event missing from the warehouse is found on
    its own day and repaired, with an event on the next midnight that a padded day count may
    or may not include."""
    sim = make_simulator(
        2_000, days=5, start_inclusive=start_inclusive, end_inclusive=end_inclusive
    )
    midnight = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC) - timedelta(days=2)
    if victim_at == "mid-day":
        at = midnight - timedelta(hours=12)
    else:
        at = midnight - timedelta(milliseconds=1)
    on_midnight = make_event(random.Random("on"), midnight)
    victim = make_event(random.Random("victim"), at)
    sim.add_events([on_midnight, victim])
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        con = duckdb.connect(str(workspace.db))
        con.execute(f"delete from {DATASET}.audit_logs where id = ?", [victim["id"]])
        con.close()
        capsys.readouterr()
        assert run_cli(*verify_args(workspace, srv.url, "--json")) == 3
        found = json.loads(capsys.readouterr().out)
        days = {d["day"] for d in found["result"]["differing"]}
        assert str(at.date()) in days
        assert days <= {str(at.date()), str(midnight.date())}
        assert run_cli(*verify_args(workspace, srv.url, "--repair")) == 0
    assert_warehouse_matches(workspace, sim.events())


def test_verify_records_its_result_for_the_report(
    simulator: Simulator,
    server: SimulatorServer,
    workspace: Workspace,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(*workspace.sync_args(server.url)) == 0
    out = workspace.db.parent / "report.html"
    report_args = ["report", "--db", str(workspace.db), "--pipelines-dir"]
    report_args += [str(workspace.pipelines_dir), "--out", str(out)]
    assert run_cli(*report_args) == 0
    assert "never verified" in out.read_text(encoding="utf-8")

    assert run_cli(*verify_args(workspace, server.url)) == 0
    days = {ts(e["createdAt"]).date() for e in simulator.events()}
    rows = workspace.query(
        f"SELECT days, differing_days, missing, range_end FROM {DATASET}.verify_runs"
    )
    assert [r[:3] for r in rows] == [(len(days), 0, 0)]
    assert rows[0][3] > max(ts(e["createdAt"]) for e in simulator.events())
    capsys.readouterr()
    assert run_cli(*report_args) == 0
    page = out.read_text(encoding="utf-8")
    assert "never verified" not in page
    assert "every day matches</span></dd><dt>Verified range</dt>" in page
    assert f", {len(days)} days</dd>" in page


def test_verify_starts_where_the_first_sync_started_even_from_another_machine(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync --since 3d` skipped older history on purpose: a plain verify checks from the
    first sync's start, says so, and finds nothing to repair; a machine that holds only the
    destination (a fresh pipelines dir) reads the same start from it."""
    sim = make_simulator(2_000, days=10)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--since", "3d")) == 0
        (start,) = workspace.query(f"SELECT range_start FROM {DATASET}.sync_runs")[0]
        # verify works on whole milliseconds, the service's precision
        first = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
        capsys.readouterr()
        assert run_cli(*verify_args(workspace, srv.url)) == 0
        out = capsys.readouterr().out
        assert out.splitlines()[0] == (
            f"verify checks from {first.date().isoformat()} ({first.isoformat()}): "
            "where the first sync started (its --since)"
        )
        elsewhere = Workspace(workspace.db, tmp_path / "another-machine")
        assert run_cli(*verify_args(elsewhere, srv.url, "--json")) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["result"]["start"] == first.isoformat()
        assert result["first_day"] == {
            "day": first.date().isoformat(),
            "start": first.isoformat(),
            "why": "first_sync",
        }
        assert result["result"]["differing"] == []


def _day_start(day_offset: int) -> datetime:
    midnight = datetime(NOW.year, NOW.month, NOW.day, tzinfo=UTC)
    return midnight - timedelta(days=day_offset)


def test_verify_ids_finds_a_swapped_event_that_counts_miss_and_repair_loads_it(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """One event disappears from the service and another appears on the same day after the
    sync read it: counts are equal, so plain verify passes; `--ids` names the day and both
    ids (exit 3); `--repair` loads the newcomer and keeps the vanished one, never deleting."""
    sim = make_simulator(3_000, days=10)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        day = _day_start(4)
        on_day = sorted(
            e["id"] for e in sim.events() if day <= ts(e["createdAt"]) < day + timedelta(days=1)
        )
        vanished = on_day[0]
        newcomer = make_event(random.Random("newcomer"), day + timedelta(hours=7, seconds=3))
        assert sim.remove_events([vanished]) == [vanished]
        sim.add_events([newcomer])
        capsys.readouterr()
        assert run_cli(*verify_args(workspace, srv.url)) == 0  # counts cannot tell

        capsys.readouterr()
        sim.reset_stats()
        assert run_cli(*verify_args(workspace, srv.url, "--ids", "--json")) == 3
        found = json.loads(capsys.readouterr().out)["ids"]
        assert found["differing"] == [
            {
                "day": day.date().isoformat(),
                "service": len(on_day),
                "warehouse": len(on_day),
                "missing": [newcomer["id"]],
                "gone_from_service": [vanished],
                "held_on_another_day": [],
            }
        ]
        assert found["missing"] == 1 and found["gone_from_service"] == 1
        assert found["requests"] == sim.stats.total

        assert run_cli(*verify_args(workspace, srv.url, "--ids", "--repair")) == 0
        out = capsys.readouterr().out
        assert f"re-synced 1 day(s): {day.date().isoformat()}" in out
        assert (
            f"1 event(s) on 1 day(s) are gone from the service and kept in the warehouse: "
            f"{day.date().isoformat()} {vanished}"
        ) in out
        assert workspace.ids() == sim.ids() | {vanished}
        # gone from the service only: reported, kept, and no failure
        assert run_cli(*verify_args(workspace, srv.url, "--ids")) == 0
    rows = workspace.query(f"select count(*), count(distinct id) from {DATASET}.audit_logs")
    assert rows == [(len(sim.ids()) + 1, len(sim.ids()) + 1)]


def test_verify_ids_summarizes_thousands_of_ids_on_one_line_and_json_lists_them_all(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(3_000, days=30)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        con = duckdb.connect(str(workspace.db))
        lost = sorted(r[0] for r in con.execute(f"select id from {DATASET}.audit_logs").fetchall())
        lost = lost[::2]  # every other event, on every day
        con.execute(f"delete from {DATASET}.audit_logs where id in (select unnest(?))", [lost])
        con.close()
        days = sorted({ts(e["createdAt"]).date() for e in sim.events() if e["id"] in set(lost)})
        capsys.readouterr()
        assert run_cli(*verify_args(workspace, srv.url, "--ids")) == 3
        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert lines[-2] == f"  ... and {len(days) - 20} more day(s) (--json lists them all)"
        first = sorted(
            (ts(e["createdAt"]).date().isoformat(), e["id"])
            for e in sim.events()
            if e["id"] in set(lost)
        )[:5]
        assert lines[-1] == (
            f"{len(lost):,} event(s) on {len(days)} day(s) are missing in the warehouse: "
            + ", ".join(f"{d} {i}" for d, i in first)
            + f" (+{len(lost) - 5:,} more; --json lists them all)"
        )
        assert err.splitlines()[-1] == (
            f"tfy-audit: {len(days)} day(s) differ by id ({len(lost):,} event(s) missing in the "
            # every day of the range, consecutive: one range
            f"warehouse): {days[0].isoformat()}..{days[-1].isoformat()}; "
            "run `tfy-audit verify --ids --repair` to re-sync them"
        )
        assert run_cli(*verify_args(workspace, srv.url, "--ids", "--json")) == 3
        found = json.loads(capsys.readouterr().out)["ids"]
        assert sorted(i for d in found["differing"] for i in d["missing"]) == lost


def test_verify_of_state_without_the_record_starts_where_sync_runs_says_the_first_sync_did(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A pipeline synced by a version that kept no first start in its state: verify reads it
    from the run history (the first run that moved the mark) rather than checking from 2015."""
    import tfy_audit._source.state

    sim = make_simulator(1_500, days=8)
    with SimulatorServer(sim) as srv:
        with monkeypatch.context() as older:
            older.setattr(tfy_audit._source.state, "FIRST_START_KEY", "not_kept_by_older_versions")
            assert run_cli(*workspace.sync_args(srv.url, "--since", "2d")) == 0
        assert run_cli(*workspace.sync_args(srv.url)) == 0  # a later run: no record either
        (start,) = workspace.query(
            f"SELECT range_start FROM {DATASET}.sync_runs ORDER BY started_at LIMIT 1"
        )[0]
        first = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
        capsys.readouterr()
        assert run_cli(*verify_args(workspace, srv.url)) == 0
        assert capsys.readouterr().out.splitlines()[0] == (
            f"verify checks from {first.date().isoformat()} ({first.isoformat()}): "
            "where the first sync started (its --since), from the run history"
        )


def test_many_differing_days_are_summarised_not_listed(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    """A warehouse of one action's events, verified against all of them: nearly every day of
    70 differs. The error stays one short line and the table a screenful; --json has all."""
    sim = make_simulator(6_000, days=70)
    action = sim.events()[0]["action"]
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--action", action)) == 0
        args = verify_args(workspace, srv.url, "--start", "75d", "--end", NOW.isoformat())
        proc = run_cli_captured(capfd, *args)
        as_json = run_cli_captured(capfd, *args, "--json")
    assert proc.returncode == 3, proc.stderr
    every: dict[str, int] = {}
    kept: dict[str, int] = {}
    for e in sim.events():
        day = ts(e["createdAt"]).date().isoformat()
        every[day] = every.get(day, 0) + 1
        kept[day] = kept.get(day, 0) + (e["action"] == action)
    differing = sorted(day for day in every if every[day] != kept.get(day, 0))
    assert len(differing) > 40
    listed = json.loads(as_json.stdout)["result"]["differing"]
    assert [d["day"] for d in listed] == differing  # --json lists every one
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("tfy-audit:")]
    assert line.startswith(f"tfy-audit: {len(differing)} day(s) differ: {differing[0]}"), line
    # consecutive days as one range, e.g. 2026-09-28..2026-12-07
    assert line.endswith(f"{differing[-1]}; run `tfy-audit verify --repair` to re-sync them")
    assert len(line) < 200, line
    table = [x for x in proc.stdout.splitlines() if x.startswith("  20")]
    assert [x.split()[0] for x in table] == differing[:20]
    assert f"  ... and {len(differing) - 20} more day(s) (--json lists them all)" in proc.stdout
