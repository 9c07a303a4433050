"""Reading ahead: order, the byte bound, spilling to disk, failures and stopping early."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from tfy_audit._service import prefetch
from tfy_audit._service.prefetch import Prefetch


def test_items_arrive_in_order_and_all_of_them() -> None:
    with Prefetch(lambda: iter(range(1000)), size_of=lambda _: 1, max_bytes=7) as ahead:
        assert list(ahead) == list(range(1000))


def test_the_producer_runs_ahead_up_to_the_bound_and_no_further() -> None:
    produced = 0
    consumed = 0
    furthest = 0
    ahead_by_four = threading.Event()

    def produce() -> Iterator[int]:
        nonlocal produced, furthest
        for i in range(200):
            produced += 1
            # at most 3 items held (3 x 10 bytes), one in the consumer's hands, this one
            furthest = max(furthest, produced - consumed)
            if produced == 4:
                ahead_by_four.set()  # 3 held and this one waiting: the bound is reached
            yield i

    with Prefetch(produce, size_of=lambda _: 10, max_bytes=30) as ahead:
        assert ahead_by_four.wait(timeout=30)  # nothing taken yet, and it ran ahead
        for _ in ahead:
            time.sleep(0.0005)  # a slow consumer: the producer is free to run ahead
            consumed += 1
    assert consumed == 200
    assert furthest <= 5


def test_a_consumer_still_iterating_when_closed_gets_an_error_not_a_short_end() -> None:
    ahead = Prefetch(lambda: iter(range(1_000_000)), size_of=lambda _: 1, max_bytes=5)
    items = iter(ahead)
    assert next(items) == 0
    ahead.close()
    with pytest.raises(RuntimeError, match="stopped before its end"):
        list(items)


def test_an_item_larger_than_the_bound_still_passes() -> None:
    with Prefetch(lambda: iter(["big", "bigger"]), size_of=lambda _: 100, max_bytes=10) as ahead:
        assert list(ahead) == ["big", "bigger"]


def test_a_failure_is_raised_after_the_items_before_it() -> None:
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("service gone")

    got: list[int] = []
    with (
        Prefetch(produce, size_of=lambda _: 1, max_bytes=100) as ahead,
        pytest.raises(ValueError, match="service gone"),
    ):
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_closing_early_stops_the_producer_and_runs_its_cleanup() -> None:
    cleaned = threading.Event()
    blocked = threading.Event()

    def produce() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                if i == 5:
                    blocked.set()  # from here the bound (5 items) holds the producer back
                yield i
        finally:
            cleaned.set()

    ahead = Prefetch(produce, size_of=lambda _: 1, max_bytes=5)
    assert blocked.wait(timeout=30)
    closer = threading.Thread(target=ahead.close)
    closer.start()
    closer.join(timeout=30)
    assert not closer.is_alive()
    assert cleaned.is_set()


def test_a_prefetch_is_iterated_once() -> None:
    with Prefetch(lambda: iter([1]), size_of=lambda _: 1, max_bytes=5) as ahead:
        assert list(ahead) == [1]
        with pytest.raises(RuntimeError):
            list(ahead)


def _produced_until_blocked(
    count: int, *, max_bytes: int, spill_bytes: int, spill_dir: str | None, block_at: int
) -> tuple[Prefetch[int], threading.Event, list[int]]:
    """A Prefetch of `count` items of 10 bytes; the event is set when item `block_at` is being
    handed on (the bounds reached), `produced` lists what was produced."""
    reached = threading.Event()
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(count):
            produced.append(i)
            if i == block_at:
                reached.set()
            yield i

    ahead = Prefetch(
        produce,
        size_of=lambda _: 10,
        max_bytes=max_bytes,
        spill_bytes=spill_bytes,
        spill_dir=spill_dir,
    )
    return ahead, reached, produced


def _wait_until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_before_the_consumer_starts_items_past_the_memory_bound_wait_on_disk(
    tmp_path: Path,
) -> None:
    # 3 items in memory (30 bytes), 5 more spilled (50 bytes): the 9th waits
    ahead, reached, produced = _produced_until_blocked(
        200, max_bytes=30, spill_bytes=50, spill_dir=str(tmp_path), block_at=8
    )
    with ahead:
        assert reached.wait(timeout=30)
        # the producer is held at the 9th item, not further; the held memory is 3 items
        assert not _wait_until(lambda: len(produced) > 9, timeout=0.2)
        assert produced == list(range(9))
        assert ahead._held == 30
        assert os.listdir(tmp_path) == []  # the spill file has no name
        assert list(ahead) == list(range(200))
    assert os.listdir(tmp_path) == []


def test_once_the_consumer_starts_nothing_more_is_spilled(tmp_path: Path) -> None:
    spilled: list[object] = []
    original_put = prefetch._SpillFile.put

    def put(self: prefetch._SpillFile, item: object) -> Any:
        spilled.append(item)
        return original_put(self, item)

    go = threading.Event()
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(100):
            if i == 8:  # 3 items in memory, 5 spilled: the consumer starts before the rest
                assert go.wait(timeout=30)
            produced.append(i)
            yield i

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prefetch._SpillFile, "put", put)
        ahead = Prefetch(
            produce, size_of=lambda _: 10, max_bytes=30, spill_bytes=10**6, spill_dir=str(tmp_path)
        )
        with ahead:
            assert _wait_until(lambda: len(spilled) == 5)
            taken = []
            for item in ahead:
                go.set()  # the consumer has started: the producer goes on
                time.sleep(0.0005)  # a slow consumer: the producer meets the memory bound
                taken.append(item)
                # the spilled, 3 held in memory, the one in hand and the one waiting
                assert len(produced) - len(taken) <= 5 + 3 + 2
            assert taken == list(range(100))
    assert spilled == [3, 4, 5, 6, 7]  # what was spilled before the consumer started, alone


def test_spilled_items_come_back_equal(tmp_path: Path) -> None:
    tables = [pa.table({"id": [f"e{i}", f"f{i}"], "n": [i, i + 1]}) for i in range(20)]
    ahead = Prefetch(
        lambda: iter(tables),
        size_of=lambda t: int(t.get_total_buffer_size()),
        max_bytes=1,
        spill_bytes=10**9,
        spill_dir=str(tmp_path),
    )
    with ahead:
        assert _wait_until(lambda: ahead._done)  # all produced before the consumer starts
        assert ahead._held == int(tables[0].get_total_buffer_size())  # one in memory
        got = list(ahead)
    assert [t.to_pylist() for t in got] == [t.to_pylist() for t in tables]


@pytest.mark.parametrize("failure", ["no spill file", "disk full"])
def test_a_spill_that_fails_falls_back_to_the_memory_bound(
    failure: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A spill file that cannot be made, or a write that fails, stops spilling: every item
    still arrives, in order, held back by the memory bound alone."""
    spill_dir = str(tmp_path / "missing") if failure == "no spill file" else str(tmp_path)
    original_put = prefetch._SpillFile.put
    puts = 0

    def put(self: prefetch._SpillFile, item: object) -> Any:
        nonlocal puts
        puts += 1
        if puts > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original_put(self, item)

    with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.INFO):
        patch.setattr(prefetch._SpillFile, "put", put)
        ahead, reached, produced = _produced_until_blocked(
            50, max_bytes=30, spill_bytes=10**6, spill_dir=spill_dir, block_at=49
        )
        with ahead:
            # spilling stopped: 3 items in memory, those spilled before, and one waiting for
            # memory; the producer gets no further
            spilled = 2 if failure == "disk full" else 0
            assert _wait_until(lambda: len(produced) == 3 + spilled + 1)
            assert not reached.wait(timeout=0.2)
            assert len(produced) == 3 + spilled + 1
            assert list(ahead) == list(range(50))
    assert "spill" in caplog.text


def test_items_of_no_size_after_an_oversized_one_wait_when_the_spill_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An item larger than the bound is let through alone; an item of no size behind it (a
    window's report) waits for it to be taken once the spill has failed, and the producer
    tries the spill once, not again and again."""
    attempts: list[object] = []

    def no_spill_file(directory: str | None) -> Any:
        attempts.append(directory)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prefetch, "_SpillFile", no_spill_file)
    items = ["big", *(f"report {i}" for i in range(50))]
    ahead = Prefetch(
        lambda: iter(items),
        size_of=lambda item: 100 if item == "big" else 0,
        max_bytes=10,
        spill_bytes=10**6,
    )
    with ahead:
        assert _wait_until(lambda: len(attempts) == 1)
        assert not _wait_until(lambda: len(attempts) > 1, timeout=0.2)
        assert list(ahead) == items
    assert len(attempts) == 1


def test_without_a_spill_budget_no_spill_file_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    monkeypatch.setattr(prefetch, "_SpillFile", lambda directory: made.append(directory))
    items = ["big", *(f"report {i}" for i in range(50))]
    ahead = Prefetch(
        lambda: iter(items), size_of=lambda item: 100 if item == "big" else 0, max_bytes=10
    )
    with ahead:
        assert _wait_until(lambda: len(ahead._items) == 1 and ahead._held == 100)
        assert list(ahead) == items
    assert made == []
