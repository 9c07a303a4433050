"""What the tool had to change, cap, set aside or could not place, event by event.

A scheduled sync must load every event, odd ones included, and must never alter or drop one in
silence. Wherever the tool departs from what the service sent (a value decoded with
replacement characters, nesting kept as JSON text, a NUL replaced for PostgreSQL, a value cut
short, an event too large to read, an event with no usable `createdAt`, an id served twice), it
records an `Anomaly`. The records travel with the rows they describe: decoding attaches them to
its `EventBatch`, the fetcher yields them as items of their own, and the extract writes them to
the `event_anomalies` table in the same load package as the chunk's rows, so a record exists
exactly when the rows it speaks of were committed.

No dlt here: the decoder worker processes import this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import pyarrow as pa


class AnomalyKind(StrEnum):
    """What was found."""

    DEEP_NESTING = "deep_nesting"  # nested deeper than the decoder follows
    INVALID_UTF8 = "invalid_utf8"  # bytes that are not UTF-8 in a string
    NUL_CHARACTER = "nul_character"  # U+0000, which PostgreSQL text cannot hold
    LARGE_VALUE = "large_value"  # a value larger than a column or row may hold
    EVENT_TOO_LARGE = "event_too_large"  # an event larger than any response may be
    NO_CREATED_AT = "no_created_at"  # no usable createdAt: the event has no window
    NO_ID = "no_id"  # no usable id: the event cannot be keyed
    REPEATED_ID = "repeated_id"  # the service served one id twice in a window


class AnomalyAction(StrEnum):
    """What the tool did about it."""

    KEPT_AS_TEXT = "kept_as_json_text"  # the subtree is stored as JSON text at its path
    REPLACED = "replaced"  # offending characters replaced by a documented substitute
    TRUNCATED = "truncated"  # cut short, with a marker; the whole value kept elsewhere
    NOT_LOADED = "not_loaded"  # the event could not be read or keyed; only this record holds it
    LOADED_ONCE = "loaded_once"  # loaded once, keyed by its id
    ACCEPTED = "accepted"  # confirmed and accepted as the service's answer


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One record: an event (by id when it has one, else by where it was read) and a field.

    `field_path` is a JSONPath into the event as the service sent it (`$.metaData.spec`,
    `$.subject.subjectDisplayName`), or `$` for the whole event. `detail` is short, printable
    text for people (no raw server text: callers pass it through `redact.clean`)."""

    kind: AnomalyKind
    action: AnomalyAction
    event_id: str | None
    field_path: str
    detail: str = ""
    window_start: datetime | None = None
    window_end: datetime | None = None
    page_offset: int | None = None

    @property
    def key(self) -> str:
        """Stable across runs: the same finding on a re-read is the same record (merged)."""
        where = (
            self.event_id
            if self.event_id is not None
            else f"{_iso(self.window_start)}/{_iso(self.window_end)}@{self.page_offset}"
        )
        text = "\x1f".join((self.kind.value, where, self.field_path))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def count_text(counts: dict[str, int]) -> str:
    """`2 (invalid_utf8 1, deep_nesting 1)`: a total and the count per kind, largest first."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return f"{sum(counts.values()):,} (" + ", ".join(f"{k} {n:,}" for k, n in ranked) + ")"


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


_TS: Final = pa.timestamp("us", tz="UTC")

ANOMALIES_SCHEMA: Final = pa.schema(
    [
        ("anomaly_id", pa.string()),
        ("kind", pa.string()),
        ("action", pa.string()),
        ("event_id", pa.string()),
        ("field_path", pa.string()),
        ("detail", pa.string()),
        ("window_start", _TS),
        ("window_end", _TS),
        ("page_offset", pa.int64()),
        ("sync_id", pa.string()),
        ("load_id", pa.string()),
        ("recorded_at", _TS),
    ]
)


def unique(anomalies: Iterable[Anomaly]) -> list[Anomaly]:
    """One record per key, the last one seen (a chunk may read an event twice)."""
    return list({a.key: a for a in anomalies}.values())


def anomalies_table(anomalies: Iterable[Anomaly], *, sync_id: str, load_id: str | None) -> pa.Table:
    rows = unique(anomalies)
    now = datetime.now(UTC)
    return pa.Table.from_pydict(
        {
            "anomaly_id": [a.key for a in rows],
            "kind": [a.kind.value for a in rows],
            "action": [a.action.value for a in rows],
            "event_id": [a.event_id for a in rows],
            "field_path": [a.field_path for a in rows],
            "detail": [a.detail for a in rows],
            "window_start": [a.window_start for a in rows],
            "window_end": [a.window_end for a in rows],
            "page_offset": [a.page_offset for a in rows],
            "sync_id": [sync_id] * len(rows),
            "load_id": [load_id] * len(rows),
            "recorded_at": [now] * len(rows),
        },
        schema=ANOMALIES_SCHEMA,
    )
