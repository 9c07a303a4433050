"""The `alerts` and `alert_deliveries` tables, written by SQL on the destination's own
connection, as `verify_runs` and `sync_runs` are (DuckDB, PostgreSQL and other destinations
with a persistent SQL engine; the filesystem keeps none).

`alerts` holds one row per alert id (rule + dedup key + window, see evaluate.py): writing an
alert found again (a range re-run, or a window's later events) merges its event ids and widens
first/last seen, keeping the run that first found it, so re-running a range never duplicates.
`alert_deliveries` holds one row per alert and channel (`webhook`, `slack`) once delivered; an
alert with no row for a channel is pending there. The alert row is committed before any
delivery is tried, so a run killed in between leaves it pending for the next run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from tfy_audit._core.settings import (
    ALERT_DELIVERIES_TABLE,
    ALERTS_TABLE,
    DETECTION_PASSES_TABLE,
)
from tfy_audit._core.times import utc
from tfy_audit._detect.evaluate import Alert

_TSTZ: Final = "TIMESTAMP WITH TIME ZONE"
ALERT_COLUMNS: Final = (
    ("alert_id", "TEXT NOT NULL"),
    ("rule_id", "TEXT NOT NULL"),
    ("title", "TEXT"),
    ("severity", "TEXT"),
    ("attack", "TEXT"),
    ("dedup_key", "TEXT"),
    ("window_start", _TSTZ),
    ("window_end", _TSTZ),
    ("first_seen", _TSTZ),
    ("last_seen", _TSTZ),
    ("event_count", "BIGINT"),
    ("event_ids", "TEXT"),
    ("run_id", "TEXT"),
    ("detected_at", _TSTZ),
    ("updated_at", _TSTZ),
)
DELIVERY_COLUMNS: Final = (
    ("alert_id", "TEXT NOT NULL"),
    ("channel", "TEXT NOT NULL"),
    ("delivered_at", _TSTZ),
)
_NAMES: Final = tuple(n for n, _ in ALERT_COLUMNS)
# ids per IN (...) list
_BATCH: Final = 500


def ensure_tables(client: Any) -> tuple[str, str]:
    """Create both tables where missing; their qualified names."""
    if not client.has_dataset():
        client.create_dataset()
    alerts = client.make_qualified_table_name(ALERTS_TABLE)
    deliveries = client.make_qualified_table_name(ALERT_DELIVERIES_TABLE)
    ddl = ", ".join(f"{n} {t}" for n, t in ALERT_COLUMNS)
    client.execute_sql(f"CREATE TABLE IF NOT EXISTS {alerts} ({ddl}, PRIMARY KEY (alert_id))")
    ddl = ", ".join(f"{n} {t}" for n, t in DELIVERY_COLUMNS)
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {deliveries} ({ddl}, PRIMARY KEY (alert_id, channel))"
    )
    return alerts, deliveries


def _passes_table(client: Any) -> str:
    if not client.has_dataset():
        client.create_dataset()
    table: str = client.make_qualified_table_name(DETECTION_PASSES_TABLE)
    client.execute_sql(
        f"CREATE TABLE IF NOT EXISTS {table} (run_id TEXT NOT NULL, range_start {_TSTZ}, "
        f"range_end {_TSTZ}, after_sync BOOLEAN, finished_at {_TSTZ}, PRIMARY KEY (run_id))"
    )
    return table


def record_pass(
    client: Any, run_id: str, start: datetime, end: datetime, *, after_sync: bool, now: datetime
) -> None:
    """Note a pass whose alerts are kept: [start, end) has been judged."""
    table = _passes_table(client)
    client.execute_sql(
        f"INSERT INTO {table} VALUES (%s, %s, %s, %s, %s)", run_id, start, end, after_sync, now
    )


def judged_until(client: Any) -> datetime | None:
    """The end of the latest range a `sync --detect` pass judged; None before the first."""
    table = _passes_table(client)
    ((until,),) = client.execute_sql(f"SELECT max(range_end) FROM {table} WHERE after_sync")
    return None if until is None else utc(until)


@dataclass
class Written:
    """What writing a pass's alerts did: the ids new to the table, and those found again."""

    new: list[str]
    updated: list[str]


def write_alerts(client: Any, alerts: Sequence[Alert], run_id: str, now: datetime) -> Written:
    """Insert new alerts and merge those already kept, in one transaction."""
    table, _ = ensure_tables(client)
    written = Written([], [])
    if not alerts:
        return written
    by_id = {a.alert_id: a for a in alerts}
    existing = _existing(client, table, list(by_id))
    rows: list[dict[str, Any]] = []
    for alert in by_id.values():
        old = existing.get(alert.alert_id)
        row = _row(alert, run_id, now)
        if old is None:
            written.new.append(alert.alert_id)
        else:
            events = sorted(set(json.loads(old["event_ids"] or "[]")) | set(alert.event_ids))
            if events == sorted(json.loads(old["event_ids"] or "[]")):
                continue  # found again unchanged: nothing to write
            row["event_ids"] = json.dumps(events)
            row["event_count"] = len(events)
            row["first_seen"] = min(utc(old["first_seen"]), alert.first_seen)
            row["last_seen"] = max(utc(old["last_seen"]), alert.last_seen)
            row["run_id"], row["detected_at"] = old["run_id"], old["detected_at"]
            written.updated.append(alert.alert_id)
        rows.append(row)
    marks = ", ".join(["%s"] * len(_NAMES))
    with client.begin_transaction():
        for start in range(0, len(written.updated), _BATCH):
            batch = written.updated[start : start + _BATCH]
            client.execute_sql(
                f"DELETE FROM {table} WHERE alert_id IN ({', '.join(['%s'] * len(batch))})",
                *batch,
            )
        for row in rows:
            client.execute_sql(
                f"INSERT INTO {table} ({', '.join(_NAMES)}) VALUES ({marks})",
                *[row[n] for n in _NAMES],
            )
    return written


def _row(alert: Alert, run_id: str, now: datetime) -> dict[str, Any]:
    return {
        "alert_id": alert.alert_id,
        "rule_id": alert.rule_id,
        "title": alert.title,
        "severity": alert.severity,
        "attack": ",".join(alert.attack),
        "dedup_key": json.dumps(alert.dedup_key, sort_keys=True),
        "window_start": alert.window_start,
        "window_end": alert.window_end,
        "first_seen": alert.first_seen,
        "last_seen": alert.last_seen,
        "event_count": len(alert.event_ids),
        "event_ids": json.dumps(sorted(alert.event_ids)),
        "run_id": run_id,
        "detected_at": now,
        "updated_at": now,
    }


def _existing(client: Any, table: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), _BATCH):
        batch = ids[start : start + _BATCH]
        rows = client.execute_sql(
            f"SELECT {', '.join(_NAMES)} FROM {table} WHERE alert_id IN "
            f"({', '.join(['%s'] * len(batch))})",
            *batch,
        )
        for row in rows or ():
            out[row[0]] = dict(zip(_NAMES, row, strict=True))
    return out


def stored_alert(row: dict[str, Any]) -> Alert:
    return Alert(
        alert_id=row["alert_id"],
        rule_id=row["rule_id"],
        title=row["title"] or "",
        severity=row["severity"] or "",
        attack=tuple(a for a in (row["attack"] or "").split(",") if a),
        dedup_key=json.loads(row["dedup_key"] or "{}"),
        window_start=utc(row["window_start"]),
        window_end=utc(row["window_end"]),
        first_seen=utc(row["first_seen"]),
        last_seen=utc(row["last_seen"]),
        event_ids=json.loads(row["event_ids"] or "[]"),
    )


def pending(client: Any, channel: str, limit: int) -> list[Alert]:
    """Alerts not yet delivered to `channel`, oldest detection first, at most `limit`."""
    alerts, deliveries = ensure_tables(client)
    cols = ", ".join(f"a.{n}" for n in _NAMES)
    rows = client.execute_sql(
        f"SELECT {cols} FROM {alerts} a WHERE NOT EXISTS (SELECT 1 FROM {deliveries} d "
        "WHERE d.alert_id = a.alert_id AND d.channel = %s) "
        "ORDER BY a.detected_at, a.first_seen, a.alert_id LIMIT %s",
        channel,
        limit,
    )
    return [stored_alert(dict(zip(_NAMES, r, strict=True))) for r in rows or ()]


def mark_delivered(client: Any, alert_ids: Sequence[str], channel: str, now: datetime) -> None:
    """Record the delivery of each alert to `channel` (idempotent)."""
    if not alert_ids:
        return
    _, deliveries = ensure_tables(client)
    with client.begin_transaction():
        for start in range(0, len(alert_ids), _BATCH):
            batch = list(alert_ids[start : start + _BATCH])
            client.execute_sql(
                f"DELETE FROM {deliveries} WHERE channel = %s AND alert_id IN "
                f"({', '.join(['%s'] * len(batch))})",
                channel,
                *batch,
            )
            for alert_id in batch:
                client.execute_sql(
                    f"INSERT INTO {deliveries} (alert_id, channel, delivered_at) "
                    "VALUES (%s, %s, %s)",
                    alert_id,
                    channel,
                    now,
                )


@dataclass
class AlertsOverview:
    """What `status` and the report show: totals, pending, the most recent alerts."""

    total: int
    pending: int
    by_severity: dict[str, int]
    recent: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "pending": self.pending,
            "by_severity": self.by_severity,
            "recent": self.recent,
        }


def overview(client: Any, recent: int = 10) -> AlertsOverview | None:
    """None where the dataset has no alerts table (no detection has run)."""
    alerts = client.make_qualified_table_name(ALERTS_TABLE)
    deliveries = client.make_qualified_table_name(ALERT_DELIVERIES_TABLE)
    try:
        counts = client.execute_sql(f"SELECT severity, count(*) FROM {alerts} GROUP BY severity")
    except Exception:
        return None
    by_severity = {str(s): int(n) for s, n in counts or ()}
    try:
        ((waiting,),) = client.execute_sql(
            f"SELECT count(*) FROM {alerts} a WHERE NOT EXISTS "
            f"(SELECT 1 FROM {deliveries} d WHERE d.alert_id = a.alert_id)"
        )
    except Exception:  # no deliveries table: nothing was ever delivered
        waiting = sum(by_severity.values())
    rows = client.execute_sql(
        "SELECT alert_id, rule_id, severity, title, first_seen, last_seen, event_count, "
        f"dedup_key, detected_at FROM {alerts} ORDER BY last_seen DESC, alert_id LIMIT %s",
        recent,
    )
    listed = [
        {
            "alert_id": r[0],
            "rule_id": r[1],
            "severity": r[2],
            "title": r[3],
            "first_seen": utc(r[4]).isoformat() if r[4] else None,
            "last_seen": utc(r[5]).isoformat() if r[5] else None,
            "event_count": int(r[6] or 0),
            "dedup_key": json.loads(r[7] or "{}"),
            "detected_at": utc(r[8]).isoformat() if r[8] else None,
        }
        for r in rows or ()
    ]
    return AlertsOverview(sum(by_severity.values()), int(waiting), by_severity, listed)


def utc_now() -> datetime:
    return datetime.now(UTC)


def count_pending(client: Any, channel: str) -> int:
    alerts, deliveries = ensure_tables(client)
    ((count,),) = client.execute_sql(
        f"SELECT count(*) FROM {alerts} a WHERE NOT EXISTS (SELECT 1 FROM {deliveries} d "
        "WHERE d.alert_id = a.alert_id AND d.channel = %s)",
        channel,
    )
    return int(count)
