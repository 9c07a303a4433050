"""Timestamps as aware UTC datetimes, whatever produced them: the service's ISO 8601 text, or a
destination's driver (aware in the session's zone, or naive values meant as UTC).

No third-party imports: the decoder worker processes use `parse_timestamp` on every page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload


@overload
def utc(value: datetime) -> datetime: ...


@overload
def utc(value: object) -> datetime | None: ...


def utc(value: object) -> datetime | None:
    """`value` as an aware UTC datetime (naive means UTC); None when it is not a datetime."""
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; naive means UTC; None if unparseable."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            # Lower-case `t`/`z` and stray whitespace are ISO enough to accept.
            try:
                parsed = datetime.fromisoformat(value.strip().upper())
            except ValueError:
                return None
    elif isinstance(value, datetime):
        parsed = value
    else:
        return None
    tz = parsed.tzinfo
    if tz is UTC:
        return parsed
    if tz is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
