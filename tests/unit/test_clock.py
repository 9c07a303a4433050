"""Where a run ends by the service's clock (clock.py): pure, no HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tfy_audit._service.clock import clock_offset, end_by_service
from tfy_audit._service.planning import RunRange
from tfy_audit._service.windows import PlannedWindow, Window

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
RUN = RunRange(T0, T0 + timedelta(minutes=30), True)
WINDOWS = [
    PlannedWindow(Window(T0, T0 + timedelta(minutes=10)), 40),
    PlannedWindow(Window(T0 + timedelta(minutes=10), T0 + timedelta(minutes=20)), 30),
    PlannedWindow(Window(T0 + timedelta(minutes=20), T0 + timedelta(minutes=30)), 0),
]


def test_a_service_behind_ends_the_run_a_second_before_its_date() -> None:
    date = T0 + timedelta(minutes=15)
    run, windows = end_by_service(RUN, WINDOWS, (date, date + timedelta(minutes=15)))
    end = date - timedelta(seconds=1)
    assert run == RunRange(T0, end, True)
    assert windows == [WINDOWS[0], PlannedWindow(Window(T0 + timedelta(minutes=10), end), 30)]


def test_a_service_ahead_or_silent_leaves_the_run_to_our_clock() -> None:
    ahead = RUN.end + timedelta(minutes=15)
    assert end_by_service(RUN, WINDOWS, (ahead, RUN.end)) == (RUN, WINDOWS)
    assert end_by_service(RUN, WINDOWS, None) == (RUN, WINDOWS)


def test_a_service_behind_the_run_start_reads_one_millisecond() -> None:
    date = T0 - timedelta(hours=1)
    run, windows = end_by_service(RUN, WINDOWS, (date, RUN.end))
    assert run == RunRange(T0, T0 + timedelta(milliseconds=1), True)
    assert windows == [PlannedWindow(Window(T0, T0 + timedelta(milliseconds=1)), 40)]


def test_the_offset_is_whole_seconds_from_the_date() -> None:
    received = T0 + timedelta(milliseconds=300)
    assert clock_offset((T0, received)) == 0
    assert clock_offset((T0 - timedelta(minutes=15), received)) == -900
    assert clock_offset((T0 + timedelta(minutes=15), received)) == 900
    assert clock_offset(None) is None
