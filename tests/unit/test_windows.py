"""Window planning: exact coverage, count-driven splitting, chunk bounds."""

from __future__ import annotations

import bisect
import itertools
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.planning import RunRange, chunk_plan, group_into_chunks, plan_around
from tfy_audit._service.windows import (
    PlannedWindow,
    Window,
    plan_windows,
    split_points,
)

from tests.conftest import SerialExecutor

T0 = datetime(2026, 8, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


def counter(times: list[datetime]) -> Callable[[Window], int]:
    """Counts like a service whose bounds are both inclusive, on the padded query bounds."""
    ordered = sorted(times)

    def count(window: Window) -> int:
        lo, hi = window.query_bounds()
        return bisect.bisect_right(ordered, hi) - bisect.bisect_left(ordered, lo)

    return count


def assert_each_event_in_one_window(plan: list[PlannedWindow], times: list[datetime]) -> None:
    for t in set(times):
        holding = [p for p in plan if p.window.start <= t < p.window.end]
        assert len(holding) == 1, t


def test_split_points_are_whole_milliseconds_and_cover_the_range() -> None:
    start = T0 + timedelta(microseconds=1500)
    end = start + timedelta(seconds=10)
    points = split_points(start, end, 7)
    assert points[0] == start and points[-1] == end
    assert points == sorted(set(points))
    assert all(p.microsecond % 1000 == 0 for p in points[1:-1])


def test_split_of_a_narrow_window_never_makes_empty_windows() -> None:
    w = Window(T0, T0 + 3 * MS)
    parts = w.split(10)
    assert [(p.start, p.end) for p in parts] == [
        (T0, T0 + MS),
        (T0 + MS, T0 + 2 * MS),
        (T0 + 2 * MS, T0 + 3 * MS),
    ]
    assert not Window(T0, T0 + MS).can_split()


def test_query_bounds_cover_the_window_under_any_bound_semantics() -> None:
    w = Window(T0, T0 + timedelta(seconds=1))
    lo, hi = w.query_bounds()
    # exclusive both ways, the open interval (lo, hi) still contains every instant of [start, end)
    assert lo < w.start and hi == w.end


def test_plan_windows_respects_the_limit_and_covers_every_event() -> None:
    rng = random.Random(3)
    times = [T0 + timedelta(milliseconds=rng.randrange(0, 86_400_000)) for _ in range(20_000)]
    # a hot spot: 3,000 events in one millisecond, and a dense minute
    times += [T0 + timedelta(hours=5)] * 3_000
    times += [T0 + timedelta(hours=7, milliseconds=rng.randrange(60_000)) for _ in range(9_000)]
    root = Window(T0, T0 + timedelta(days=1))
    count = counter(times)
    plan = plan_windows(root, count, max_events=2_500, executor=SerialExecutor())

    assert all(p.count <= 2_500 or not p.window.can_split() for p in plan)
    assert all(a.window.end <= b.window.start for a, b in itertools.pairwise(plan))
    # every event falls in exactly one planned window's [start, end)
    starts = [p.window.start for p in plan]
    for t in set(times):
        i = bisect.bisect_right(starts, t) - 1
        assert i >= 0 and plan[i].window.start <= t < plan[i].window.end
    # the 1 ms hot spot could not be split and is planned alone
    hot = [p for p in plan if p.window.start <= T0 + timedelta(hours=5) < p.window.end]
    assert hot[0].window.width == MS and hot[0].count >= 3_000


def test_plan_windows_drops_empty_windows() -> None:
    times = [T0 + timedelta(days=30)]
    root = Window(datetime(2015, 1, 1, tzinfo=UTC), T0 + timedelta(days=60))
    plan = plan_windows(root, counter(times), max_events=10, executor=SerialExecutor())
    assert [p.count for p in plan] == [1]


def test_concurrent_planning_plans_what_serial_planning_does() -> None:
    rng = random.Random(5)
    times = [T0 + timedelta(milliseconds=rng.randrange(0, 86_400_000)) for _ in range(30_000)]
    times += [T0 + timedelta(hours=3, milliseconds=rng.randrange(1_000)) for _ in range(8_000)]
    root = Window(T0, T0 + timedelta(days=1))
    serial = plan_windows(root, counter(times), max_events=2_000, executor=SerialExecutor())
    totals: list[int] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = plan_windows(
            root, counter(times), max_events=2_000, executor=pool, on_total=totals.append
        )
    assert concurrent == serial
    assert totals == [len(times)]
    assert all(p.count <= 2_000 for p in concurrent)
    assert_each_event_in_one_window(concurrent, times)


def test_a_window_is_split_as_soon_as_its_count_arrives() -> None:
    """A slow count holds up nothing but its own window: the dense window next to it is split
    and its parts counted meanwhile (a level-by-level plan would wait for the slow count)."""
    times = [T0 + timedelta(hours=1, milliseconds=i) for i in range(50)]  # dense, first part
    times += [T0 + timedelta(hours=20)]  # sparse, in the slow part
    root = Window(T0, T0 + timedelta(days=1))
    plain = counter(times)
    deeper_counted = threading.Event()
    waited: list[bool] = []

    def count(window: Window) -> int:
        if window.width < timedelta(hours=1):
            deeper_counted.set()  # a part of a part: the second level
        elif window.start >= T0 + timedelta(hours=12) and window.width < root.width:
            waited.append(deeper_counted.wait(timeout=30))
        return plain(window)

    with ThreadPoolExecutor(max_workers=4) as pool:
        plan = plan_windows(root, count, max_events=20, executor=pool)
    assert waited and all(waited)
    assert all(p.count <= 20 for p in plan)
    assert_each_event_in_one_window(plan, times)


def test_several_roots_are_planned_as_each_would_be_alone() -> None:
    rng = random.Random(11)
    times = [T0 + timedelta(milliseconds=rng.randrange(0, 86_400_000)) for _ in range(12_000)]
    times += [T0 + timedelta(hours=30, milliseconds=rng.randrange(60_000)) for _ in range(4_000)]
    bound = T0 + timedelta(hours=20)
    roots = [Window(T0, bound), Window(bound, T0 + timedelta(days=2))]
    alone = [
        plan_windows(r, counter(times), max_events=1_000, executor=SerialExecutor()) for r in roots
    ]
    totals: list[int] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = plan_windows(
            roots, counter(times), max_events=1_000, executor=pool, on_total=totals.append
        )
    assert together == alone[0] + alone[1]
    assert sorted(totals) == sorted(counter(times)(r) for r in roots)
    assert_each_event_in_one_window(together, times)


def test_a_window_with_no_whole_millisecond_inside_is_a_leaf() -> None:
    """1.5 ms from a whole millisecond: splitting it gives it back whole, and counting that
    part again would be counting the same window until the request budget ran out."""
    root = Window(T0, T0 + timedelta(microseconds=1_500))
    assert root.can_split() and root.split(2) == [root]
    calls: list[Window] = []
    totals: list[int] = []

    def count(window: Window) -> int:
        calls.append(window)
        return 200

    plan = plan_windows(
        root, count, max_events=100, executor=SerialExecutor(), on_total=totals.append
    )
    assert plan == [PlannedWindow(root, 200)]
    assert calls == [root] and totals == [200]


def test_a_run_is_planned_on_both_sides_of_the_loaded_bound_at_once() -> None:
    """A scheduled run's two counts (before and after the loaded bound) are in flight together:
    each answer waits for the other request to arrive, which two requests in turn never do.
    The plan is what each side's count says, and `on_total` hears both counts."""
    bound = T0 + timedelta(hours=12)
    times = [T0 + timedelta(hours=h) for h in (1, 2, 13, 14, 15)]
    both_sent = threading.Barrier(2, timeout=10)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["metric"] == "count"
        both_sent.wait()  # BrokenBarrierError if the other side is not asked meanwhile
        lo = datetime.fromisoformat(request.url.params["start"])
        hi = datetime.fromisoformat(request.url.params["end"])
        total = sum(lo <= t <= hi for t in times)
        return httpx.Response(
            200, content=orjson.dumps({"data": [], "pagination": {"total": total}})
        )

    client = AuditLogClient(
        "http://control-plane.test",
        "secret-token",
        transport=httpx.MockTransport(handler),
        allow_insecure_http=True,  # a mock host: nothing leaves the process
    )
    totals: list[int] = []
    run = RunRange(T0, T0 + timedelta(days=1), advances_state=True)
    with client:
        plan = plan_around(
            client,
            AuditLogFilters(),
            run,
            bound,
            max_offset=100,
            concurrency=4,
            on_total=totals.append,
        )
    assert plan == [
        PlannedWindow(Window(T0, bound), 2),
        PlannedWindow(Window(bound, T0 + timedelta(days=1)), 3),
    ]
    assert sorted(totals) == [2, 3]
    assert client.stats.requests == 2


def test_a_failed_count_fails_the_plan() -> None:
    def count(window: Window) -> int:
        if window.width < timedelta(days=1):
            raise RuntimeError("service down")
        return 100

    with ThreadPoolExecutor(max_workers=4) as pool, pytest.raises(RuntimeError, match="down"):
        plan_windows(Window(T0, T0 + timedelta(days=1)), count, max_events=10, executor=pool)


def test_chunks_are_contiguous_and_cover_the_run() -> None:
    windows = [
        PlannedWindow(Window(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1)), 400)
        for h in (1, 2, 5, 9, 10)
    ]
    run = RunRange(T0, T0 + timedelta(days=1), advances_state=True)
    chunks = chunk_plan(run, windows, chunk_events=800)
    assert [len(c.windows) for c in chunks] == [2, 2, 1]
    assert chunks[0].start == run.start and chunks[-1].end == run.end
    assert all(a.end == b.start for a, b in itertools.pairwise(chunks))
    assert all(c.start <= c.windows[0].window.start for c in chunks)
    assert group_into_chunks([], 10) == []
    empty = chunk_plan(run, [], 800)
    assert [(c.start, c.end, c.windows) for c in empty] == [(run.start, run.end, [])]


def test_window_rejects_naive_and_empty() -> None:
    with pytest.raises(ValueError):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError):
        Window(T0, T0)


def test_chunks_after_the_loaded_mark_are_appended_and_never_straddle_it() -> None:
    windows = [
        PlannedWindow(Window(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 2)), 100)
        for h in (0, 2, 4)
    ]
    run = RunRange(T0, T0 + timedelta(hours=6), advances_state=True)
    mark = T0 + timedelta(hours=3)
    chunks = chunk_plan(run, windows, chunk_events=1_000, loaded_until=mark)
    assert [(c.start, c.end, c.append) for c in chunks] == [
        (run.start, mark, False),
        (mark, run.end, True),
    ]
    assert chunks[0].windows[-1].window == Window(T0 + timedelta(hours=2), mark)
    assert chunks[1].windows[0].window == Window(mark, T0 + timedelta(hours=4))
    # a run wholly before the mark (a repair) merges; wholly after it appends
    assert not chunk_plan(run, windows, 1_000, loaded_until=run.end)[0].append
    assert chunk_plan(run, windows, 1_000, loaded_until=run.start)[0].append
