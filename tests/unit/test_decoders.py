"""The decoder worker processes: what they import decides what each one costs a sync."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime

import orjson
import pytest
from tfy_audit._service import forked
from tfy_audit._service.decoders import DecodersOnDemand, decoder_pool
from tfy_audit._service.pages import decode_page, decode_released

_IMPORTED = (
    "sorted(m for m in __import__('sys').modules "
    "if m in ('dlt', 'httpx', 'pendulum') or m.startswith('dlt.'))"
)


def test_workers_decode_pages_without_importing_dlt() -> None:
    """A spawned worker imports the module of its initializer and of each task; none of them
    may pull in dlt (0.5 s of CPU and ~100 MB per worker), httpx or pendulum."""
    body = orjson.dumps(
        {
            "data": [{"id": "e1", "action": "CREATE", "createdAt": "2026-01-02T03:04:05.678Z"}],
            "pagination": {"total": 1},
        }
    )
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    with decoder_pool(2) as decoders:
        assert decoders is not None
        page = decoders.pool.submit(decode_page, body, start, end).result(timeout=60)
        # as the fetcher submits a page: through the wrapper that frees a large body's memory
        again = decoders.pool.submit(decode_released, decode_page, body, start, end, 0)
        assert again.result(timeout=60).ids == ["e1"]
        imported = decoders.pool.submit(eval, _IMPORTED).result(timeout=60)
        frozen = decoders.pool.submit(eval, "__import__('gc').get_freeze_count()").result(60)
        niceness = decoders.pool.submit(os.getpriority, os.PRIO_PROCESS, 0).result(timeout=60)
    assert page.ids == ["e1"] and page.total == 1
    assert page.batch is not None and page.batch.audit_logs.column("action").to_pylist() == [
        "CREATE"
    ]
    assert imported == []
    assert frozen > 10_000  # the modules, out of the collector's way
    # a worker gives way to the command (19 is the lowest priority there is)
    assert niceness == min(19, os.getpriority(os.PRIO_PROCESS, 0) + forked.DECODER_NICENESS)


def test_no_workers_means_no_pool() -> None:
    with decoder_pool(0) as decoders:
        assert decoders is None


def test_the_command_module_imports_nothing_heavy() -> None:
    """A spawned worker runs the command's main module again: importing `tfy_audit._cli.main` must
    not pull in what only the main process needs."""
    import subprocess
    import sys

    probe = (
        "import sys, tfy_audit._cli.main; "
        "print(','.join(m for m in ('httpx', 'pendulum', 'dlt', 'pyarrow', 'duckdb') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == ""


class _FakeForked:
    """Stands for the decoders the command forked (forked.ForkedDecoders)."""

    def __init__(self, alive: bool) -> None:
        self.pids = [1, 2]
        self.alive = alive
        self.closed = 0
        self.pages_done = 0
        self.pool = self

    def all_alive(self) -> bool:
        return self.alive

    def close(self) -> None:
        self.closed += 1


def _forked_by_the_command(monkeypatch: pytest.MonkeyPatch, *, alive: bool) -> _FakeForked:
    """A fake of the decoders the command forked, where `forked.take()` hands them over."""
    fake = _FakeForked(alive=alive)
    monkeypatch.setattr(forked, "_STARTED", fake)
    return fake


def test_a_large_run_decodes_in_the_forked_decoders(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _forked_by_the_command(monkeypatch, alive=True)
    with ExitStack() as stack:
        on_demand = DecodersOnDemand(stack, 2, from_events=10)
        on_demand.start_if_large(10)
        assert on_demand.pool is fake
        on_demand.planned()
        assert fake.closed == 0  # in use: kept until the run ends
    assert fake.closed == 1
    assert forked.take() is None  # handed over once


def test_a_small_run_lets_the_forked_decoders_go_once_planned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _forked_by_the_command(monkeypatch, alive=True)
    with ExitStack() as stack:
        on_demand = DecodersOnDemand(stack, 2, from_events=10)
        on_demand.start_if_large(9)
        on_demand.planned()
        assert on_demand.pool is None and fake.closed == 1


def test_a_dead_forked_decoder_makes_the_run_spawn_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _forked_by_the_command(monkeypatch, alive=False)
    with ExitStack() as stack:
        on_demand = DecodersOnDemand(stack, 1, from_events=10)
        on_demand.start_if_large(10)
        assert fake.closed == 1
        assert isinstance(on_demand.pool, ProcessPoolExecutor)
        assert on_demand.pool.submit(len, "abc").result(timeout=60) == 3
