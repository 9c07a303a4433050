"""Timestamps as the audit-log service writes and reads them.

The service writes `createdAt`/`updatedAt` the way JavaScript's `Date.toISOString()` does:
UTC, millisecond precision, a trailing `Z`. Internally the simulator orders and filters on
integer microseconds since the epoch, because clients may send bounds with microseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)

# Strict on purpose: an offset is mandatory (a naive time would be read in the server's local
# zone by a JavaScript service) and fractions beyond microseconds cannot be represented.
_ISO_RE: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)


def format_ts(dt: datetime) -> str:
    """`2026-08-01T12:34:56.789Z`: UTC, milliseconds (truncated), `Z`."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: pass an aware datetime (UTC)")
    utc = dt.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def parse_ts(s: str) -> datetime:
    """Parse an ISO 8601 timestamp with `Z` or a `+HH:MM` offset into an aware UTC datetime."""
    if not isinstance(s, str) or _ISO_RE.fullmatch(s) is None:
        raise ValueError(f"not an ISO 8601 timestamp with a UTC offset: {s!r}")
    return datetime.fromisoformat(s).astimezone(UTC)


def to_epoch_us(dt: datetime) -> int:
    """Microseconds since the epoch of an aware datetime."""
    if dt.tzinfo is None:
        raise ValueError(f"naive datetime {dt!r}: pass an aware datetime (UTC)")
    return (dt - EPOCH) // _ONE_US


def from_epoch_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


class MillisFormatter:
    """`format_ts` for integer epoch milliseconds, fast enough for a million events.

    strftime dominates the cost of formatting, so only the `YYYY-MM-DDT` prefix goes through
    it, once per day; the time of day is integer arithmetic.
    """

    __slots__ = ("_days",)

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        day, rest = divmod(ms, 86_400_000)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = f"{EPOCH + timedelta(days=day):%Y-%m-%dT}"
            self._days[day] = prefix
        minutes, ms_of_minute = divmod(rest, 60_000)
        hour, minute = divmod(minutes, 60)
        sec, milli = divmod(ms_of_minute, 1000)
        return f"{prefix}{hour:02d}:{minute:02d}:{sec:02d}.{milli:03d}Z"
