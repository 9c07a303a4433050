"""Planning a run: its windows, by the service's counts, grouped into chunks.

A run covers a `RunRange`; its windows come from `plan_around` or `plan_run` (each small
enough to page through); `chunk_plan` groups them into `Chunk`s, each committed to the
destination with the state it implies. The plain dlt source reads its whole run as one
chunk (`plan_chunk`). No dlt here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.windows import PlannedWindow, Window, plan_windows


@dataclass(frozen=True)
class RunRange:
    start: datetime
    end: datetime
    # False when the range leaves a gap after the current mark (or there is no mark yet and the
    # range does not start at the beginning of history).
    advances_state: bool


@dataclass(frozen=True)
class Chunk:
    """Consecutive windows committed to the destination together with the state they imply."""

    start: datetime
    end: datetime
    windows: list[PlannedWindow] = field(default_factory=list)
    advances_state: bool = True
    # Nothing at or after `start` was ever loaded (see `loaded_until`): rows can be appended,
    # which skips the merge's staging copy and delete.
    append: bool = False
    # The start of a window of an earlier chunk of the same run that could not be read
    # completely: the mark stops there too, or a later chunk would carry it past the gap.
    held_back_to: datetime | None = None

    @property
    def planned_events(self) -> int:
        return sum(w.count for w in self.windows)


def plan_run(
    client: AuditLogClient,
    filters: AuditLogFilters,
    run: RunRange,
    *,
    max_offset: int,
    concurrency: int,
    on_total: Callable[[int], None] | None = None,
) -> list[PlannedWindow]:
    """Windows of the run's range, each small enough to page through, by the service's count."""
    return _plan(
        client,
        filters,
        [Window(run.start, run.end)],
        max_offset=max_offset,
        concurrency=concurrency,
        on_total=on_total,
    )


def _plan(
    client: AuditLogClient,
    filters: AuditLogFilters,
    roots: list[Window],
    *,
    max_offset: int,
    concurrency: int,
    on_total: Callable[[int], None] | None = None,
) -> list[PlannedWindow]:
    def count(window: Window) -> int:
        start, end = window.query_bounds()
        return client.count(filters, start, end)

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfy-plan") as pool:
        return plan_windows(
            roots,
            count,
            max_events=max_offset,
            executor=pool,
            on_total=on_total,
        )


def plan_chunk(
    client: AuditLogClient,
    filters: AuditLogFilters,
    run: RunRange,
    *,
    max_offset: int,
    concurrency: int,
) -> Chunk:
    """The whole run as one chunk (the plain dlt source's way; `tfy-audit sync` makes many)."""
    windows = plan_run(client, filters, run, max_offset=max_offset, concurrency=concurrency)
    return Chunk(run.start, run.end, windows, run.advances_state)


def split_run(run: RunRange, at: datetime | None) -> list[RunRange]:
    """The run in two at `at` when it falls inside (planned on each side of the loaded bound,
    so neither side's count is a guess and an empty side costs no load)."""
    if at is None or not run.start < at < run.end:
        return [run]
    return [
        RunRange(run.start, at, run.advances_state),
        RunRange(at, run.end, run.advances_state),
    ]


def plan_around(
    client: AuditLogClient,
    filters: AuditLogFilters,
    run: RunRange,
    loaded_until: datetime | None,
    *,
    max_offset: int,
    concurrency: int,
    on_total: Callable[[int], None] | None = None,
) -> list[PlannedWindow]:
    """Windows of the run, planned on each side of `loaded_until`, so neither side's count is a
    guess and an empty side costs no load. The sides are counted together, their requests
    sharing round trips (a scheduled run's two counts take one); `on_total` hears each side's
    count."""
    return _plan(
        client,
        filters,
        [Window(part.start, part.end) for part in split_run(run, loaded_until)],
        max_offset=max_offset,
        concurrency=concurrency,
        on_total=on_total,
    )


def chunk_plan(
    run: RunRange,
    windows: list[PlannedWindow],
    chunk_events: int,
    loaded_until: datetime | None = None,
) -> list[Chunk]:
    """Chunks with contiguous bounds covering the run, so each can advance the mark. Chunks
    never straddle `loaded_until`: those after it hold only events never loaded before, and are
    appended instead of merged."""
    if loaded_until is not None and run.start < loaded_until < run.end:
        before, after = _split_at(windows, loaded_until)
        # An empty side needs no load of its own (a scheduled run that finds nothing new
        # makes one load, not two): no events there, so the other side's way covers it.
        if not after:
            return _chunks(run, before, chunk_events, False)
        if not before:
            return _chunks(run, after, chunk_events, True)
        return _chunks(
            RunRange(run.start, loaded_until, run.advances_state), before, chunk_events, False
        ) + _chunks(RunRange(loaded_until, run.end, run.advances_state), after, chunk_events, True)
    append = loaded_until is None or run.start >= loaded_until
    return _chunks(run, windows, chunk_events, append)


def _split_at(
    windows: list[PlannedWindow], at: datetime
) -> tuple[list[PlannedWindow], list[PlannedWindow]]:
    before: list[PlannedWindow] = []
    after: list[PlannedWindow] = []
    for planned in windows:
        w = planned.window
        if w.end <= at:
            before.append(planned)
        elif w.start >= at:
            after.append(planned)
        else:  # the fetcher learns the true counts from the first page of each half
            half = (planned.count + 1) // 2
            before.append(PlannedWindow(Window(w.start, at), half))
            after.append(PlannedWindow(Window(at, w.end), half))
    return before, after


def _chunks(
    run: RunRange, windows: list[PlannedWindow], chunk_events: int, append: bool
) -> list[Chunk]:
    groups = group_into_chunks(windows, chunk_events)
    if not groups:
        return [Chunk(run.start, run.end, [], run.advances_state, append)]
    chunks: list[Chunk] = []
    for i, group in enumerate(groups):
        start = run.start if i == 0 else chunks[-1].end
        end = run.end if i == len(groups) - 1 else groups[i + 1][0].window.start
        chunks.append(Chunk(start, end, group, run.advances_state, append))
    return chunks


def group_into_chunks(
    windows: Sequence[PlannedWindow], max_events: int
) -> list[list[PlannedWindow]]:
    """Consecutive windows, in time order, grouped so each chunk holds about `max_events`."""
    chunks: list[list[PlannedWindow]] = []
    current: list[PlannedWindow] = []
    size = 0
    for planned in sorted(windows):
        if current and size + planned.count > max_events:
            chunks.append(current)
            current, size = [], 0
        current.append(planned)
        size += planned.count
    if current:
        chunks.append(current)
    return chunks
