"""Reading the report's alerts section from the `alerts` and `alert_deliveries` tables that
detection writes (`_detect/store.py`).

An alert belongs to the range when its events overlap it (last seen at or after the start,
first seen before the end), so an alert whose window the range cuts is still shown. The rules'
order on the page is the severity tiers' (critical first), then most alerts first.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

from tfy_audit._core.settings import ALERT_DELIVERIES_TABLE, ALERTS_TABLE
from tfy_audit._core.times import utc
from tfy_audit._report.data import ALERT_LIMIT, AlertEntry, AlertsSection, RuleAlerts
from tfy_audit._report.queries import as_int, exists, grouped, query, rows
from tfy_audit._warehouse.severity import TIERS
from tfy_audit._warehouse.sql_text import sql_timestamp


def overlapping(lo: datetime, hi: datetime) -> str:
    """The WHERE clause of the alerts (aliased `a`) whose events overlap [lo, hi)."""
    return f"a.last_seen >= {sql_timestamp(lo)} AND a.first_seen < {sql_timestamp(hi)}"


def collect_alerts(client: Any, start: datetime, end: datetime) -> AlertsSection | None:
    """The alerts of [start, end); None where no detection has run (no `alerts` table)."""
    if not exists(client, ALERTS_TABLE):
        return None
    alerts = client.make_qualified_table_name(ALERTS_TABLE)
    within = overlapping(start, end)
    rules = _rules(rows(client, query("alert_rules", alerts=alerts, within=within)))
    recent = rows(client, query("alerts_recent", alerts=alerts, within=within, limit=ALERT_LIMIT))
    channels: tuple[str, ...] = ()
    delivered_counts: dict[str, int] = {}
    delivered: dict[str, dict[str, datetime | None]] = defaultdict(dict)
    if exists(client, ALERT_DELIVERIES_TABLE):
        deliveries = client.make_qualified_table_name(ALERT_DELIVERIES_TABLE)
        known = rows(client, query("alert_channels", deliveries=deliveries))
        channels = tuple(str(channel) for (channel,) in known)
        values = {"alerts": alerts, "deliveries": deliveries, "within": within}
        delivered_counts = grouped(client, query("alert_delivered", **values))
        sql = query("alert_recent_deliveries", limit=ALERT_LIMIT, **values)
        for alert_id, channel, at in rows(client, sql):
            delivered[str(alert_id)][str(channel)] = utc(at)
    total = sum(rule.alerts for rule in rules)
    return AlertsSection(
        total=total,
        rules=rules,
        recent=[_entry(row, delivered[str(row[0])], channels) for row in recent],
        channels=channels,
        pending={c: total - delivered_counts.get(c, 0) for c in channels},
    )


def _rules(found: list[tuple[Any, ...]]) -> list[RuleAlerts]:
    out = [
        RuleAlerts(
            rule_id=str(rule_id),
            title=str(title or ""),
            severity=str(severity or ""),
            attack=tuple(a for a in str(attack or "").split(",") if a),
            alerts=as_int(alerts),
            events=as_int(events),
        )
        for rule_id, title, severity, attack, alerts, events in found
    ]
    rank = {tier: i for i, tier in enumerate(TIERS)}
    return sorted(out, key=lambda r: (rank.get(r.severity, len(TIERS)), -r.alerts, r.rule_id))


def _entry(
    row: tuple[Any, ...], delivered: dict[str, datetime | None], channels: tuple[str, ...]
) -> AlertEntry:
    alert_id, rule_id, severity, title, key, first, last, events = row
    return AlertEntry(
        alert_id=str(alert_id),
        rule_id=str(rule_id),
        severity=str(severity or ""),
        title=str(title or ""),
        dedup_key=_key(key),
        first_seen=utc(first),
        last_seen=utc(last),
        events=as_int(events),
        delivered=dict(sorted(delivered.items())),
        pending=tuple(c for c in channels if c not in delivered),
    )


def _key(text: Any) -> dict[str, Any]:
    """The dedup key as detection wrote it (a JSON object); kept as text if it is not one."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {"key": str(text)}
    return value if isinstance(value, dict) else {"key": value}
