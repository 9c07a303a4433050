"""A byte budget shared by threads: how much memory pages may hold at once, by design.

Each page requested takes a `Hold` when it is asked for. Its body's bytes are added to the hold
as they arrive (`grow`, which waits while the budget is spent), the hold is then set to what
the decoded page holds (`set`, which never waits: that memory is in use already), and it is
let go once the page has been handed on.

Waiting cannot deadlock: the oldest hold not let go may always grow, so the page asked for
first is always read to its end. The bytes held at once are therefore at most the budget plus
the oldest page's own bytes. No other hold passes the budget, so pages of large events, and
pages waiting to be handed on, hold back the reading of the rest instead of piling up.
"""

from __future__ import annotations

import threading


class BudgetClosed(Exception):
    """The budget was closed (the read is over): the page being read is not wanted."""


class ByteBudget:
    """At most about `limit` bytes held by all holds together (see the module's docstring)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._peak = 0
        # bytes held, by hold, in the order the holds first counted a byte: a hold joins the
        # queue when its page is being read, not when it is asked for, so the oldest hold is
        # always one whose reading thread runs (or has finished)
        self._holds: dict[Hold, int] = {}
        self._closed = False
        self._cond = threading.Condition()

    @property
    def held(self) -> int:
        with self._cond:
            return self._held

    @property
    def peak(self) -> int:
        """The most bytes held at once so far."""
        with self._cond:
            return self._peak

    def hold(self) -> Hold:
        """A new hold of no bytes."""
        return Hold(self)

    def close(self) -> None:
        """Wake every waiting `grow` with BudgetClosed; later ones raise it too."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _grow(self, hold: Hold, size: int) -> None:
        with self._cond:
            if hold.released:
                return
            self._holds.setdefault(hold, 0)
            while True:
                if self._closed:
                    raise BudgetClosed("the read is over")
                if self._held + size <= self.limit or hold is next(iter(self._holds)):
                    break
                self._cond.wait()
            self._add(hold, size)

    def _set(self, hold: Hold, size: int) -> None:
        with self._cond:
            if hold.released:
                return
            self._add(hold, size - self._holds.setdefault(hold, 0))
            self._cond.notify_all()

    def _release(self, hold: Hold) -> None:
        with self._cond:
            hold.released = True
            self._held -= self._holds.pop(hold, 0)
            self._cond.notify_all()

    def _add(self, hold: Hold, size: int) -> None:
        self._holds[hold] += size
        self._held += size
        self._peak = max(self._peak, self._held)


class Hold:
    """One page's share of a `ByteBudget`."""

    __slots__ = ("_budget", "released")

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self.released = False

    def grow(self, size: int) -> None:
        """Count `size` more bytes, waiting while the budget is spent and an older hold
        exists; BudgetClosed once the budget is closed."""
        self._budget._grow(self, size)

    def set(self, size: int) -> None:
        """Count exactly `size` bytes now (the page decoded), without waiting."""
        self._budget._set(self, size)

    def reset(self) -> None:
        """Count nothing (a body dropped, to be asked for again), keeping its place."""
        self._budget._set(self, 0)

    def release(self) -> None:
        """Let go of the hold; idempotent."""
        self._budget._release(self)
