"""Audit-log events -> Arrow tables: `audit_logs`, `audit_log_metadata` and `subjects`.

Pure and total: nothing here does I/O, and no event is dropped or raises because of its shape.
The service grows, so every field is treated as optional and of any JSON type; anything an
event carries that has no column of its own lands in `extra_fields` instead of being lost.
The one exception is an event without a usable `id` (the merge key: a non-empty string, or an
integer, stored in decimal): it is skipped, counted and logged.

`metaData` is kept twice: verbatim as JSON text in `audit_logs.meta_data`, and flattened into
one `audit_log_metadata` row per leaf (leaves.py). The parts: the tables' shapes (columns.py),
JSON text of any value (json_text.py), the metaData leaves (leaves.py), the subjects
(subjects.py), timestamps (`_core/times.py`); this module assembles a page's batch.

This runs on every page of a sync, so the hot paths build whole columns with comprehensions,
hand them to `pa.array` once, and only fall back to per-value repair when Arrow refuses.
"""

from __future__ import annotations

import logging
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import orjson
import pyarrow as pa

from tfy_audit._core.times import parse_timestamp
from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind
from tfy_audit._service.columns import (
    AUDIT_LOGS_SCHEMA,
    EVENT_KEYS,
    STRING,
    SUBJECT_FIELDS,
    SUBJECT_KEYS,
    TEXT_FIELDS,
    TIMESTAMP,
    string_array,
)
from tfy_audit._service.json_text import json_text, key_text, utf8_safe
from tfy_audit._service.leaves import MAX_TEXT_DEPTH, cap_depth, key_segment, metadata_rows
from tfy_audit._service.subjects import SubjectObservation, observe_subjects

logger = logging.getLogger(__name__)


# How many offending event ids a batch-level warning quotes.
_WARN_EXAMPLES: Final = 3


_NO_SUBJECT: Final[Mapping[str, Any]] = {}


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One page of events, normalized. `ids`: the `audit_logs` rows' ids, in row order (made
    once, where the rows are, so the main process does not convert them back from Arrow).
    `skipped` counts events dropped for want of an id. `anomalies`: what decoding had to change
    or could not place, for the `event_anomalies` table (anomalies.py)."""

    audit_logs: pa.Table
    metadata: pa.Table
    ids: list[str]
    subjects: dict[str, SubjectObservation]
    max_created_at: datetime | None
    min_created_at: datetime | None
    skipped: int
    anomalies: tuple[Anomaly, ...] = ()

    def without(self, dropped: set[str]) -> EventBatch:
        """The batch without the events (and their metadata leaves) of these ids; a page holds
        each id once (normalize_events keeps the first), so ids select rows."""
        # imported here: the decoder workers import this module and never drop rows, and
        # importing pyarrow.compute would slow each one's start
        import pyarrow.compute as pc

        value_set = pa.array(list(dropped), pa.string())
        keep_rows = pc.invert(pc.is_in(self.audit_logs.column("id"), value_set=value_set))
        keep_leaves = pc.invert(pc.is_in(self.metadata.column("audit_log_id"), value_set=value_set))
        return replace(
            self,
            audit_logs=self.audit_logs.filter(keep_rows),
            metadata=self.metadata.filter(keep_leaves),
            ids=[i for i in self.ids if i not in dropped],
            anomalies=tuple(a for a in self.anomalies if a.event_id not in dropped),
        )


def _usable_events(
    events: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[str], int]:
    """The events that have a usable id, their ids, and how many were skipped.

    An id met again in the same batch (a service repeating a row, or `1` and `"1"`) keeps its
    first event only: a batch holds each id once, which the merge relies on.
    """
    kept: list[Mapping[str, Any]] = []
    ids: list[str] = []
    skipped = 0
    examples: list[str] = []
    for event in events:
        if type(event) is dict or isinstance(event, Mapping):
            event_id = event.get("id")
            if type(event_id) is not str or not event_id:
                event_id = key_text(event_id)
            if event_id is not None and not event_id.isascii():
                # as stored: a lone surrogate becomes its escape, so an id that escapes to
                # another's text is the same id here too (a page holds each id once)
                event_id = utf8_safe(event_id)
            if event_id is not None:
                kept.append(event)
                ids.append(event_id)
                continue
            shown = reprlib.repr(event.get("id"))
        else:
            shown = f"<{type(event).__name__}>"
        skipped += 1
        if len(examples) < _WARN_EXAMPLES:
            examples.append(shown)
    if skipped:
        logger.warning(
            "skipped %d event(s) without a usable id (ids seen: %s)", skipped, ", ".join(examples)
        )
    if len(set(ids)) < len(ids):
        repeated: list[str] = []
        first: dict[str, Mapping[str, Any]] = {}
        for event_id, event in zip(ids, kept, strict=True):
            if event_id in first:
                repeated.append(event_id)
            else:
                first[event_id] = event
        logger.warning(
            "%d event(s) repeat an id already on the same page; the first is kept (ids: %s)",
            len(repeated),
            ", ".join(repr(i) for i in repeated[:_WARN_EXAMPLES]),
        )
        ids, kept = list(first), list(first.values())
    return kept, ids, skipped


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    return value if type(value) is dict or isinstance(value, Mapping) else None


def _leftovers(
    event: Mapping[str, Any],
    subject: Mapping[str, Any] | None,
    created: datetime | None,
    updated: datetime | None,
) -> dict[str, Any] | None:
    """`extra_fields` of one event: whatever it carries that no column holds, else None.

    That is its keys unknown to the spec, plus (under their own names) a `subject` that is not
    an object or the subject's unknown keys, and a createdAt/updatedAt that did not parse: the
    raw text is then the only record of when it happened.
    """
    extras = {k: v for k, v in event.items() if k not in EVENT_KEYS}
    raw_subject = event.get("subject")
    if subject is None:
        if raw_subject is not None:
            extras["subject"] = raw_subject
    elif not subject.keys() <= SUBJECT_KEYS:
        extras["subject"] = {k: v for k, v in subject.items() if k not in SUBJECT_KEYS}
    if created is None and event.get("createdAt") is not None:
        extras["createdAt"] = event.get("createdAt")
    if updated is None and event.get("updatedAt") is not None:
        extras["updatedAt"] = event.get("updatedAt")
    return extras or None


def _extra_texts(
    leftovers: list[dict[str, Any] | None], ids: list[str], anomalies: list[Anomaly]
) -> list[str | None]:
    """`extra_fields` as JSON text, kept to MAX_TEXT_DEPTH levels as `meta_data` is (it is
    jsonb on PostgreSQL too): a deeper subtree is a JSON string of its JSON text, recorded."""
    texts: list[str | None] = []
    for event_id, extras in zip(ids, leftovers, strict=True):
        if extras is None:
            texts.append(None)
            continue
        try:
            texts.append(orjson.dumps(extras).decode())
            continue
        except (TypeError, ValueError):
            pass  # e.g. deeper than orjson follows: maybe deeper than a reader follows
        capped, cut = cap_depth(extras, MAX_TEXT_DEPTH)
        texts.append(json_text(capped))
        if cut:
            # the record names the field: a path thousands of levels long says no more
            field = next(
                (
                    path
                    for path in ("$" + key_segment(key) for key in extras)
                    if cut[0] == path or (cut[0].startswith(path) and cut[0][len(path)] in ".[")
                ),
                "$",
            )
            anomalies.append(
                Anomaly(
                    AnomalyKind.DEEP_NESTING,
                    AnomalyAction.KEPT_AS_TEXT,
                    event_id,
                    field,
                    f"{len(cut)} subtree(s) nested past {MAX_TEXT_DEPTH} levels kept as JSON "
                    "strings in extra_fields",
                )
            )
    return texts


def _timestamps(kept: list[Mapping[str, Any]], ids: list[str], key: str) -> list[datetime | None]:
    parsed = [parse_timestamp(e.get(key)) for e in kept]
    if None in parsed:
        bad = [(i, e.get(key)) for i, e, p in zip(ids, kept, parsed, strict=True) if p is None]
        logger.warning(
            "%d event(s) have a missing or unparseable %s, stored as null (e.g. %s)",
            len(bad),
            key,
            ", ".join(f"id={i!r} {key}={reprlib.repr(raw)}" for i, raw in bad[:_WARN_EXAMPLES]),
        )
    return parsed


# The text fields and the subject's, as Arrow converts them from the events in one pass.
_TEXT_AT_ONCE_TYPE: Final = pa.struct(
    [pa.field(key, STRING) for _, key in TEXT_FIELDS]
    + [
        pa.field(
            "subject",
            pa.struct(
                [pa.field("subjectId", STRING)]
                + [pa.field(key, STRING) for _, key in SUBJECT_FIELDS]
            ),
        )
    ]
)
_TEXT_AT_ONCE_COLUMNS: Final = (
    *(column for column, _ in TEXT_FIELDS),
    "subject__subject_id",
    *(f"subject__{attr}" for attr, _ in SUBJECT_FIELDS),
)


def _text_columns_at_once(events: list[Mapping[str, Any]]) -> dict[str, pa.Array] | None:
    """The text and subject columns, converted by Arrow in one pass (faster than a list per
    column: docs/performance.md). None unless every event and subject is a plain dict (Arrow
    would read a tuple subject by position) and every value text or null (Arrow refuses the
    rest, which the per-column path turns into JSON text): that path then does it, with the
    same result."""
    if not all(
        type(e) is dict and ((s := e.get("subject")) is None or type(s) is dict) for e in events
    ):
        return None
    try:
        rows = pa.array(events, type=_TEXT_AT_ONCE_TYPE)
    except Exception:  # ArrowTypeError for a non-text value, UnicodeEncodeError for surrogates
        return None
    *top, subject = rows.flatten()
    return dict(zip(_TEXT_AT_ONCE_COLUMNS, [*top, *subject.flatten()], strict=True))


def normalize_events(events: Sequence[Mapping[str, Any]]) -> EventBatch:
    """Turn one page of parsed events into the rows of `audit_logs`, `audit_log_metadata` and
    the batch's subject observations. Never raises for the content of an event."""
    kept, ids, skipped = _usable_events(events)

    created = _timestamps(kept, ids, "createdAt")
    updated = _timestamps(kept, ids, "updatedAt")
    subjects = [_as_mapping(e.get("subject")) for e in kept]
    id_array = string_array(ids)
    meta_texts, metadata, anomalies = metadata_rows(kept, ids)
    leftovers = [
        None
        if event.keys() <= EVENT_KEYS
        and c is not None
        and u is not None
        and (s is None or s.keys() <= SUBJECT_KEYS)
        # A subject that is not an object has no column to go to.
        and (s is not None or event.get("subject") is None)
        else _leftovers(event, s, c, u)
        for event, s, c, u in zip(kept, subjects, created, updated, strict=True)
    ]
    extra_texts = _extra_texts(leftovers, ids, anomalies)

    columns: dict[str, pa.Array] = {"id": id_array}
    at_once = _text_columns_at_once(kept)
    if at_once is not None:
        columns.update(at_once)
    else:
        for column, key in TEXT_FIELDS:
            columns[column] = string_array([e.get(key) for e in kept])
        present = [s if s is not None else _NO_SUBJECT for s in subjects]
        columns["subject__subject_id"] = string_array([s.get("subjectId") for s in present])
        for attr, key in SUBJECT_FIELDS:
            columns[f"subject__{attr}"] = string_array([s.get(key) for s in present])
    columns["created_at"] = pa.array(created, type=TIMESTAMP)
    columns["updated_at"] = pa.array(updated, type=TIMESTAMP)
    columns["meta_data"] = string_array(meta_texts)
    columns["extra_fields"] = string_array(extra_texts)
    audit_logs = pa.Table.from_arrays(
        [columns[name] for name in AUDIT_LOGS_SCHEMA.names], schema=AUDIT_LOGS_SCHEMA
    )

    stamps = [c for c in created if c is not None]
    return EventBatch(
        audit_logs=audit_logs,
        metadata=metadata,
        ids=ids,
        subjects=observe_subjects(ids, subjects, created),
        max_created_at=max(stamps, default=None),
        min_created_at=min(stamps, default=None),
        skipped=skipped,
        anomalies=tuple(anomalies),
    )
