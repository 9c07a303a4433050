"""What an export is asked to do. Each option and its default are declared once, as a field of
`ExportOptions` (defaults from `_core/settings.py`); `EXPORT_FLAGS` says how the command line
sets a field, and `--help` shows the default read from here."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Final

from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import FieldFlag
from tfy_audit._core.settings import (
    DEFAULT_EXPORT_ACCOUNT,
    DEFAULT_EXPORT_REGION,
    EXPORT_FORMATS,
)

# Security Lake's partition values: an AWS region name, a 12-digit account id
_REGION: Final = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_ACCOUNT: Final = re.compile(r"^\d{12}$")
DAY: Final = timedelta(days=1)


@dataclass(frozen=True)
class ExportOptions:
    """An export to `out` (a folder, or `s3://bucket/prefix`). Without `start`, each run
    writes the UTC days whose events changed since the last export to the same place (its
    mark); with `start` (and `end`, default now), the UTC days the range touches are written
    again, whatever the mark says. Both are timezone-aware."""

    out: str
    format: str = EXPORT_FORMATS[0]
    region: str = DEFAULT_EXPORT_REGION
    account_id: str = DEFAULT_EXPORT_ACCOUNT
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise UsageError(
                f"--format {self.format!r} is not known; use one of {', '.join(EXPORT_FORMATS)}"
            )
        if not self.out.strip():
            raise UsageError("--out is empty; pass a folder or s3://bucket/prefix")
        if not _REGION.match(self.region):
            raise UsageError(
                f"--region {self.region[:40]!r} is not an AWS region name such as us-east-1"
            )
        if not _ACCOUNT.match(self.account_id):
            raise UsageError(
                f"--account-id {self.account_id[:40]!r} is not a 12-digit AWS account id"
            )
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (UTC)")
        if self.end is not None and self.start is None:
            raise UsageError("--end needs --start: a range to export again has both ends")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise UsageError("--start is not before --end; pass a range that holds time")

    def days(self, now: datetime) -> list[str] | None:
        """The UTC days (YYYYMMDD) [start, end) touches, or None for an incremental run."""
        if self.start is None:
            return None
        start = self.start.astimezone(UTC)
        end = (self.end or now).astimezone(UTC)
        day = start.replace(hour=0, minute=0, second=0, microsecond=0)
        out = []
        while day < end:
            out.append(day.strftime("%Y%m%d"))
            day += DAY
        return out


@dataclass(frozen=True)
class ExportFlag(FieldFlag):
    """How one command-line flag sets one field of `ExportOptions`."""

    def help_text(self) -> str:
        default = next(f.default for f in fields(ExportOptions) if f.name == self.field)
        return f"{self.help} (default: {self.shown or default})"


EXPORT_FLAGS: tuple[ExportFlag, ...] = (
    ExportFlag("--format", "format", f"what to write: {', '.join(EXPORT_FORMATS)}"),
    ExportFlag("--region", "region", "Security Lake's region=<...> partition: an AWS region"),
    ExportFlag(
        "--account-id", "account_id", "Security Lake's accountId=<...> partition: 12 digits"
    ),
    ExportFlag(
        "--start",
        "start",
        "export again the UTC days from this time (ISO 8601, or a duration back such as 7d), "
        "replacing their partitions",
        shown="the days changed since the last export",
    ),
    ExportFlag("--end", "end", "end of that range (ISO 8601 or 7d)", shown="now"),
)


def options_from_text(
    out: str, values: dict[str, str | None], *, now: datetime | None = None
) -> ExportOptions:
    """`ExportOptions` from the text of each flag (keyed by `ExportFlag.dest`; None: not
    given). Durations such as `7d` count back from `now` (default: the current time)."""
    from tfy_audit._core.timeparse import parse_user_time

    now = now or datetime.now(UTC)
    start, end = values.get("start"), values.get("end")
    default = ExportOptions(out=out)
    return ExportOptions(
        out=out,
        format=values.get("format") or default.format,
        region=values.get("region") or default.region,
        account_id=values.get("account_id") or default.account_id,
        start=parse_user_time(start, "start", now=now) if start else None,
        end=parse_user_time(end, "end", now=now) if end else None,
    )
