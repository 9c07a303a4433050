"""Times and durations as users type them: ISO 8601, or a duration back from now (`7d`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pendulum

from .errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def is_duration(text: str) -> bool:
    """`90s`, `10m`, `2h`, `7d`, `1w` (a number with a unit)."""
    return _DURATION.match(text) is not None


def parse_duration(text: str, option: str) -> timedelta:
    """`90s`, `10m`, `2h`, `7d`, `1w`, or a plain number of seconds."""
    match = _DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        seconds = float(text)
    except ValueError:
        raise UsageError(
            f"--{option} {text!r} is not a duration; use e.g. 10m, 2h, 7d or a number of seconds"
        ) from None
    if seconds < 0:
        raise UsageError(f"--{option} must not be negative")
    return timedelta(seconds=seconds)


def parse_user_time(text: str, option: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 (a date, or a date-time; without an offset it is UTC), or `7d` = 7 days ago."""
    if _DURATION.match(text):
        return (now or datetime.now(UTC)) - parse_duration(text, option)
    try:
        parsed = pendulum.parse(text, tz="UTC", strict=False)
    except (ValueError, pendulum.parsing.exceptions.ParserError):
        parsed = None
    if not isinstance(parsed, datetime):
        if isinstance(parsed, pendulum.Date):
            return datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
        raise UsageError(
            f"--{option} {text!r} is not a date or time; use ISO 8601 such as 2026-11-01 or "
            "2026-11-01T08:30:00Z, or a duration back from now such as 7d"
        )
    utc = parsed.astimezone(UTC)
    # a plain datetime, so arithmetic downstream stays in the standard library
    return datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=UTC)
