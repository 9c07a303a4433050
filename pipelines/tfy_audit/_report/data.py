"""What the report shows, as typed data: the figures of a range, the rows of each panel, the
summary handed back to the caller. Filled by `collect.py`, drawn by `render.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from tfy_audit._warehouse.view_params import ViewParams

# The range when none is given: this long, up to its end.
DEFAULT_RANGE: Final = timedelta(days=30)
# A token whose last use is older than this, counted back from the range's end, is dormant.
DORMANT_AFTER: Final = timedelta(days=30)
LATEST_LIMIT: Final = 50
# Rows per group of a detailed table; the heading says how many there are in all.
GROUP_LIMIT: Final = 200
TOP_ACTIONS: Final = 15
TOP_SUBJECTS: Final = 10
INCOMPLETE_LIMIT: Final = 20
# Latest `event_anomalies` records listed (the heading gives the count per kind).
ANOMALY_LIMIT: Final = 50
# Most recent alerts listed (the per-rule table counts them all).
ALERT_LIMIT: Final = 50

Row = tuple[Any, ...]


@dataclass(frozen=True)
class RuleAlerts:
    """One rule's alerts in the range: what the rule is, how many alerts and events."""

    rule_id: str
    title: str
    severity: str
    attack: tuple[str, ...]
    alerts: int
    events: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "attack": list(self.attack),
            "alerts": self.alerts,
            "events": self.events,
        }


@dataclass(frozen=True)
class AlertEntry:
    """One alert of the range, with where it was delivered (channel: when) and the channels
    this dataset has delivered to that have not confirmed it yet."""

    alert_id: str
    rule_id: str
    severity: str
    title: str
    dedup_key: dict[str, Any]
    first_seen: datetime | None
    last_seen: datetime | None
    events: int
    delivered: dict[str, datetime | None] = field(default_factory=dict)
    pending: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "severity": self.severity,
            "title": self.title,
            "dedup_key": dict(self.dedup_key),
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "events": self.events,
            "delivered": {channel: iso(at) for channel, at in self.delivered.items()},
            "pending": list(self.pending),
        }


@dataclass(frozen=True)
class AlertsSection:
    """The alerts of the range (those whose events overlap it). A channel is known once any
    alert was delivered there: the warehouse records deliveries, not the flags a run had, so
    a channel that never confirmed anything cannot be told from one never configured."""

    total: int
    rules: list[RuleAlerts]
    recent: list[AlertEntry]
    channels: tuple[str, ...]
    pending: dict[str, int]  # per known channel: alerts of the range not delivered there

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "rules": [r.as_dict() for r in self.rules],
            "recent": [a.as_dict() for a in self.recent],
            "channels": list(self.channels),
            "pending": dict(self.pending),
        }


@dataclass(frozen=True)
class ReportSummary:
    """The figures the report shows (for its range), for the CLI to print."""

    path: Path
    events: int
    subjects: int
    days: int  # UTC days with at least one event
    sensitive: int
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    last_sync_at: datetime | None = None
    windows: int = 0
    incomplete_windows: int = 0
    range_start: datetime | None = None
    range_end: datetime | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    new_subjects: int = 0
    off_hours: int = 0
    # None: no detection has run on this dataset (no `alerts` table)
    alerts: AlertsSection | None = None

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "path": str(self.path),
            "events": self.events,
            "subjects": self.subjects,
            "days": self.days,
            "sensitive": self.sensitive,
            "first_event_at": iso(self.first_event_at),
            "last_event_at": iso(self.last_event_at),
            "last_sync_at": iso(self.last_sync_at),
            "windows": self.windows,
            "incomplete_windows": self.incomplete_windows,
            "range_start": iso(self.range_start),
            "range_end": iso(self.range_end),
            "tiers": dict(self.tiers),
            "new_subjects": self.new_subjects,
            "off_hours": self.off_hours,
            "alerts": self.alerts.as_dict() if self.alerts else None,
        }


@dataclass(frozen=True)
class Coverage:
    windows: int
    incomplete: int
    covered_from: datetime | None
    covered_to: datetime | None
    rows_read: int
    syncs: int
    last_fetched_at: datetime | None
    incomplete_rows: list[Row]


@dataclass(frozen=True)
class Period:
    """The figures of one range, for the headline and its comparison."""

    events: int = 0
    subjects: int = 0
    days: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    tiers: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    new_subjects: int = 0
    off_hours: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    kinds: dict[str, int] = field(default_factory=dict)
    token_uses: int = 0

    @property
    def sensitive(self) -> int:
        return sum(self.tiers.values())


@dataclass
class ReportData:
    dataset: str
    destination: str
    now: datetime
    start: datetime
    end: datetime
    params: ViewParams
    cur: Period = field(default_factory=Period)
    prev: Period = field(default_factory=Period)
    daily: list[tuple[date, int, int]] = field(default_factory=list)
    top_actions: list[tuple[str | None, int]] = field(default_factory=list)
    top_subjects: list[Row] = field(default_factory=list)
    sensitive_rows: dict[str, list[Row]] = field(default_factory=dict)
    access_rows: list[Row] = field(default_factory=list)
    first_seen: list[Row] = field(default_factory=list)
    external: list[Row] = field(default_factory=list)
    off_hours_subjects: list[Row] = field(default_factory=list)
    off_hours_latest: list[Row] = field(default_factory=list)
    heat: dict[tuple[int, int], int] = field(default_factory=dict)
    dormant: list[Row] = field(default_factory=list)
    tokens: list[Row] = field(default_factory=list)
    tokens_prev: dict[tuple[Any, Any], int] = field(default_factory=dict)
    workspaces: list[Row] = field(default_factory=list)
    clusters: list[Row] = field(default_factory=list)
    scope_prev: dict[tuple[str, Any], int] = field(default_factory=dict)
    latest: list[Row] = field(default_factory=list)
    all_time_events: int = 0
    last_loaded_event_at: datetime | None = None
    coverage: Coverage | None = None
    verify: Row | None = None
    anomaly_counts: dict[str, int] = field(default_factory=dict)
    anomalies: list[Row] = field(default_factory=list)
    loads: int = 0
    last_load_at: datetime | None = None
    # None: no detection has run on this dataset (no `alerts` table)
    alerts: AlertsSection | None = None
    # where the first (unfiltered) sync started: no event before it was loaded (`--since`)
    history_start: datetime | None = None

    @property
    def prev_loaded(self) -> bool:
        """Whether the previous range lies wholly in the loaded history, so that comparing
        with it compares events rather than history the first sync skipped."""
        return self.history_start is None or self.prev_start >= self.history_start

    @property
    def last_sync_at(self) -> datetime | None:
        if self.coverage and self.coverage.last_fetched_at:
            return self.coverage.last_fetched_at
        return self.last_load_at

    @property
    def prev_start(self) -> datetime:
        return self.start - (self.end - self.start)
