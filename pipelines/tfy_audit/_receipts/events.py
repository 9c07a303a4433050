"""A day's events as the warehouse holds them, hashed; and the metaData leaves checked
against the `meta_data` they were flattened from.

Read by SQL on the connection the caller holds (DuckDB, PostgreSQL), a day at a time, so
memory follows the largest day, not the history. The JSON columns are cast to text, so both
kinds return what canonical.py parses (PostgreSQL's jsonb would otherwise come back parsed,
and a JSON string could not be told from JSON text).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tfy_audit._core.settings import AUDIT_LOGS_TABLE, METADATA_TABLE
from tfy_audit._core.times import utc
from tfy_audit._receipts.canonical import (
    EVENT_COLUMNS,
    event_hash,
    number_text,
    parse_json_text,
)
from tfy_audit._service.leaves import jsonpath_leaves
from tfy_audit._service.lenient import loads

_JSON_COLUMNS = frozenset({"meta_data", "extra_fields"})


@dataclass
class DayEvents:
    """One day's events: (id, hash) pairs, ids held more than once, and leaves that differ
    from their event's `meta_data` ((id, path) of a leaf added, changed or removed)."""

    day: date
    events: list[tuple[str, str]] = field(default_factory=list)
    repeated: list[str] = field(default_factory=list)
    leaves_differ: list[tuple[str, str]] = field(default_factory=list)

    @property
    def hashes(self) -> list[str]:
        return [h for _, h in self.events]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def days_with_events(client: Any, start: datetime, end: datetime) -> list[date]:
    """The UTC days in [start, end) that hold events."""
    table = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
    rows = client.execute_sql(
        f"SELECT created_at FROM {table} WHERE created_at >= %s AND created_at < %s",
        start,
        end,
    )
    days = {at.date() for r in rows or [] if (at := utc(r[0])) is not None}
    return sorted(days)


def read_day(client: Any, day: date, *, leaves: bool) -> DayEvents:
    """The day's events hashed, sorted by hash; with `leaves`, the metaData leaves checked."""
    start, end = day_bounds(day)
    table = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
    columns = ", ".join(f"CAST({c} AS TEXT)" if c in _JSON_COLUMNS else c for c in EVENT_COLUMNS)
    rows = client.execute_sql(
        f"SELECT {columns} FROM {table} WHERE created_at >= %s AND created_at < %s",
        start,
        end,
    )
    found = DayEvents(day)
    metas: dict[str, Any] = {}
    for row in rows or []:
        data = dict(zip(EVENT_COLUMNS, row, strict=True))
        event_id = str(data["id"])
        found.events.append((event_id, event_hash(data)))
        metas[event_id] = data["meta_data"]
    found.events.sort(key=lambda pair: (pair[1], pair[0]))
    counts = Counter(i for i, _ in found.events)
    found.repeated = sorted(i for i, n in counts.items() if n > 1)
    if leaves:
        found.leaves_differ = _leaves_differ(client, start, end, metas)
    return found


_NUMBERS = frozenset({"integer", "number"})


def _comparable(leaf: tuple[str, str, str]) -> tuple[str, str, str]:
    """A leaf as compared: a number by its value, as canonical text (PostgreSQL's jsonb keeps
    `meta_data`'s numbers by value: 1e5 comes back as 100000, -0.0 as 0)."""
    path, value, value_type = leaf
    if value_type not in _NUMBERS:
        return leaf
    try:
        number = loads(value)
    except ValueError:
        return leaf
    if isinstance(number, bool) or not isinstance(number, int | float):
        return leaf
    return path, number_text(number), "number"


def _leaves_differ(
    client: Any, start: datetime, end: datetime, metas: dict[str, Any]
) -> list[tuple[str, str]]:
    """(id, path) of every leaf of the day's events that is not what flattening their
    `meta_data` gives: a leaf edited, added or deleted by hand."""
    logs = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
    leaves_table = client.make_qualified_table_name(METADATA_TABLE)
    rows = client.execute_sql(
        f"SELECT m.audit_log_id, m.path, m.value, m.value_type FROM {leaves_table} m "
        f"JOIN {logs} l ON l.id = m.audit_log_id "
        "WHERE l.created_at >= %s AND l.created_at < %s",
        start,
        end,
    )
    held: dict[str, Counter[tuple[str, str, str]]] = {}
    for event_id, path, value, value_type in rows or []:
        leaf = _comparable((str(path), str(value), str(value_type)))
        held.setdefault(str(event_id), Counter())[leaf] += 1
    differ: set[tuple[str, str]] = set()
    for event_id, text in metas.items():
        meta, parsed = parse_json_text(text)
        if not parsed:
            continue  # nested past every parser: its leaves cannot be made again here
        expected = Counter(
            _comparable(leaf) for leaf in (jsonpath_leaves(meta) if meta is not None else ())
        )
        got = held.get(event_id, Counter())
        if got != expected:
            differ.update((event_id, leaf[0]) for leaf in (got - expected) + (expected - got))
    return sorted(differ)
