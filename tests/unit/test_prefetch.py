"""Reading ahead: order, the byte bound, failures and stopping early."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
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
