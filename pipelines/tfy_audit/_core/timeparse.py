"""Times and durations as users type them: ISO 8601, or a duration back from now (`7d`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tfy_audit._core.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A number without a unit: pendulum reads `90` as 1990-12-07 and `7` as the 7th of this month,
# and a number of seconds is rarely what a user means by `--since 90`; it is refused.
_BARE_NUMBER = re.compile(r"^\s*[+-]?\d+(?:\.\d+)?\s*$")


def is_duration(text: str) -> bool:
    """`90s`, `10m`, `2h`, `7d`, `1w` (a number with a unit)."""
    return _DURATION.match(text) is not None


def refuse_bare_number(text: str, option: str, *, back: bool = True) -> None:
    """A number without a unit is refused with one line naming the unit it needs (and the
    date, when it looks like a year). `back`: the option is a time back from now (`--since`),
    not a length of time (`--lookback`)."""
    if _BARE_NUMBER.match(text) is None:
        return
    number = text.strip()
    amount = number.lstrip("+-")
    flag = "" if " " in option else f"--{option} "  # a config key names itself in `option`
    if not back:
        raise UsageError(
            f"--{option} {number!r} has no unit; write e.g. {flag}{amount}s (seconds), "
            f"{amount}m, {amount}h or {amount}d"
        )
    fix = f"write e.g. {flag}{amount}d for {amount} days back"
    if re.fullmatch(r"(19|20)\d\d", amount):
        fix += f", or {flag}{amount}-01-01 if a year was meant"
    raise UsageError(f"--{option} {number!r} has no unit; {fix}")


def parse_duration(text: str, option: str, *, back: bool = False) -> timedelta:
    """`90s`, `10m`, `2h`, `7d`, `1w`: a number with a unit (a bare number is refused).
    `back`: the duration says how far back from now a range starts (`--since 90d`)."""
    refuse_bare_number(text, option, back=back)
    match = _DURATION.match(text)
    if match:
        return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    raise UsageError(f"--{option} {text!r} is not a duration; use e.g. 90s, 10m, 2h or 7d")


def parse_user_time(text: str, option: str, *, now: datetime | None = None) -> datetime:
    """ISO 8601 (a date, or a date-time; without an offset it is UTC), or `7d` = 7 days ago.
    A bare number (`90`, `1990`) is refused: it is neither, whatever pendulum makes of it."""
    refuse_bare_number(text, option)
    if _DURATION.match(text):
        return (now or datetime.now(UTC)) - parse_duration(text, option, back=True)
    # here, not at the top: the command's parser imports this module, and `--help` and
    # `--version` need no pendulum (a sync imports it with dlt anyway)
    import pendulum

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
