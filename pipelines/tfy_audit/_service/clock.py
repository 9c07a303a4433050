"""The service's clock and ours: where a run may end.

The service stamps `createdAt` by its own clock. A run that reads up to this machine's `now`
and sets the mark there would, with the service's clock behind ours, pass instants the service
has not reached yet: events it stamps there later fall behind the mark, out of the next run's
range, and are never read. So a run ends at the earlier of our `now` and the service's, read
from the `Date` header of the run's first response (the planning's count) less a margin for
the header's whole seconds. With the service's clock ahead, ours bounds the run: events it
stamps in our future are read by a run once our clock has reached them.

No dlt here.
"""

from __future__ import annotations

import logging
from datetime import datetime

from tfy_audit._core.settings import CLOCK_SKEW_WARN_SECONDS, MIN_WINDOW, SERVICE_CLOCK_MARGIN
from tfy_audit._service.planning import RunRange
from tfy_audit._service.windows import PlannedWindow, Window, floor_ms

logger = logging.getLogger(__name__)


def clock_offset(service_clock: tuple[datetime, datetime] | None) -> float | None:
    """Seconds the service's clock is ahead of ours (negative: behind), to the second; None
    when the service sent no `Date`."""
    if service_clock is None:
        return None
    date, received = service_clock
    # `Date` drops the fraction: the service's clock read between it and a second later
    return round((date - received).total_seconds() + 0.5)


def warn_if_skewed(service_clock: tuple[datetime, datetime] | None) -> None:
    offset = clock_offset(service_clock)
    if service_clock is None or offset is None or abs(offset) <= CLOCK_SKEW_WARN_SECONDS:
        return
    date, received = service_clock
    logger.warning(
        "the service's clock (Date: %s) is %d s %s this machine's (%s); each run reads up to "
        "the earlier of the two: set both clocks right (NTP) to read events without delay",
        date.isoformat(),
        abs(offset),
        "behind" if offset < 0 else "ahead of",
        received.isoformat(timespec="seconds"),
    )


def end_by_service(
    run: RunRange,
    windows: list[PlannedWindow],
    service_clock: tuple[datetime, datetime] | None,
) -> tuple[RunRange, list[PlannedWindow]]:
    """The run and its planned windows, ended no later than the service's clock allows. A
    window past the end is dropped (what it may hold is read by the next run: the mark stops
    before it); a window across it is cut there, its count kept (the fetcher learns the true
    total from its first page)."""
    if service_clock is None:
        return run, windows
    end = floor_ms(service_clock[0] - SERVICE_CLOCK_MARGIN)
    if end >= run.end:
        return run, windows
    # a mark already past the service's clock (set before this bound existed) cannot move back
    end = max(end, run.start + MIN_WINDOW)
    kept: list[PlannedWindow] = []
    for planned in windows:
        window = planned.window
        if window.start >= end:
            continue
        if window.end > end:
            planned = PlannedWindow(Window(window.start, end), planned.count)
        kept.append(planned)
    logger.debug("the run ends at %s by the service's clock, not %s", end, run.end)
    return RunRange(run.start, end, run.advances_state), kept
