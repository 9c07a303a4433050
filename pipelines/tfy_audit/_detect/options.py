"""What a detection pass is asked to do, and the command-line flags that set it (as
`_report/options.py` and `_export/options.py` do for theirs). Imports no dlt: `--help` reads it."""

from __future__ import annotations

from dataclasses import dataclass

from tfy_audit._core.options import FieldFlag


@dataclass(frozen=True)
class DetectOptions:
    """`rules`: a user's folder of rules added to the built-in pack; the URLs: where new alerts
    go (None: kept in the table only); `timezone` and the working hours [work_start, work_end):
    what off-hours rules call off hours."""

    rules: str | None = None
    alert_webhook: str | None = None
    alert_slack: str | None = None
    timezone: str = "UTC"
    work_start: int = 8
    work_end: int = 19


@dataclass(frozen=True)
class DetectFlag(FieldFlag):
    """How one flag of `detect` and `sync --detect` sets one field of `DetectOptions`."""

    metavar: str = ""

    def help_text(self) -> str:
        defaults = DetectOptions()
        if self.field == "work_hours":
            shown = f"{defaults.work_start:02d}-{defaults.work_end:02d}"
        else:
            value = getattr(defaults, self.field)
            shown = "none" if value is None else str(value)
        return f"{self.help} (default: {self.shown or shown})"


DETECT_FLAGS: tuple[DetectFlag, ...] = (
    DetectFlag(
        "--rules",
        "rules",
        "a folder of your own *.yaml rules, added to the built-in pack",
        metavar="DIR",
    ),
    DetectFlag(
        "--alert-webhook",
        "alert_webhook",
        "POST each new alert here as JSON, signed with HMAC-SHA256 (secret from "
        "TFY_AUDIT_WEBHOOK_SECRET or webhook_secret in .dlt/secrets.toml)",
        metavar="URL",
    ),
    DetectFlag(
        "--alert-slack",
        "alert_slack",
        "post each new alert to this Slack incoming webhook",
        metavar="URL",
    ),
    DetectFlag(
        "--timezone", "timezone", "time zone of working hours, for off-hours rules", metavar="ZONE"
    ),
    DetectFlag(
        "--work-hours", "work_hours", "working hours HH-HH, for off-hours rules", metavar="HH-HH"
    ),
)
