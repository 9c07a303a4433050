"""Running rules over a range: each rule's query on the destination, its rows grouped into
alerts by dedup key and window.

Windows are tumbling and aligned to the Unix epoch (a `1h` window is a clock hour in UTC, a
`1d` one a UTC day), so a range run twice, or split across runs, puts each event in the same
window: the alert id, a hash of the rule, the dedup key and the window's start, is stable. A
rule's query reads from the start of the window holding the range's start, so a window the
range cuts is judged whole ("windowed rules read the history they need"). A rule that fails on
the destination is recorded as a problem and skipped; the other rules still run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from tfy_audit._core.errors import one_line
from tfy_audit._core.redact import clean
from tfy_audit._core.times import utc
from tfy_audit._detect.rules import Rule, RuleProblem
from tfy_audit._warehouse.sql_text import sql_timestamp
from tfy_audit._warehouse.view_params import DEFAULT_PARAMS, ViewParams

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Alert:
    """One alert: a rule's events for one dedup key in one window."""

    alert_id: str
    rule_id: str
    title: str
    severity: str
    attack: tuple[str, ...]
    dedup_key: dict[str, str | None]
    window_start: datetime
    window_end: datetime
    first_seen: datetime
    last_seen: datetime
    event_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert_id": self.alert_id,
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "attack": list(self.attack),
            "dedup_key": self.dedup_key,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "first_seen": self.first_seen.isoformat(),
            "last_seen": self.last_seen.isoformat(),
            "event_count": len(self.event_ids),
            "event_ids": list(self.event_ids),
        }


def window_start(at: datetime, window: timedelta) -> datetime:
    """The start of the epoch-aligned window holding `at`."""
    size = int(window.total_seconds() * 1_000_000)
    offset = (at - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=offset - offset % size)


def alert_id(rule_id: str, key: dict[str, str | None], start: datetime) -> str:
    """Stable over runs: the rule, the dedup key and the window's start."""
    text = json.dumps([rule_id, key, start.astimezone(UTC).isoformat()], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def rule_sql(
    rule: Rule, dataset: str, start: datetime, end: datetime, params: ViewParams = DEFAULT_PARAMS
) -> str:
    """The rule's query with its placeholders filled in; `start` is already the window's."""
    return (
        rule.query.replace("{dataset}", dataset)
        .replace("{start}", sql_timestamp(start))
        .replace("{end}", sql_timestamp(end))
        .replace("{timezone}", params.timezone)
        .replace("{work_start}", str(params.work_start))
        .replace("{work_end}", str(params.work_end))
    )


def _key_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return utc(value).isoformat()
    return str(value)


def group_rows(rule: Rule, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[Alert]:
    """The alerts of a rule's rows: events grouped by dedup key and window, kept where the
    window holds at least `threshold` distinct events."""
    index = {name.lower(): i for i, name in enumerate(columns)}
    groups: dict[tuple[str, datetime], tuple[dict[str, str | None], dict[str, datetime]]] = {}
    for row in rows:
        event_id = row[index["event_id"]]
        created = utc(row[index["created_at"]])
        if event_id is None or created is None:
            continue
        key = {c: _key_value(row[index[c]]) for c in rule.dedup}
        start = window_start(created, rule.window)
        slot = (json.dumps(key, sort_keys=True), start)
        events = groups.setdefault(slot, (key, {}))[1]
        events[str(event_id)] = created
    alerts = []
    for (_, start), (key, events) in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        if len(events) < rule.threshold:
            continue
        times = sorted(events.values())
        alerts.append(
            Alert(
                alert_id=alert_id(rule.id, key, start),
                rule_id=rule.id,
                title=rule.title,
                severity=rule.severity,
                attack=rule.attack,
                dedup_key=key,
                window_start=start,
                window_end=start + rule.window,
                first_seen=times[0],
                last_seen=times[-1],
                event_ids=sorted(events),
            )
        )
    return alerts


@dataclass
class Detection:
    """What one pass of the rules found, and the rules that could not run."""

    start: datetime
    end: datetime
    alerts: list[Alert] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    rules_run: int = 0


def run_rules(
    client: Any,
    rules: Sequence[Rule],
    start: datetime,
    end: datetime,
    params: ViewParams = DEFAULT_PARAMS,
) -> Detection:
    """Every rule over events created in [start, end) on an open dlt SQL client."""
    found = Detection(start, end)
    dataset = client.fully_qualified_dataset_name()
    for rule in rules:
        sql = rule_sql(rule, dataset, window_start(start, rule.window), end, params)
        try:
            with client.execute_query(sql) as cursor:
                columns = [str(d[0]) for d in cursor.description or ()]
                rows = cursor.fetchall()
            missing = [c for c in ("event_id", "created_at", *rule.dedup) if c not in columns]
            if missing:
                raise ValueError(f"the query returned no column(s) {', '.join(missing)}")
            found.alerts.extend(group_rows(rule, columns, rows))
            found.rules_run += 1
        except Exception as exc:
            fault = f"failed on the destination: {clean(one_line(exc), 200)}; fix the query"
            problem = RuleProblem(rule.origin, fault)
            logger.warning("rule %s skipped: %s", rule.id, problem.line())
            found.problems.append(problem)
    return found
