"""Nothing lost, nothing doubled: the hard cases, each asserting the exact set of ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from typing import Any

import duckdb
import pytest
from tfy_audit._engine import loader
from tfy_audit._service.planning import Chunk, chunk_plan
from tfy_audit.simulator import Simulator, SimulatorServer, dense_burst, format_ts, make_event

from tests.conftest import (
    API_KEY,
    DATASET,
    NOW,
    REPO,
    SERVICE_CLOCK_AHEAD,
    WALL_CLOCK,
    Workspace,
    assert_warehouse_matches,
    events_between,
    make_simulator,
    run_cli,
    run_cli_process,
    run_crashing_cli,
    sync_with_quick_retries,
    ts,
)


def test_thousands_of_events_in_one_millisecond_on_a_window_edge(workspace: Workspace) -> None:
    sim = make_simulator(1_000)
    edge = NOW - timedelta(hours=6)
    sim.add_events(dense_burst(edge, 3_000, seed=4))
    with SimulatorServer(sim) as srv:
        # the burst lies exactly on the end of the first run and the start of the next
        assert run_cli(*workspace.sync_args(srv.url, "--end", format_ts(edge))) == 0
        assert_warehouse_matches(
            workspace, [e for e in sim.events() if ts(e["createdAt"]) < edge], exact_ids=False
        )
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        # and exactly on the start of an explicit range, with windows split around it
        assert (
            run_cli(
                *workspace.sync_args(srv.url, "--start", format_ts(edge), "--max-offset", "5000")
            )
            == 0
        )
    assert_warehouse_matches(workspace, sim.events())


def test_a_window_denser_than_max_offset_is_split_until_it_fits(workspace: Workspace) -> None:
    sim = make_simulator(2_000, max_offset=1_000)
    minute = NOW - timedelta(days=2)
    burst = [
        make_event(_rng(i), minute + timedelta(milliseconds=(i * 7) % 60_000)) for i in range(6_000)
    ]
    sim.add_events(burst)
    with SimulatorServer(sim) as srv:
        args = ("--max-offset", "1000", "--page-size", "250")
        assert run_cli(*workspace.sync_args(srv.url, *args)) == 0
    assert_warehouse_matches(workspace, sim.events())
    # the service never had to page past its limit
    assert sim.stats.by_status.get(400, 0) == 0


def test_a_service_limit_lower_than_configured_is_learnt(workspace: Workspace) -> None:
    sim = make_simulator(3_000, max_offset=600, order="shuffled")
    with SimulatorServer(sim) as srv:
        # two connections: pages at deeper offsets are still queued when the limit is learnt
        args = ("--page-size", "200", "--concurrency", "2")
        assert run_cli(*workspace.sync_args(srv.url, *args)) == 0
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize("order", ["asc", "desc", "shuffled"])
def test_events_inserted_while_paging(order: str, workspace: Workspace) -> None:
    sim = make_simulator(3_000, order=order)
    inserted: list[dict[str, Any]] = []
    lock = threading.Lock()

    def insert_into_requested_window(s: Simulator, params: dict[str, str]) -> None:
        # while a window is being paged, new events appear inside it (late arrivals) and after
        # the run's end (new activity); both shift offset-paged results
        if params.get("metric") != "list" or params.get("offset", "0") == "0":
            return
        with lock:
            if len(inserted) >= 60:
                return
            lo, hi = ts(params["start"]), ts(params["end"])
            mid = lo + (hi - lo) / 2
            new = [make_event(_rng(len(inserted) + k), mid) for k in range(3)]
            new.append(make_event(_rng(10_000 + len(inserted)), NOW - timedelta(minutes=30)))
            inserted.extend(new)
        s.add_events(new)

    sim.on_request = insert_into_requested_window
    with SimulatorServer(sim) as srv:
        run_end = NOW - timedelta(hours=1)
        args = ("--page-size", "100", "--max-offset", "800", "--end", format_ts(run_end))
        assert run_cli(*workspace.sync_args(srv.url, *args)) == 0
        assert len(inserted) >= 20
        assert_warehouse_matches(
            workspace, events_between(sim, NOW - timedelta(days=3650), run_end)
        )
        sim.on_request = None
        assert run_cli(*workspace.sync_args(srv.url)) == 0
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize("chunk_events", ["500000", "900", "400"])
def test_an_event_moved_to_another_window_while_read_is_loaded_once(
    chunk_events: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service serves an event in one window, then (its createdAt changed) in another
    window of the same chunk, on another day, an hour before the chunk ends: the chunk holds
    its id twice, which the sync notices and re-merges away, and the re-merge of that last day
    stops at the chunk's end (past it, the next chunk appends what it reads)."""
    sim = make_simulator(3_000)
    chosen: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    served = threading.Event()
    plans: list[list[Chunk]] = []

    def record_plan(*args: Any, **kwargs: Any) -> list[Chunk]:
        plans.append(chunk_plan(*args, **kwargs))
        return plans[-1]

    monkeypatch.setattr(loader, "chunk_plan", record_plan)

    def chunk_of(when: datetime) -> Chunk:
        (chunk,) = [c for c in plans[0] if c.start <= when < c.end]
        return chunk

    def choose(after: datetime) -> dict[str, Any]:
        """An event not read yet that an hour before its chunk's end is in a later window of
        the chunk, on a later day. Chosen once the chunks are known: where they end depends on
        the time of day the test runs, as the history ends at its start."""
        for event in sim.events()[1_000:]:
            then = ts(event["createdAt"])
            if then <= after:
                continue
            chunk = chunk_of(then)
            later = chunk.end - timedelta(hours=1)
            (now_in,) = [w.window for w in chunk.windows if w.window.start <= then < w.window.end]
            if later >= now_in.end and later.date() != then.date():
                return event
        raise AssertionError("no event of the history fits the test")

    def follow_the_reader(s: Simulator, params: dict[str, str]) -> None:
        if params.get("metric") != "list" or moved or not plans:
            return
        lo, hi = ts(params["start"]), ts(params["end"])
        if not chosen:
            chosen.append(choose(after=hi))
        original = chosen[0]
        then = ts(original["createdAt"])
        if lo <= then <= hi:
            served.set()  # one page per window: this answer holds the event
        elif served.is_set():
            later = chunk_of(then).end - timedelta(hours=1)
            assert later.date() != then.date()
            moved.append({**original, "createdAt": format_ts(later)})
            s.add_events(moved)

    sim.on_request = follow_the_reader
    with SimulatorServer(sim) as srv:
        # one request at a time, one page per window
        # windows of at most 200 events, so even a chunk of 400 holds two or more of them
        args = ("--concurrency", "1", "--max-offset", "200", "--page-size", "200")
        assert run_cli(*workspace.sync_args(srv.url, *args, "--chunk-events", chunk_events)) == 0
    assert moved
    assert_warehouse_matches(workspace, sim.events())


def test_late_events_within_the_lookback_are_caught(workspace: Workspace) -> None:
    sim = make_simulator(1_000)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        (mark,) = workspace.query(f"select max(window_end) from {DATASET}.sync_windows")[0]
        late = [make_event(_rng(i), mark - timedelta(minutes=5, seconds=i)) for i in range(25)]
        sim.add_events(late)
        assert run_cli(*workspace.sync_args(srv.url, "--lookback", "10m")) == 0
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize(
    "faults",
    [
        ["429"] * 6,
        ["503", "503", "500"],
        ["reset", "reset", "reset"],
        ["truncate", "nonjson", "html200"],
        ["slow", "slow"],
    ],
    ids=["429-storm", "5xx-html", "resets", "garbled", "slow"],
)
def test_transient_failures_are_retried(faults: list[str], workspace: Workspace) -> None:
    sim = make_simulator(1_200, retry_after="0", slow_seconds=3)
    sim.inject(*faults)
    with SimulatorServer(sim) as srv:
        summary = sync_with_quick_retries(workspace, srv.url, timeout=1.0, page_size=300)
    assert not summary.incomplete_windows and summary.retries >= len(faults)
    assert sim.stats.faults_injected == len(faults)
    assert_warehouse_matches(workspace, sim.events())


def test_a_persistent_failure_is_one_clear_line_and_leaves_data_alone(
    workspace: Workspace,
) -> None:
    sim = make_simulator(800)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        before = workspace.ids()
        sim.add_events([make_event(_rng(1), NOW + timedelta(seconds=1))])
        sim.config.rate_503 = 1.0
        proc = run_cli_process(*workspace.sync_args(srv.url, "--retries", "3"))
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("tfy-audit: error: GET /api/svc/v1/audit-logs?metric=")
    assert "HTTP 503" in last and "gave up after" in last
    assert "Traceback" not in proc.stderr
    assert workspace.ids() == before


CRASH_POINTS = [
    "fetch:3",
    "extract:1",
    "extracted:1",
    "normalize:2",
    "normalized:2",
    "load:1",
    "complete:2",
]


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
def test_kill_9_then_one_sync_is_exact(crash_at: str, workspace: Workspace) -> None:
    sim = make_simulator(6_000, days=30, latency_ms=1)
    args = workspace.sync_args("", "--chunk-events", "1500", "--max-offset", "1000")
    with SimulatorServer(sim) as srv:
        args[2] = srv.url
        crashed = run_crashing_cli(args, crash_at, timeout=120)
        assert crashed.returncode == -9, crashed.stderr
        # what the crash left normalized is loaded, under its own load id
        # packages are folders; a kill can also leave dlt's 0-byte temp file (save_atomic) here
        normalized = workspace.pipelines_dir.glob("tfy_audit/load/normalized/*")
        left = {p.name for p in normalized if p.is_dir()}
        assert run_cli(*args) == 0
    assert_warehouse_matches(workspace, sim.events())
    loaded = {row[0] for row in workspace.query(f"select load_id from {DATASET}._dlt_loads")}
    assert left <= loaded
    if crash_at.startswith("normalized"):
        assert left


def test_kill_9_at_random_moments_then_one_sync(workspace: Workspace) -> None:
    sim = make_simulator(8_000, days=30, latency_ms=3)
    args = workspace.sync_args("", "--chunk-events", "1500", "--max-offset", "1000")
    with SimulatorServer(sim) as srv:
        args[2] = srv.url
        for delay in (0.6, 1.1, 1.7, 2.3):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tfy_audit", *args],
                cwd=REPO,
                env={**os.environ, "TFY_API_KEY": API_KEY},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                proc.wait(timeout=delay)  # the kill lands wherever the sync is by then
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        assert run_cli(*args) == 0
    assert_warehouse_matches(workspace, sim.events())


@WALL_CLOCK
def test_a_second_sync_of_the_same_pipeline_refuses_at_once(workspace: Workspace) -> None:
    sim = make_simulator(3_000)
    started, release = threading.Event(), threading.Event()

    def hold_first_sync(s: Simulator, params: dict[str, str]) -> None:
        # the first sync stays mid-run until the second one has been turned away
        started.set()
        release.wait(timeout=120)

    sim.on_request = hold_first_sync
    with SimulatorServer(sim) as srv:
        first = subprocess.Popen(
            [sys.executable, "-m", "tfy_audit", *workspace.sync_args(srv.url)],
            cwd=REPO,
            env={**os.environ, "TFY_API_KEY": API_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert started.wait(timeout=60), "the first sync never reached the service"
            t0 = time.monotonic()
            second = run_cli_process(*workspace.sync_args(srv.url))
            refused_in = time.monotonic() - t0
        finally:
            release.set()
        _out, err = first.communicate(timeout=120)
    assert second.returncode == 1, second.stderr
    assert "already running" in second.stderr and "--wait" in second.stderr
    assert refused_in < 30
    assert first.returncode == 0, err
    assert_warehouse_matches(workspace, sim.events())


def _rng(i: int) -> Any:
    import random

    return random.Random(f"reliability-{i}")


@pytest.mark.parametrize("doubled", ["audit_logs", "audit_log_metadata"])
def test_duplicates_left_by_a_crash_are_healed_by_the_next_sync(
    doubled: str, workspace: Workspace
) -> None:
    """What a kill between an appended job's commit and dlt's bookkeeping leaves behind: rows
    twice, of both tables or (the leaves' job alone re-run) of the leaves only. The next sync,
    even a filtered one, re-merges the days holding them."""
    sim = make_simulator(2_000)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        con = duckdb.connect(str(workspace.db))
        victims = [
            r[0]
            for r in con.execute(
                f"select id from {DATASET}.audit_logs where meta_data <> '{{}}' "
                "order by created_at desc limit 3"
            ).fetchall()
        ]
        placeholders = ", ".join("?" * len(victims))
        if doubled == "audit_logs":
            con.execute(
                f"insert into {DATASET}.audit_logs select * from {DATASET}.audit_logs "
                f"where id in ({placeholders})",
                victims,
            )
        inserted = con.execute(
            f"insert into {DATASET}.audit_log_metadata select * from "
            f"{DATASET}.audit_log_metadata where audit_log_id in ({placeholders})",
            victims,
        ).fetchall()
        assert inserted[0][0] > 0
        con.close()
        action = sim.events()[0]["action"]
        assert run_cli(*workspace.sync_args(srv.url, "--action", action)) == 0
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize("chunk_events", ["500000", "500"])
def test_the_mark_stays_before_a_window_that_could_not_be_read(
    chunk_events: str, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """1,500 events in one millisecond, a service that pages 1,000 deep: the window is reported
    (exit 3) and the next run reads it again rather than skipping past it; with small chunks,
    the burst's chunk is followed by others, whose commits must not carry the mark past it."""
    sim = make_simulator(3_000, days=10, max_offset=1_000)
    burst_at = NOW - timedelta(days=9)
    sim.add_events(dense_burst(burst_at, 1_500, seed=9))
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(
            srv.url, "--max-offset", "1000", "--chunk-events", chunk_events, "--json"
        )
        assert run_cli(*args) == 3
        first = json.loads(capsys.readouterr().out)
        # the burst's own millisecond, and (as their padded queries also hold the burst) at
        # most the two neighbouring ones
        burst_ms = format_ts(burst_at)
        assert (
            f"[{burst_ms}, {format_ts(burst_at + timedelta(milliseconds=1))})"
            in (first["incomplete_windows"])
        )
        assert len(first["incomplete_windows"]) <= 3
        assert run_cli(*args) == 3
        second = json.loads(capsys.readouterr().out)
    assert ts(second["start"]) <= burst_at
    assert ts(first["covered_until"]) <= burst_at
    if chunk_events == "500":
        assert first["chunks"] > 2
    # once the service lets the window be read, the next run loads every event
    sim.config.max_offset = None
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--chunk-events", chunk_events)) == 0
    assert_warehouse_matches(workspace, sim.events())


def test_a_scheduled_run_keeps_the_mark_before_an_incomplete_lookback_window(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A scheduled run that re-reads its lookback and finds new events is two chunks: the
    lookback, merged, then what is new, appended. A window of the first that cannot be read
    completely (a late bulk write, 1,500 events in one millisecond) holds the mark back, so
    the next run reads it again."""
    # the service's clock ahead: a run reads the event added just before it starts
    sim = make_simulator(1_000, max_offset=1_000, clock_offset_seconds=SERVICE_CLOCK_AHEAD)
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(srv.url, "--max-offset", "1000", "--lookback", "1m", "--json")
        assert run_cli(*args) == 0
        mark = ts(json.loads(capsys.readouterr().out)["covered_until"])
        burst_at = mark - timedelta(seconds=30)
        sim.add_events(dense_burst(burst_at, 1_500, seed=5))
        # something new, after the mark (the sync's end was fixed before it finished)
        sim.add_events([make_event(_rng(1), mark + timedelta(milliseconds=1))])
        assert run_cli(*args) == 3
        second = json.loads(capsys.readouterr().out)
        assert second["chunks"] == 2
        # the mark never moves back; held where it was, the next lookback covers the window
        assert ts(second["covered_until"]) == mark
        sim.config.max_offset = None  # and the sync may page deeper
        assert run_cli(*workspace.sync_args(srv.url, "--lookback", "1m", "--json")) == 0
        third = json.loads(capsys.readouterr().out)
    assert ts(third["start"]) <= burst_at
    assert_warehouse_matches(workspace, sim.events())
