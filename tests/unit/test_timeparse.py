"""Times and durations as users type them: a number without a unit is refused, never guessed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import parse_since
from tfy_audit._core.timeparse import parse_duration, parse_user_time

NOW = datetime(2026, 11, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", ["90", "7", "1200", "1990", " 30 ", "2.5", "0", "-3"])
@pytest.mark.parametrize("parse", ["time", "since", "duration"])
def test_a_bare_number_is_refused_with_the_unit_it_needs(parse: str, text: str) -> None:
    with pytest.raises(UsageError) as caught:
        if parse == "time":
            parse_user_time(text, "start", now=NOW)
        elif parse == "since":
            parse_since(text, "since")
        else:
            parse_duration(text, "lookback")
    message = str(caught.value)
    option = {"time": "--start", "since": "--since", "duration": "--lookback"}[parse]
    number = text.strip()
    assert message.startswith(f"{option} {number!r} has no unit; "), message
    amount = number.lstrip("-")
    if parse == "duration":  # a length of time: any unit
        assert f"write e.g. --lookback {amount}s (seconds), {amount}m, {amount}h or {amount}d" in (
            message
        ), message
    else:  # a time back from now: days, most likely
        assert f"write e.g. {option} {amount}d for {amount} days back" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("parse", ["time", "since"])
def test_a_number_that_looks_like_a_year_suggests_the_date_too(parse: str) -> None:
    with pytest.raises(UsageError) as caught:
        if parse == "time":
            parse_user_time("1990", "since", now=NOW)
        else:
            parse_since("1990", "since")
    assert "1990d" in str(caught.value)
    assert "--since 1990-01-01 if a year was meant" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026-11-01T08:30:00Z", datetime(2026, 11, 1, 8, 30, tzinfo=UTC)),
        ("2026-11-01T08:30:00+02:00", datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        ("90d", NOW - timedelta(days=90)),
        ("12h", NOW - timedelta(hours=12)),
        ("1w", NOW - timedelta(weeks=1)),
    ],
)
def test_dates_and_durations_with_units_keep_working(text: str, expected: datetime) -> None:
    assert parse_user_time(text, "start", now=NOW) == expected


def test_durations_with_units_keep_working() -> None:
    assert parse_duration("90d", "since") == timedelta(days=90)
    assert parse_duration("10m", "lookback") == timedelta(minutes=10)
    assert parse_duration("1.5h", "max-lag") == timedelta(minutes=90)
    assert parse_since("90d") == timedelta(days=90)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=UTC)
