"""verify counts a day without the second copies of ids a sync recorded as served twice, only
where that is what makes the day differ."""

from __future__ import annotations

from datetime import UTC, date, datetime

from tfy_audit._engine.verify import DayComparison, _less_repeats

DAY = date(2026, 11, 3)
AT = datetime(2026, 11, 3, 8, 30, tzinfo=UTC)


def test_a_day_off_by_exactly_the_recorded_copies_matches() -> None:
    (day,) = _less_repeats([DayComparison(DAY, 101, 100, 100)], {"twin": AT})
    assert day == DayComparison(DAY, 100, 100, 100) and day.matches


def test_a_day_missing_more_than_the_copies_still_differs_as_counted() -> None:
    days = [DayComparison(DAY, 102, 100, 100)]
    assert _less_repeats(days, {"twin": AT}) == days


def test_a_day_that_matches_as_counted_is_left_alone() -> None:
    # the service no longer serves the id twice: nothing to take off
    days = [DayComparison(DAY, 100, 100, 100)]
    assert _less_repeats(days, {"twin": AT}) == days


def test_a_copy_on_another_day_changes_nothing() -> None:
    days = [DayComparison(DAY, 101, 100, 100)]
    other = datetime(2026, 11, 4, tzinfo=UTC)
    assert _less_repeats(days, {"twin": other}) == days
