"""A service whose clock differs from ours: every event it stamps is loaded, by exact ids.

The simulator's clock is moved (`clock_offset_seconds`): its `Date` header and the createdAt
of the events it is given "now" follow it."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from tfy_audit._core.options import DestinationOptions, SyncOptions
from tfy_audit._engine.sync import run_sync
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history
from tfy_audit.simulator.history import make_event

from tests.conftest import API_KEY, DATASET, WALL_CLOCK, Workspace, run_cli_process

# the service clock is read from whole-second Date headers and checked within 2 s
pytestmark = WALL_CLOCK

FIFTEEN_MINUTES = 900


def skewed_simulator(offset: float, count: int = 300) -> Simulator:
    service_now = datetime.now(UTC) + timedelta(seconds=offset)
    history = generate_history(count, days=2, seed=21, end=service_now - timedelta(minutes=2))
    return Simulator(SimulatorConfig(api_key=API_KEY, clock_offset_seconds=offset), history)


def stamped_now(sim: Simulator, n: int, seed: int, ago: float = 0) -> list[str]:
    """`n` events the service created at its own `now` (less `ago` seconds)."""
    rng = random.Random(seed)
    at = sim.now() - timedelta(seconds=ago)
    return sim.add_events([make_event(rng, at) for _ in range(n)])


def test_a_service_clock_15_minutes_behind_loses_no_new_event(workspace: Workspace) -> None:
    sim = skewed_simulator(-FIFTEEN_MINUTES)
    history = sim.ids()
    with SimulatorServer(sim) as srv:
        first = run_cli_process(*workspace.sync_args(srv.url, "--json"))
        assert first.returncode == 0, first.stderr
        assert workspace.ids() == history
        doc = json.loads(first.stdout)
        assert -FIFTEEN_MINUTES - 2 <= doc["clock_offset_seconds"] <= -FIFTEEN_MINUTES + 2
        # the run ended by the service's clock, not ours
        end = datetime.fromisoformat(doc["end"])
        assert end <= sim.now()
        assert datetime.fromisoformat(doc["covered_until"]) == end
        warnings = [line for line in first.stderr.splitlines() if "service's clock" in line]
        assert len(warnings) == 1, first.stderr
        assert "s behind this machine's" in warnings[0] and "(Date: " in warnings[0]

        # stamped by the service's clock three seconds before the next run starts: a run reads
        # to a second before its first response's `Date` (whole seconds), so these are in it
        # whatever the timing; events stamped later are the run after's
        new = stamped_now(sim, 3, seed=1, ago=3)
        second = run_cli_process(*workspace.sync_args(srv.url, "--json"))
        assert second.returncode == 0, second.stderr
        assert json.loads(second.stdout)["events_new"] == 3
        assert workspace.ids() == history | set(new)

        text = run_cli_process(*workspace.sync_args(srv.url))
        assert text.returncode == 0, text.stderr
        assert "  service clock: 900 s behind this machine's" in text.stdout or (
            "  service clock: 899 s behind" in text.stdout
            or "  service clock: 901 s behind" in text.stdout
        ), text.stdout
    offsets = [
        r[0]
        for r in workspace.query(
            f"select clock_offset_seconds from {DATASET}.sync_runs order by started_at"
        )
    ]
    assert len(offsets) == 3
    assert all(-FIFTEEN_MINUTES - 2 <= o <= -FIFTEEN_MINUTES + 2 for o in offsets), offsets
    workspace.assert_unique()


def test_a_service_clock_15_minutes_ahead_loses_no_event_stamped_in_our_future(
    workspace: Workspace,
) -> None:
    sim = skewed_simulator(FIFTEEN_MINUTES)
    ours = datetime.now(UTC)
    # The random history of 300 events over two days has about one event a quarter of an hour,
    # fewer at night: its last 13 minutes (our future) were empty in about one run of four.
    # These five are stamped there whatever the seed and the hour.
    stamped_now(sim, 5, seed=2, ago=120)
    history = sim.ids()
    past = {e["id"] for e in sim.events() if datetime.fromisoformat(e["createdAt"]) < ours}
    future = history - past
    assert future, "the history reaches into this machine's future"
    with SimulatorServer(sim) as srv:
        options = SyncOptions(
            target=DestinationOptions(
                db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir)
            ),
            host=srv.url,
            api_key=API_KEY,
        )
        summary = run_sync(options)
        assert summary.clock_offset_seconds is not None
        assert FIFTEEN_MINUTES - 2 <= summary.clock_offset_seconds <= FIFTEEN_MINUTES + 2
        # our clock bounds the run: events stamped in our future wait for it
        assert summary.end <= datetime.now(UTC)
        assert workspace.ids() == past

        # stamped by the service's clock a few seconds before the next run: a run reads no
        # later than a second before the service's `Date` (the header has whole seconds)
        new = stamped_now(sim, 3, seed=2, ago=3)
        # a run once our clock has passed the service's stamps reads them all
        later = datetime.now(UTC) + timedelta(seconds=FIFTEEN_MINUTES + 60)
        summary = run_sync(options, now=lambda: later)
        assert summary.incomplete_windows == []
    assert workspace.ids() == history | set(new)
    assert summary.covered_until is not None
    # the mark stops a second before the service's clock: it never passes an unstamped instant
    assert summary.covered_until <= sim.now()
    workspace.assert_unique()


def test_the_simulate_command_runs_a_service_with_its_clock_moved() -> None:
    """`tfy-audit simulate --clock-offset -900`: its `Date` and its history's end follow it."""
    import email.utils
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import REPO, free_port

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfy_audit", "simulate", "--port", str(port), "--events",
         "2000", "--days", "0.05", "--clock-offset", "-900", "--api-key", API_KEY],
        cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "simulator serving 2,000 events" in proc.stdout.readline()
        url = f"http://127.0.0.1:{port}/api/svc/v1/audit-logs"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        ours = datetime.now(UTC)
        response = httpx.get(url, params={"metric": "list", "limit": "1"}, headers=headers)
        assert response.status_code == 200
        date = email.utils.parsedate_to_datetime(response.headers["date"])
        # `Date` drops the fraction; the answer may take a while under load
        assert -FIFTEEN_MINUTES - 2 <= (date - ours).total_seconds() <= -FIFTEEN_MINUTES + 10
        # newest first: an event of its last minutes, before its own now, not ours
        (newest,) = response.json()["data"]
        assert datetime.fromisoformat(newest["createdAt"]) <= date + timedelta(seconds=1)
    finally:
        proc.terminate()
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            proc.kill()
