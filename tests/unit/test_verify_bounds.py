"""verify's reading of the service's bounds, and the day counts it compares with the service's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from tfy_audit._core.options import SyncOptions
from tfy_audit._core.settings import HISTORY_START
from tfy_audit._engine.verify import (
    BoundReading,
    FirstDay,
    WarehouseDay,
    compare,
    day_buckets,
    first_day,
    read_bounds,
    sorted_micros,
    warehouse_day_counts,
)
from tfy_audit._service.client import AuditLogFilters

MS = timedelta(milliseconds=1)
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


class FakeService:
    """`count()` over a fixed list of createdAt values, reading start/end as told."""

    def __init__(self, events: list[datetime], start_inclusive: bool, end_inclusive: bool):
        self.events = events
        self.start_inclusive = start_inclusive
        self.end_inclusive = end_inclusive
        self.requests = 0

    def count(self, filters: Any, start: datetime, end: datetime) -> int:
        self.requests += 1
        return sum(
            1
            for e in self.events
            if (start <= e if self.start_inclusive else start < e)
            and (e <= end if self.end_inclusive else e < end)
        )


def micros(events: list[datetime]) -> list[int]:
    return sorted_micros(pa.array(events, pa.timestamp("us", tz="UTC")))


READINGS = [(True, False), (False, True), (False, False), (True, True)]


@pytest.mark.parametrize(("start_inclusive", "end_inclusive"), READINGS)
def test_the_reading_is_learnt_from_isolated_instants(
    start_inclusive: bool, end_inclusive: bool
) -> None:
    # a crowded millisecond pair (not isolated) and three isolated instants, one with 2 events
    events = [T0, T0 + MS, T0 + timedelta(hours=1), T0 + timedelta(hours=2)] * 1
    events += [T0 + timedelta(hours=3)] * 2
    service = FakeService(events, start_inclusive, end_inclusive)
    reading = read_bounds(service, AuditLogFilters(), micros(events))  # type: ignore[arg-type]
    assert reading == BoundReading(start_inclusive, end_inclusive)
    assert service.requests == 9  # three instants, three counts each


def test_no_isolated_instant_leaves_the_reading_unknown() -> None:
    events = [T0 + i * MS for i in range(50)]  # every millisecond has a neighbour
    service = FakeService(events, True, False)
    reading = read_bounds(service, AuditLogFilters(), micros(events))  # type: ignore[arg-type]
    assert reading == BoundReading()
    assert service.requests == 0


def test_an_instant_the_service_does_not_hold_leaves_the_reading_unknown() -> None:
    warehouse = [T0, T0 + timedelta(hours=1)]
    service = FakeService([T0], True, False)  # the later event is gone from the service
    reading = read_bounds(service, AuditLogFilters(), micros(warehouse))  # type: ignore[arg-type]
    assert reading == BoundReading()


def test_probes_that_disagree_leave_that_side_unknown() -> None:
    """The service moved the latest event back by a millisecond: alone, its probe would read
    [start, end) as (start, end]; the other probes outvote it."""
    latest = T0 + timedelta(hours=3)
    warehouse = [T0, T0 + timedelta(hours=1), latest]
    service = FakeService([T0, T0 + timedelta(hours=1), latest - MS], True, False)
    reading = read_bounds(service, AuditLogFilters(), micros(warehouse))  # type: ignore[arg-type]
    assert reading == BoundReading(None, None)


def test_a_count_that_fits_no_reading_is_unknown() -> None:
    class Odd(FakeService):
        def count(self, filters: Any, start: datetime, end: datetime) -> int:
            n = super().count(filters, start, end)
            return n if end - start > MS else 7  # neither 0 nor the events on the instant

    events = [T0]
    reading = read_bounds(Odd(events, True, True), AuditLogFilters(), micros(events))  # type: ignore[arg-type]
    assert reading == BoundReading()


@pytest.mark.parametrize(
    ("reading", "expected"),
    [
        (BoundReading(True, True), (1, 1)),
        (BoundReading(True, False), (1, 1)),
        (BoundReading(False, True), (1, 1)),
        (BoundReading(False, False), (1, 1)),
        (BoundReading(None, False), (1, 4)),
        (BoundReading(False, None), (1, 3)),
        (BoundReading(None, None), (1, 6)),
    ],
)
def test_a_day_counts_its_bound_events_only_where_the_reading_is_unknown(
    reading: BoundReading, expected: tuple[int, int]
) -> None:
    assert WarehouseDay(inside=1, on_start=3, on_end=2).counted(reading) == expected


@pytest.mark.parametrize(("start_inclusive", "end_inclusive"), READINGS)
def test_a_complete_warehouse_matches_every_day_and_a_missing_event_shows(
    start_inclusive: bool, end_inclusive: bool
) -> None:
    """Days with events on both midnights, a range that starts mid-millisecond (`--start 7d`)
    with an event on the millisecond before it: every day matches; without one event of a day,
    that day (and only days that can hold it) differ."""
    start = datetime(2026, 11, 18, 6, 0, 0, 500, tzinfo=UTC)  # 0.5 ms past a millisecond
    end = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    midnights = [datetime(2026, 11, d, tzinfo=UTC) for d in (19, 20, 21)]
    events = [start.replace(microsecond=0), start.replace(microsecond=0) - MS]
    events += [m + d for m in midnights for d in (-MS, timedelta(0), timedelta(hours=3))]
    events += [end - MS, end]
    service_events = list(events)
    buckets = day_buckets(start.replace(microsecond=0), end)
    service = FakeService(service_events, start_inclusive, end_inclusive)
    bounds = BoundReading(start_inclusive, end_inclusive)

    def days(warehouse: list[datetime]) -> dict[str, tuple[int, int, int]]:
        counts = {
            b.day: service.count(None, *b.query_bounds(bounds))
            for b in buckets
            if service.count(None, *b.query_bounds(bounds))
        }
        found = compare(counts, warehouse_day_counts(micros(warehouse), buckets), buckets, bounds)
        return {
            str(d.day): (d.service, d.warehouse, d.warehouse_most) for d in found if not d.matches
        }

    assert days(events) == {}
    victim = midnights[1] - MS  # the last millisecond of the 19th
    missing = days([e for e in events if e != victim])
    assert "2026-11-19" in missing
    assert set(missing) <= {"2026-11-19", "2026-11-20"}


def test_days_are_counted_exactly_once_the_reading_is_known() -> None:
    """A service that reads `end` as inclusive: an event on the verified range's end (the mark,
    which no sync of the range loads) is no day's, and one missing on a midnight inside the
    range is its own day's, never the day before."""
    start, end = datetime(2026, 11, 19, tzinfo=UTC), datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    inner = datetime(2026, 11, 20, tzinfo=UTC)
    buckets = day_buckets(start, end)
    bounds = BoundReading(False, True)
    service = FakeService([start + timedelta(hours=1), inner, end], False, True)
    counts = {b.day: service.count(None, *b.query_bounds(bounds)) for b in buckets}
    assert counts == {start.date(): 1, inner.date(): 1}

    complete = warehouse_day_counts(micros([start + timedelta(hours=1), inner]), buckets)
    assert all(d.matches for d in compare(counts, complete, buckets, bounds))

    short = warehouse_day_counts(micros([start + timedelta(hours=1)]), buckets)
    found = compare(counts, short, buckets, bounds)
    assert [(d.day, d.service, d.warehouse) for d in found if not d.matches] == [
        (inner.date(), 1, 0)
    ]


@pytest.mark.parametrize(
    ("start", "since", "recorded", "expected", "why"),
    [
        (None, None, None, HISTORY_START, "unrecorded"),
        (None, timedelta(days=30), None, datetime(2026, 10, 26, 12, tzinfo=UTC), "since"),
        # the record wins over a --since (from the config, or a different one today)
        (
            None,
            timedelta(days=5),
            datetime(2026, 9, 1, 1, 2, 3, 4567, tzinfo=UTC),
            datetime(2026, 9, 1, 1, 2, 3, 4000, tzinfo=UTC),
            "first_sync",
        ),
        (None, None, HISTORY_START, HISTORY_START, "history"),
        (
            datetime(2026, 11, 1, tzinfo=UTC),
            None,
            HISTORY_START,
            datetime(2026, 11, 1, tzinfo=UTC),
            "start",
        ),
    ],
)
def test_verify_starts_at_start_else_the_first_syncs_start(
    start: datetime | None,
    since: timedelta | None,
    recorded: datetime | None,
    expected: datetime,
    why: str,
) -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    begin = first_day(SyncOptions(start=start, since=since), recorded, now)
    assert (begin.start, begin.why) == (expected, why)


def test_the_first_day_says_why_in_one_line() -> None:
    at = datetime(2026, 9, 1, 1, 2, 3, tzinfo=UTC)
    assert FirstDay(at, "first_sync").text == (
        "verify checks from 2026-09-01 (2026-09-01T01:02:03+00:00): "
        "where the first sync started (its --since)"
    )
    assert FirstDay(HISTORY_START, "history").text == (
        "verify checks from 2015-01-01 (2015-01-01T00:00:00+00:00): "
        "the documented lower bound of history, where the first sync started"
    )


def test_state_without_the_record_starts_where_the_run_history_says() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    runs = datetime(2026, 10, 1, 6, 30, tzinfo=UTC)
    begin = first_day(SyncOptions(since=timedelta(days=5)), None, now, from_runs=runs)
    assert (begin.start, begin.why) == (runs, "run_history")
    # the state's record wins; a first run that read the whole history is the lower bound
    assert first_day(SyncOptions(), HISTORY_START, now, from_runs=runs).why == "history"
    assert first_day(SyncOptions(), None, now, from_runs=HISTORY_START).why == "unrecorded"


def test_a_long_list_of_days_is_summarised_as_ranges() -> None:
    from datetime import date

    from tfy_audit._engine.verify import summarize_days

    def days(*spans: tuple[int, int]) -> list[date]:
        return [date(2026, 1, d) for lo, hi in spans for d in range(lo, hi + 1)]

    assert summarize_days(days((3, 3), (9, 9))) == "2026-01-03, 2026-01-09"
    assert summarize_days(days((1, 2), (5, 5))) == "2026-01-01, 2026-01-02, 2026-01-05"
    assert summarize_days(days((1, 20), (25, 25))) == "2026-01-01..2026-01-20, 2026-01-25"
    odd = [date(2026, 1, d) for d in range(1, 30, 2)]  # 15 days, none next to another
    assert summarize_days(odd) == (
        "2026-01-01, 2026-01-03, 2026-01-05, 2026-01-07, 2026-01-09, 2026-01-11, 2026-01-13, "
        "2026-01-15, 2026-01-17, 2026-01-19 and 5 more day(s) (--json lists them all)"
    )
    assert summarize_days([]) == ""
