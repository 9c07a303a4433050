"""What a report is asked to show: its range, the working hours that define off-hours, extra
severity rules. Each option and its default are declared once, as a field of `ReportOptions`;
`REPORT_FLAGS` says how the command line sets a field, and `--help` shows the default read from
here. Text as users type it becomes a value in `options_from_text`, so the command line and a
library caller get the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import FieldFlag
from tfy_audit._core.timeparse import parse_user_time
from tfy_audit._report.data import DEFAULT_RANGE
from tfy_audit._warehouse.severity import SeverityRule, load_rules
from tfy_audit._warehouse.view_params import DEFAULT_PARAMS, ViewParams, parse_work_hours


@dataclass(frozen=True)
class ReportOptions:
    """The report covers [start, end) and compares it with the range of the same length before.

    `start` None: `DEFAULT_RANGE` before the end; `end` None: the time the report is written.
    Both, when given, are timezone-aware. `timezone` and `work_hours` ([start hour, end hour),
    Monday to Friday) define off-hours; `severity_rules` take precedence over the built-in ones.
    """

    start: datetime | None = None
    end: datetime | None = None
    timezone: str = DEFAULT_PARAMS.timezone
    work_hours: tuple[int, int] = (DEFAULT_PARAMS.work_start, DEFAULT_PARAMS.work_end)
    severity_rules: tuple[SeverityRule, ...] = DEFAULT_PARAMS.severity_rules

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware (UTC)")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise UsageError(
                f"the report's start {self.start.astimezone(UTC):%Y-%m-%d %H:%M} is not "
                "before its end"
            )
        # the time zone and working hours are checked here, before any destination is opened
        ViewParams(self.severity_rules, self.timezone, *self.work_hours)

    @property
    def params(self) -> ViewParams:
        """The views' parameters these options ask for."""
        work_start, work_end = self.work_hours
        return ViewParams(self.severity_rules, self.timezone, work_start, work_end)

    def range(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, end) in UTC, with the defaults filled in from `now`."""
        end = self.end.astimezone(UTC) if self.end else now.astimezone(UTC)
        start = self.start.astimezone(UTC) if self.start else end - DEFAULT_RANGE
        if start >= end:
            raise UsageError(f"the report's start {start:%Y-%m-%d %H:%M} is not before its end")
        return start, end


@dataclass(frozen=True)
class ReportFlag(FieldFlag):
    """How one command-line flag sets one field of `ReportOptions`; `--help` shows the field's
    default as `shown` or, when None, as the default itself."""

    def help_text(self) -> str:
        return f"{self.help} (default: {self.shown or _default_text(self.field)})"


def _default_text(name: str) -> str:
    default = next(f.default for f in fields(ReportOptions) if f.name == name)
    if name == "work_hours":
        start, end = ReportOptions().work_hours
        return f"{start:02d}-{end:02d}"
    return "none" if default in (None, ()) else str(default)


_START = "ISO 8601 such as 2026-11-01, or a duration back from now such as 7d"
REPORT_FLAGS: tuple[ReportFlag, ...] = (
    # the same option as `sync --since`: a start, not a length of the range
    ReportFlag(
        "--since",
        "start",
        f"where the range starts, as for sync: {_START}; another name for --start",
        shown=f"{DEFAULT_RANGE.days} days before --end",
    ),
    ReportFlag(
        "--start",
        "start",
        f"start of the range: {_START}",
        shown=f"{DEFAULT_RANGE.days} days before --end",
    ),
    ReportFlag("--end", "end", "end of the range, ISO 8601 or a duration back such as 1d", "now"),
    ReportFlag("--timezone", "timezone", "IANA time zone of working hours, e.g. Europe/Berlin"),
    ReportFlag("--work-hours", "work_hours", "working hours, Monday to Friday, e.g. 09-18"),
    ReportFlag(
        "--severity-rules", "severity_rules", "a CSV of severity rules that take precedence"
    ),
)


def options_from_text(
    values: Mapping[str, str | None], *, now: datetime | None = None
) -> ReportOptions:
    """`ReportOptions` from the text of each flag (keyed by `ReportFlag.dest`; None or absent:
    not given). Durations such as `7d` count back from `now` (default: the current time)."""
    now = now or datetime.now(UTC)
    since, start_text = values.get("since"), values.get("start")
    if since and start_text:
        raise UsageError("--since and --start both set the range's start; give one of them")
    start_text = start_text or since
    option = "start" if values.get("start") else "since"
    end_text, hours = values.get("end"), values.get("work_hours")
    rules_path, zone = values.get("severity_rules"), values.get("timezone")
    default = ReportOptions()
    return ReportOptions(
        start=parse_user_time(start_text, option, now=now) if start_text else None,
        end=parse_user_time(end_text, "end", now=now) if end_text else None,
        timezone=zone or default.timezone,
        work_hours=parse_work_hours(hours) if hours else default.work_hours,
        severity_rules=load_rules(Path(rules_path)) if rules_path else default.severity_rules,
    )
