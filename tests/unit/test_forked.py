"""The decoder processes the command forks before it imports dlt (forked.py).

Each case runs in a fresh interpreter: forking is only safe from a process with one thread,
which a pytest worker is not, and `start` refuses there anyway once dlt is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tfy_audit._service import forked

_PREAMBLE = """
import json, os, sys
from datetime import UTC, datetime
import orjson
from tfy_audit._service import forked
def body(*ids):
    return orjson.dumps({
        "data": [{"id": i, "action": "CREATE", "createdAt": "2026-01-02T03:04:05.678Z",
                  "metaData": {"k": i}} for i in ids],
        "pagination": {"total": len(ids)},
    })
START, END = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
def children():
    me = os.getpid()
    return sorted(int(p) for p in open(f"/proc/{me}/task/{me}/children").read().split())
"""


def run_script(script: str, timeout: float = 60) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PREAMBLE + script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_forked_workers_decode_pages_and_import_no_dlt() -> None:
    out = run_script(
        """
from tfy_audit._service.pages import decode_page, decode_released
PROBE = (
    "(os.getpid(), os.getppid(), sorted(m for m in sys.modules if m.split('.')[0] == 'dlt'),"
    " sys.modules['tfy_audit._service.pages']._release_every, os.getpriority(os.PRIO_PROCESS, 0))"
)
assert forked.start(2)
decoders = forked.take()
assert forked.take() is None  # handed over once
pids = sorted(decoders.pids)
before = children()
pages = [decoders.submit(decode_released, decode_page, body(f"a{n}", f"b{n}"), START, END, 1 << 30)
         for n in range(6)]
results = [p.result(60) for p in pages]
# evaluated in the worker, with forked.py's globals (os, sys)
worker = decoders.submit(eval, PROBE).result(60)
decoders.close()
print(json.dumps({
    "pids": pids, "children_before": before, "children_after": children(),
    "ids": [r.ids for r in results],
    "actions": [r.batch.audit_logs.column("action").to_pylist() for r in results],
    "leaf_owners": [r.batch.metadata.column("audit_log_id").to_pylist() for r in results],
    "worker": worker, "me": os.getpid(), "my_niceness": os.getpriority(os.PRIO_PROCESS, 0),
}))
"""
    )
    assert out["children_before"] == out["pids"] and len(out["pids"]) == 2
    assert out["children_after"] == []  # closed and reaped
    assert out["ids"] == [[f"a{n}", f"b{n}"] for n in range(6)]
    assert out["actions"] == [["CREATE", "CREATE"]] * 6
    assert out["leaf_owners"] == [[f"a{n}", f"b{n}"] for n in range(6)]
    worker_pid, worker_parent, dlt_modules, release_every, niceness = out["worker"]  # type: ignore[misc]
    assert worker_pid in out["pids"] and worker_parent == out["me"]
    assert dlt_modules == []
    assert release_every == 4  # a worker gives back what decoding freed every few pages
    # a worker gives way to the command (19 is the lowest priority there is)
    assert niceness == min(19, out["my_niceness"] + forked.DECODER_NICENESS)  # type: ignore[operator]


def test_an_error_in_a_task_is_raised_where_its_result_is_asked_for() -> None:
    out = run_script(
        """
assert forked.start(1)
decoders = forked.take()
failed = decoders.submit(int, "not a number")
error = failed.exception(60)
unpicklable = decoders.submit(eval, "lambda: 1").exception(60)  # a result that cannot go back
fine = decoders.submit(len, "four")
print(json.dumps({"error": repr(error), "cause": type(error.__cause__).__name__,
                  "traceback": str(error.__cause__), "unpicklable": repr(unpicklable),
                  "fine": fine.result(60), "pages": decoders.pages_done}))
decoders.close()
"""
    )
    assert out["error"] == "ValueError(\"invalid literal for int() with base 10: 'not a number'\")"
    assert out["cause"] == "RemoteTraceback"  # the worker's traceback, as a process pool's
    assert "ValueError: invalid literal" in out["traceback"]
    assert str(out["unpicklable"]).startswith("RuntimeError(\"PicklingError: Can't pickle")
    assert out["fine"] == 4  # the worker serves on: its socket's messages were kept in step
    assert out["pages"] == 1  # answered with a result: the last one only


def test_closing_cancels_waiting_pages_and_ends_every_worker() -> None:
    out = run_script(
        """
import time
assert forked.start(2)
decoders = forked.take()
slow = [decoders.submit(time.sleep, 0.3) for _ in range(2)]
waiting = [decoders.submit(len, "x") for _ in range(4)]
time.sleep(0.1)  # the two slow ones are with the workers
decoders.close()
print(json.dumps({"slow": [f.result(0) for f in slow],
                  "cancelled": [f.cancelled() for f in waiting], "children": children()}))
"""
    )
    assert out == {"slow": [None, None], "cancelled": [True] * 4, "children": []}


def test_closing_soon_finishes_the_pages_submitted() -> None:
    out = run_script(
        """
assert forked.start(2)
decoders = forked.take()
futures = [decoders.submit(len, "x" * n) for n in range(10)]
decoders.close_soon()
decoders.close()
print(json.dumps({"results": [f.result(0) for f in futures], "children": children()}))
"""
    )
    assert out == {"results": list(range(10)), "children": []}


def test_a_worker_that_dies_fails_its_page_and_the_pool() -> None:
    out = run_script(
        """
from concurrent.futures import BrokenExecutor
assert forked.start(1)
decoders = forked.take()
dead = decoders.submit(os._exit, 3)
queued = [decoders.submit(len, "x") for _ in range(3)]
error = dead.exception(60)
queued_errors = [type(f.exception(60)).__name__ for f in queued]
try:
    decoders.submit(len, "x")
    later = "accepted"
except BrokenExecutor as exc:
    later = type(exc).__name__
decoders.close()
print(json.dumps({"error": type(error).__name__, "broken": isinstance(error, BrokenExecutor),
                  "message": str(error), "queued": queued_errors, "later": later,
                  "left": children()}))
"""
    )
    assert out["error"] == "DecoderGone" and out["broken"] is True
    assert out["message"] == "a decoder process ended while decoding a page (EOFError)"
    assert out["queued"] == ["DecoderGone"] * 3
    assert out["later"] == "DecoderGone"
    assert out["left"] == []


def test_a_worker_killed_while_it_waited_is_found_before_use() -> None:
    out = run_script(
        """
import signal, time
assert forked.start(2)
decoders = forked.take()
os.kill(decoders.pids[0], signal.SIGKILL)
deadline = time.monotonic() + 30
while decoders.all_alive():
    assert time.monotonic() < deadline
    time.sleep(0.01)
alive_after = decoders.all_alive()
decoders.close()
print(json.dumps({"alive_after": alive_after, "children": children()}))
"""
    )
    # the loop above ends only once the killed worker is seen; it is still seen afterwards
    assert out == {"alive_after": False, "children": []}


def test_start_refuses_where_forking_is_not_safe() -> None:
    out = run_script(
        """
import threading
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
with_thread = forked.start(2)
stop.set(); thread.join()
import dlt
with_dlt = forked.start(2)
print(json.dumps({"with_thread": with_thread, "with_dlt": with_dlt, "none": forked.start(0),
                  "taken": forked.take() is None, "children": children()}))
"""
    )
    assert out == {
        "with_thread": False,
        "with_dlt": False,
        "none": False,
        "taken": True,
        "children": [],
    }


@pytest.mark.parametrize("held", [False, True], ids=["sockets", "sockets-held"])
def test_workers_end_when_the_command_is_killed(held: bool) -> None:
    """`kill -9` of the command ends its workers: they read the end of their sockets, or, if
    a process forked from the command later (by a library) holds the sockets open, the kernel
    ends them (PR_SET_PDEATHSIG). Closing a pool whose socket is held still ends its worker:
    it is told to stop."""
    script = f"""
import signal, time
assert forked.start(2)
decoders = forked.take()
assert decoders.submit(len, "ab").result(60) == 2
second = forked.ForkedDecoders(1)  # closed below, its socket held if `held`
holder = os.fork() if {held} else -1  # a copy of every socket, as a later fork would keep
if holder == 0:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    time.sleep(60)
    os._exit(0)
closed = second.pids[0]
second.close()
print(json.dumps({{"pids": decoders.pids, "closed": closed, "holder": holder}}), flush=True)
sys.stdin.read()  # until killed
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PREAMBLE + script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    holder = -1
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        holder, pids = started["holder"], started["pids"]
        assert len(pids) == 2
        assert not _alive(started["closed"])  # close() returned with its worker reaped
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, f"forked decoders {pids} outlived the command"
            time.sleep(0.02)
    finally:
        if holder > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(holder, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_fork_that_fails_leaves_no_worker_and_the_sync_spawns() -> None:
    """A process limit or a sandbox refusing the second fork: `start` says no, and the worker
    already forked ends and is reaped."""
    out = run_script(
        """
real_fork, calls = os.fork, []
def second_fails():
    calls.append(1)
    if len(calls) == 2:
        raise BlockingIOError(11, "Resource temporarily unavailable")
    return real_fork()
os.fork = second_fails
started = forked.start(2)
print(json.dumps({"started": started, "taken": forked.take(), "forks": len(calls),
                  "children": children()}))
"""
    )
    assert out == {"started": False, "taken": None, "forks": 2, "children": []}
