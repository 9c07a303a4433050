"""Ctrl-C (SIGINT) and a scheduler's stop (SIGTERM) sent to the command's process group at any
moment: one line, exit 130/143, no traceback from any process, the lock released, committed
chunks kept, and the next run exact."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import (
    API_KEY,
    REPO,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
)

SIGNALS = {"INT": (signal.SIGINT, 130, "interrupted"), "TERM": (signal.SIGTERM, 143, "terminated")}


def start_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The command in a session (process group) of its own, as a terminal or a scheduler runs
    it; the harness module is the real command plus the phase hooks of crashing_cli."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.crashing_cli", *args],
        cwd=REPO,
        env={**os.environ, "TFY_API_KEY": API_KEY, "TFY_CRASH_AT": "none:0", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def group_gone(pgid: int, timeout: float = 30) -> bool:
    """No process of the group is left (the decoder workers stopped with their parent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def assert_ended_cleanly(proc: subprocess.Popen[str], name: str, lock: Path) -> None:
    _, code, word = SIGNALS[name]
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    if out.lstrip().startswith("{"):  # under --json: the document, with its status
        document = json.loads(out)
        assert (document["status"], document["exit_code"]) == ("interrupted", code)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"tfy-audit: {word}; run the same command again to continue"], err
    assert group_gone(proc.pid), "a process of the command outlived it"
    # the lock is free: a new sync could take it at once
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


def lock_file(ws: Workspace) -> Path:
    return ws.pipelines_dir / ".tfy_audit.tfy-audit.lock"


def committed_rows_are_served(ws: Workspace, sim: Simulator) -> None:
    """What the interrupted run committed is exact (a subset of the events, once each)."""
    if not ws.db.exists():
        return
    try:
        ids = ws.ids()
    except Exception:  # nothing committed yet: the table does not exist
        return
    assert ids <= {e["id"] for e in sim.events()}
    ws.assert_unique()


# Moments inside the run, reached by the harness's hooks (see crashing_cli.py): the signal is
# sent to the process group from there, in the middle of that step.
MOMENTS = ["fetch:4", "extract:2", "normalize:2", "load:2"]


@pytest.mark.parametrize("name", sorted(SIGNALS))
@pytest.mark.parametrize("moment", MOMENTS)
def test_a_signal_at_any_step_ends_in_one_line_and_the_next_run_is_exact(
    moment: str, name: str, workspace: Workspace
) -> None:
    sim = make_simulator(6_000, days=30, latency_ms=1)
    args = workspace.sync_args("", "--chunk-events", "1500", "--max-offset", "1000")
    with SimulatorServer(sim) as srv:
        args[2] = srv.url
        proc = start_cli(["-q", *args, "--json"], {"TFY_CRASH_AT": moment, "TFY_SIGNAL": name})
        assert_ended_cleanly(proc, name, lock_file(workspace))
        committed_rows_are_served(workspace, sim)
        assert run_cli(*args) == 0
    assert_warehouse_matches(workspace, sim.events())


def worker_pids(parent: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    try:
        return [int(p) for p in children.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_a_signal_while_worker_processes_decode(name: str, workspace: Workspace) -> None:
    """Sent from outside, as a terminal does, once the decoder processes are at work."""
    sig = SIGNALS[name][0]
    sim = make_simulator(30_000, days=30, latency_ms=2)
    reading, released = threading.Event(), threading.Event()
    lists = 0

    def count(s: Simulator, params: dict[str, Any]) -> None:
        # after some pages, the rest wait until the signal is sent: the run is mid-read then,
        # with pages in the decoder processes' hands
        nonlocal lists
        if params.get("metric") == "list":
            lists += 1
            if lists >= 8:
                reading.set()
                released.wait(60)

    sim.on_request = count
    args = workspace.sync_args("", "--workers", "2", "--max-offset", "1000")
    with SimulatorServer(sim) as srv:
        args[2] = srv.url
        proc = start_cli(["-q", *args], {"TFY_SIGNAL": name})
        if not reading.wait(60):
            proc.kill()
            pytest.fail(f"the sync never read its pages: {proc.communicate()}")
        deadline = time.monotonic() + 30
        while len(worker_pids(proc.pid)) < 2 and proc.poll() is None:
            assert time.monotonic() < deadline, "no decoder processes"
            time.sleep(0.02)
        os.killpg(proc.pid, sig)
        released.set()
        assert_ended_cleanly(proc, name, lock_file(workspace))
        committed_rows_are_served(workspace, sim)
        sim.on_request = None
        assert run_cli(*args) == 0
    assert_warehouse_matches(workspace, sim.events())
