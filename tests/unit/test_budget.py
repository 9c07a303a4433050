"""The byte budget the fetching threads share (budget.py): a bound on the bytes held at once,
which never deadlocks and never drops a count."""

from __future__ import annotations

import threading

import pytest
from tfy_audit._service.budget import BudgetClosed, ByteBudget


def test_the_oldest_hold_passes_the_budget_the_others_wait() -> None:
    budget = ByteBudget(100)
    first, second = budget.hold(), budget.hold()
    first.grow(60)
    second.grow(40)
    grown = threading.Event()

    def grow_second() -> None:
        second.grow(10)  # over the budget, and not the oldest hold: waits
        grown.set()

    waiter = threading.Thread(target=grow_second)
    waiter.start()
    first.grow(500)  # the oldest hold is never kept waiting: its page is read to its end
    assert budget.held == 600
    assert not grown.is_set()
    first.set(30)  # decoded: its rows, not its body, count now
    # 30 + 40 + 10 = 80 fits: the waiting hold goes on
    assert grown.wait(timeout=30)
    waiter.join(timeout=30)
    assert budget.held == 80
    assert budget.peak == 600
    first.release()
    second.release()
    assert budget.held == 0


def test_a_hold_counts_from_its_first_byte_so_a_queued_page_never_blocks_a_running_one() -> None:
    """A hold asked for but not yet read (its request queued behind busy threads) is not the
    oldest: the oldest is the first to count a byte, whose thread runs."""
    budget = ByteBudget(10)
    queued, running = budget.hold(), budget.hold()
    running.grow(50)  # would wait forever if `queued` were the oldest
    queued.reset()
    assert budget.held == 50
    running.release()
    queued.grow(50)
    assert budget.held == 50


def test_threads_never_hold_more_than_the_budget_and_the_oldest_page() -> None:
    budget = ByteBudget(1000)
    errors: list[BaseException] = []

    def read(hold_size: int) -> None:
        try:
            hold = budget.hold()
            hold.reset()
            for _ in range(hold_size // 100):
                hold.grow(100)
            hold.set(hold_size // 2)
            hold.release()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(700 + 100 * (i % 5),)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread waits forever"
    assert errors == []
    assert budget.held == 0
    assert budget.peak <= 1000 + 1100  # the budget, and the largest body over it


def test_closing_wakes_a_waiting_hold_with_budget_closed() -> None:
    budget = ByteBudget(10)
    first, second = budget.hold(), budget.hold()
    first.grow(10)
    raised: list[BaseException] = []

    def grow() -> None:
        try:
            second.grow(5)
        except BudgetClosed as exc:
            raised.append(exc)

    waiter = threading.Thread(target=grow)
    waiter.start()
    budget.close()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert len(raised) == 1
    with pytest.raises(BudgetClosed):
        second.grow(1)
