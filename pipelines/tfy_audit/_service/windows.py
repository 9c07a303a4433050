"""Pure planning of time windows, driven by the service's own counts.

A window is half-open, `[start, end)`. The spec does not say whether the service's `start` and
`end` parameters are inclusive, so a window is queried as `start - 1 ms .. end`: whichever way
the service reads its bounds, the query returns every event of `[start, end)` (and perhaps a
millisecond of the neighbours, which merging on `id` absorbs). Adjacent windows share their
boundary, so no instant falls between two windows.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tfy_audit._core.errors import ImplausibleCountError
from tfy_audit._core.settings import MIN_WINDOW, PLAN_BASE_REQUESTS, PLAN_REQUESTS_PER_WINDOW

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

# A split makes at most this many parts at once; sparser parts are split again later.
MAX_FANOUT = 256


@dataclass(frozen=True, order=True)
class Window:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("windows use UTC-aware datetimes only")
        if self.end <= self.start:
            raise ValueError(f"empty window {self.start.isoformat()} .. {self.end.isoformat()}")

    @property
    def width(self) -> timedelta:
        return self.end - self.start

    def query_bounds(self) -> tuple[datetime, datetime]:
        """The `start`/`end` to send so that the answer covers `[start, end)` in any reading."""
        return self.start - MIN_WINDOW, self.end

    def can_split(self) -> bool:
        return self.width > MIN_WINDOW

    def split(self, parts: int) -> list[Window]:
        """Equal parts with boundaries on whole milliseconds (the service's precision)."""
        bounds = split_points(self.start, self.end, parts)
        return [Window(a, b) for a, b in itertools.pairwise(bounds)]

    def __str__(self) -> str:
        return f"[{_iso(self.start)}, {_iso(self.end)})"


@dataclass(frozen=True, order=True)
class PlannedWindow:
    window: Window
    count: int


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def floor_ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond - dt.microsecond % 1000)


def split_points(start: datetime, end: datetime, parts: int) -> list[datetime]:
    """`parts + 1` strictly increasing boundaries from start to end (fewer if too narrow)."""
    if parts < 1:
        raise ValueError("parts must be >= 1")
    start_ms = math.ceil((start - _EPOCH) / _US / 1000)
    end_ms = (end - _EPOCH) // _US // 1000
    points = [start]
    span = end_ms - start_ms
    for i in range(1, parts):
        ms = start_ms + span * i // parts
        point = _EPOCH + timedelta(milliseconds=ms)
        if points[-1] < point < end:
            points.append(point)
    points.append(end)
    return points


def plan_windows(
    root: Window | Sequence[Window],
    count: Callable[[Window], int],
    *,
    max_events: int,
    executor: Executor,
    on_total: Callable[[int], None] | None = None,
) -> list[PlannedWindow]:
    """Split `root` until every window holds at most `max_events` events, by the service's count.

    Counts run concurrently on `executor`, and a window is split as soon as its own count
    arrives, not when its whole level has been counted: planning takes about as many round
    trips as the split is deep. Empty windows are dropped. A window with no whole millisecond
    strictly inside it (at most two milliseconds wide) cannot be split further and is returned
    whatever its count (the fetcher then reports it if the service refuses to page through
    it). `on_total` hears the root's count as soon as it is known.

    `root` may be several disjoint windows (a run's two sides of its loaded bound): they are
    counted at once, their count requests bounded by the sum of the budgets each would have
    alone, and `on_total` hears each one's count.

    The service's counts are not trusted blindly (ImplausibleCountError): the parts of a window
    may not count much more than the window itself (each event is counted at most twice, once in
    a neighbour's padding; new events get some slack), and planning may not take more count
    requests than the roots' counts could ever need. Depth is bounded by `MIN_WINDOW`.
    """
    if max_events < 1:
        raise ValueError("max_events must be >= 1")
    # Aim below the limit so that a part a little denser than average still fits.
    target = max(1, int(max_events * 0.6))
    roots = [root] if isinstance(root, Window) else list(root)
    leaves: list[PlannedWindow] = []
    pending: dict[Future[int], Window] = {executor.submit(count, r): r for r in roots}
    # the roots' own counts, told apart by their futures: a part may equal a root by value
    root_counts = set(pending)
    # a window being split: its count, what its parts counted so far, its parts not yet counted
    splits: dict[Window, list[int]] = {}
    parent_of: dict[Window, Window] = {}
    requests, budget = len(roots), PLAN_BASE_REQUESTS * len(roots)
    try:
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                window = pending.pop(future)
                n = future.result()
                if future in root_counts:
                    budget += PLAN_REQUESTS_PER_WINDOW * math.ceil(n / max_events)
                    if on_total is not None:
                        on_total(n)  # a root's size, known early
                parent = parent_of.pop(window, None)
                if parent is not None:
                    split = splits[parent]
                    split[1] += n
                    split[2] -= 1
                    if split[1] > 3 * split[0] + max_events:
                        raise ImplausibleCountError(
                            f"the service's counts do not add up: it counted {split[0]:,} events "
                            f"in {parent}, and already {split[1]:,} in parts of it; the service's "
                            "count is unreliable: report this to your TrueFoundry administrator"
                        )
                    if split[2] == 0:
                        del splits[parent]
                if n == 0:
                    continue
                if n <= max_events or not window.can_split():
                    leaves.append(PlannedWindow(window, n))
                    continue
                parts = window.split(min(MAX_FANOUT, max(2, math.ceil(n / target))))
                if len(parts) < 2:  # no whole millisecond strictly inside to split it at
                    leaves.append(PlannedWindow(window, n))
                    continue
                requests += len(parts)
                if requests > budget:
                    raise ImplausibleCountError(
                        f"planning {_span(roots)} would take more than {budget:,} count "
                        f"requests (the service counted {n:,} events in {window}): its counts do "
                        "not narrow down; report this to your TrueFoundry administrator"
                    )
                splits[window] = [n, 0, len(parts)]
                # Newest first: a first run's range starts years before most of its events,
                # and the dense recent parts are the ones with more splitting to come.
                for part in reversed(parts):
                    parent_of[part] = window
                    pending[executor.submit(count, part)] = part
    finally:
        for future in pending:
            future.cancel()
    leaves.sort()
    return leaves


def _span(windows: Sequence[Window]) -> Window:
    """The one window from the first start to the last end of `windows`."""
    return Window(min(w.start for w in windows), max(w.end for w in windows))
