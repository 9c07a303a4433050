"""What a user may set about the views (severity rules, time zone, working hours), with no dlt:
the command line builds these while it parses its flags, before anything heavy is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tfy_audit._core.errors import UsageError
from tfy_audit._warehouse.severity import SeverityRule

_ZONE_NAME: Final = re.compile(r"^[A-Za-z0-9_+/-]{1,64}$")


@dataclass(frozen=True)
class ViewParams:
    """What a user may set about the views: extra severity rules (before the built-in ones),
    and the time zone and working hours [work_start, work_end) that define off-hours."""

    severity_rules: tuple[SeverityRule, ...] = ()
    timezone: str = "UTC"
    work_start: int = 8
    work_end: int = 19

    def __post_init__(self) -> None:
        if not _ZONE_NAME.match(self.timezone):
            raise UsageError(f"time zone {self.timezone[:64]!r} is not a name like Europe/Berlin")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise UsageError(
                f"unknown time zone {self.timezone!r}; use an IANA name like Europe/Berlin"
            ) from None
        if not 0 <= self.work_start < self.work_end <= 24:
            raise UsageError(
                f"working hours {self.work_start:02d}-{self.work_end:02d} must be HH-HH with "
                "00 <= start < end <= 24, e.g. 08-19"
            )


DEFAULT_PARAMS: Final = ViewParams()


def parse_work_hours(text: str) -> tuple[int, int]:
    """`08-19` as (8, 19); a malformed value is a usage error."""
    match = re.fullmatch(r"(\d{1,2})-(\d{1,2})", text.strip())
    if match is None:
        raise UsageError(f"--work-hours {text!r} must be HH-HH, e.g. 08-19")
    return int(match[1]), int(match[2])
