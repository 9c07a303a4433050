"""Audit-log events -> Arrow tables: `audit_logs`, `audit_log_metadata` and `subjects`.

Pure and total: nothing here does I/O, and no event is dropped or raises because of its shape.
The service grows, so every field is treated as optional and of any JSON type; anything an
event carries that has no column of its own lands in `extra_fields` instead of being lost.
The one exception is an event without a usable `id` (the merge key: a non-empty string, or an
integer, stored in decimal): it is skipped, counted and logged.

`metaData` is kept twice: verbatim as JSON text in `audit_logs.meta_data`, and flattened into
one `audit_log_metadata` row per leaf, addressed by a JSONPath that is unambiguous (an object
key is written `.key` only when it is a plain identifier, otherwise as a quoted JSON string),
so the document can be rebuilt from its rows.

This runs on every page of a sync, so the hot paths build whole columns with comprehensions,
hand them to `pa.array` once, and only fall back to per-value repair when Arrow refuses.
"""

from __future__ import annotations

import json
import logging
import reprlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, Final

import orjson
import pyarrow as pa

from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind

logger = logging.getLogger(__name__)

_TS: Final = pa.timestamp("us", tz="UTC")
_STR: Final = pa.string()

# (column, event key) of the top-level string fields, in table order.
_TEXT_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("action", "action"),
    ("request_path", "requestPath"),
    ("resource_id", "resourceId"),
    ("resource_type", "resourceType"),
    ("resource_name", "resourceName"),
    ("resource_fqn", "resourceFqn"),
    ("parent_resource_id", "parentResourceId"),
    ("parent_resource_type", "parentResourceType"),
    ("tenant_name", "tenantName"),
    ("cluster_id", "clusterId"),
    ("workspace_id", "workspaceId"),
    ("message", "message"),
)

# (attribute / column suffix, subject key); `subjectId` is handled apart as the subject's key.
_SUBJECT_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("subject_type", "subjectType"),
    ("subject_slug", "subjectSlug"),
    ("subject_display_name", "subjectDisplayName"),
    ("subject_pat_name", "subjectPatName"),
    ("subject_controller_name", "subjectControllerName"),
    ("subject_external_identity_slug", "subjectExternalIdentitySlug"),
)

# Every property of the spec's ActivityLog / Subject; anything else is an addition of the
# service and goes to `extra_fields`.
_EVENT_KEYS: Final = frozenset(
    {"id", "subject", "metaData", "createdAt", "updatedAt"} | {k for _, k in _TEXT_FIELDS}
)
_SUBJECT_KEYS: Final = frozenset({"subjectId"} | {k for _, k in _SUBJECT_FIELDS})

# Each `audit_logs` column as the JSONPath of what it holds in the event (`extra_fields`: the
# keys no column holds, hence the whole event), for the records of anomalies.py.
COLUMN_FIELDS: Final[dict[str, str]] = {
    "id": "$.id",
    **{column: f"$.{key}" for column, key in _TEXT_FIELDS},
    "subject__subject_id": "$.subject.subjectId",
    **{f"subject__{attr}": f"$.subject.{key}" for attr, key in _SUBJECT_FIELDS},
    "meta_data": "$.metaData",
    "extra_fields": "$",
}

AUDIT_LOGS_SCHEMA: Final = pa.schema(
    [
        pa.field("id", _STR, nullable=False),
        *(pa.field(col, _STR) for col, _ in _TEXT_FIELDS),
        pa.field("created_at", _TS),
        pa.field("updated_at", _TS),
        pa.field("subject__subject_id", _STR),
        *(pa.field(f"subject__{attr}", _STR) for attr, _ in _SUBJECT_FIELDS),
        pa.field("meta_data", _STR),
        pa.field("extra_fields", _STR),
    ]
)

METADATA_SCHEMA: Final = pa.schema(
    [
        pa.field("audit_log_id", _STR, nullable=False),
        pa.field("path", _STR, nullable=False),
        pa.field("value", _STR, nullable=False),
        pa.field("value_type", _STR, nullable=False),
    ]
)

SUBJECTS_SCHEMA: Final = pa.schema(
    [
        pa.field("subject_id", _STR, nullable=False),
        *(pa.field(attr, _STR) for attr, _ in _SUBJECT_FIELDS),
        pa.field("first_seen_at", _TS),
        pa.field("last_seen_at", _TS),
    ]
)

# Leaf paths stop growing here: deeper paths are useless to query, every prefix is a new string
# (total size grows with the square of the depth), and the walk recurses once per level, so
# this keeps it far below the interpreter's recursion limit. The rest of a deeper subtree is
# kept whole, as one JSON leaf of type object/array.
MAX_PATH_DEPTH: Final = 128

# `audit_logs.meta_data` keeps the document verbatim down to this many levels; a subtree below
# is kept as a JSON string holding its JSON text, at its path. Every reader of the column must
# be able to parse it: PostgreSQL's jsonb (what dlt makes of a json column there) and its JSON
# functions recurse once per level and refuse a document past a stack limit, which its default
# `max_stack_depth` reaches at about twice this depth. Deeper nesting is no audit record anyone
# wrote by hand; what is below stays readable as text.
MAX_TEXT_DEPTH: Final = 8192

# How many offending event ids a batch-level warning quotes.
_WARN_EXAMPLES: Final = 3

# Sorts before every real timestamp, so an event without createdAt never wins "latest".
_NEVER: Final = datetime.min.replace(tzinfo=UTC)

_NO_SUBJECT: Final[Mapping[str, Any]] = {}

_INDEXED: Final = 1024
_INDEX_SEGMENTS: Final = tuple(f"[{i}]" for i in range(_INDEXED))


@dataclass(frozen=True, slots=True)
class SubjectObservation:
    """What one batch (or the accumulated sync) saw of one subject."""

    subject_id: str
    subject_type: str | None
    subject_slug: str | None
    subject_display_name: str | None
    subject_pat_name: str | None
    subject_controller_name: str | None
    subject_external_identity_slug: str | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None


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


# --------------------------------------------------------------------------- JSON text


def _json_text(value: Any) -> str:
    """`value` as compact JSON text, key order kept. Never raises.

    orjson first (fast); it refuses integers beyond 64 bits, nesting deeper than ~255, lone
    surrogates and non-string keys, so stdlib `json` takes those; what even that refuses
    (deeper than the interpreter's recursion limit, NaN, foreign types) gets the iterative
    encoder. Non-finite floats become `null` on every path, as orjson writes them, because
    JSON has no spelling for them.
    """
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return _dumps_iterative(value)


def _int_text(value: int) -> str:
    try:
        return int.__repr__(value)
    except ValueError:
        # Beyond the interpreter's int->str digit limit; Decimal converts without it.
        return str(Decimal(value))


def _float_text(value: float) -> str:
    # x - x is NaN exactly for NaN and the infinities.
    return float.__repr__(value) if value - value == 0.0 else "null"


def _unknown_text(value: Any) -> str:
    """A value JSON cannot hold (only reachable from non-JSON callers) as a JSON string."""
    try:
        text = str(value)
    except Exception:
        text = object.__repr__(value)
    return encode_basestring(text)


def _key_string(key: Any) -> str:
    """An object key as the string JSON would make of it (stdlib's rules for non-str keys)."""
    if type(key) is str:
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return _int_text(key)
    if isinstance(key, float):
        return _float_text(key)
    if isinstance(key, str):
        return str.__str__(key)
    try:
        return str(key)
    except Exception:
        return object.__repr__(key)


def _scalar_text(value: Any) -> tuple[str, str]:
    """(JSON text, value_type) of a non-container value, subclasses included."""
    if value is None:
        return "null", "null"
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return _int_text(value), "integer"
    if isinstance(value, float):
        text = _float_text(value)
        return text, ("number" if text != "null" else "null")
    if isinstance(value, str):
        return encode_basestring(value), "string"
    return _unknown_text(value), "string"


class _Raw:
    """A piece of finished JSON text on the iterative encoder's stack."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_OPEN_OBJ: Final = _Raw("{")
_CLOSE_OBJ: Final = _Raw("}")
_OPEN_ARR: Final = _Raw("[")
_CLOSE_ARR: Final = _Raw("]")
_COMMA: Final = _Raw(",")


def _dumps_iterative(value: Any) -> str:
    """The encoder of last resort: no recursion, no type or size it refuses."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            out.append(item.text)
        elif isinstance(item, Mapping):
            if not item:
                out.append("{}")
                continue
            work: list[Any] = [_OPEN_OBJ]
            for i, (k, v) in enumerate(item.items()):
                if i:
                    work.append(_COMMA)
                work.append(_Raw(encode_basestring(_key_string(k)) + ":"))
                work.append(v)
            work.append(_CLOSE_OBJ)
            stack.extend(reversed(work))
        elif isinstance(item, list | tuple):
            if not item:
                out.append("[]")
                continue
            work = [_OPEN_ARR]
            for i, v in enumerate(item):
                if i:
                    work.append(_COMMA)
                work.append(v)
            work.append(_CLOSE_ARR)
            stack.extend(reversed(work))
        else:
            out.append(_scalar_text(item)[0])
    return "".join(out)


# --------------------------------------------------------------------------- metaData leaves


def _key_segment(key: Any) -> str:
    text = _key_string(key)
    # ASCII + isidentifier is exactly ^[A-Za-z_][A-Za-z0-9_]*$, without a regex per key.
    if text.isascii() and text.isidentifier():
        return "." + text
    return "[" + encode_basestring(text) + "]"


def key_segment(key: Any) -> str:
    """An object key as a JSONPath segment, spelled as the metadata leaves' paths spell it."""
    return _key_segment(key)


def _container_leaf(value: Any, empty: str) -> str:
    return _json_text(value) if value else empty


class _LeafSink:
    """The leaf columns of one batch."""

    __slots__ = ("_walk", "capped", "paths", "types", "values")

    def __init__(self) -> None:
        self.paths: list[str] = []
        self.values: list[str] = []
        self.types: list[str] = []
        # paths of the leaves that hold a non-empty subtree as JSON text (MAX_PATH_DEPTH)
        self.capped: list[str] = []
        self._walk = _walker(
            self.paths.append, self.values.append, self.types.append, self.capped.append
        )

    def add(self, root: Any) -> int:
        """Append root's leaves in document order; return how many.

        A document that cannot be walked (none that JSON can produce) becomes one leaf at `$`
        rather than an error: no event is lost to its metaData.
        """
        paths = self.paths
        start = len(paths)
        try:
            self._walk(root)
        except Exception:
            logger.warning("metaData could not be flattened; kept as one leaf", exc_info=True)
            del self.paths[start:], self.values[start:], self.types[start:]
            self.capped.clear()
            self.paths.append("$")
            self.values.append(_json_text(root))
            self.types.append(_value_type(root))
        return len(paths) - start


def _walker(
    add_path: Callable[[str], None],
    add_value: Callable[[str], None],
    add_type: Callable[[str], None],
    add_capped: Callable[[str], None] = lambda path: None,
) -> Callable[[Any], None]:
    """A function appending a document's leaves through the three callbacks.

    Closures over the callbacks and a key -> segment cache (the same keys recur in every event
    of a batch), made once per batch. Recursive, which is faster than an explicit stack
    (`make bench`); MAX_PATH_DEPTH bounds the recursion well below the interpreter's limit.
    """
    segments: dict[Any, str] = {}

    def leaf(path: str, value: Any, depth: int) -> None:
        """What the walkers do not test inline: subclasses, foreign types, the deepest
        containers. Scalars are tested first: an ABC check on them is slow."""
        if isinstance(value, str | int | float) or value is None:
            text, kind = _scalar_text(value)
        elif isinstance(value, Mapping):
            if value and depth < MAX_PATH_DEPTH:
                walk_object(value.items(), path, depth + 1)
                return
            text, kind = _container_leaf(value, "{}"), "object"
            if value:
                add_capped(path)
        elif isinstance(value, list | tuple):
            if value and depth < MAX_PATH_DEPTH:
                walk_array(value, path, depth + 1)
                return
            text, kind = _container_leaf(value, "[]"), "array"
            if value:
                add_capped(path)
        else:
            text, kind = _scalar_text(value)
        add_path(path)
        add_value(text)
        add_type(kind)

    def walk_object(items: Iterable[tuple[Any, Any]], prefix: str, depth: int) -> None:
        # `depth` is the number of segments in the children's paths.
        for key, value in items:
            # Only str keys are cached, so a non-str key (True == 1) never finds a wrong one.
            segment = segments.get(key)
            if segment is None:
                segment = _key_segment(key)
                if type(key) is str:
                    segments[key] = segment
            path = prefix + segment
            kind = type(value)
            if kind is str:
                add_path(path)
                add_value(encode_basestring(value))
                add_type("string")
            elif kind is int:
                add_path(path)
                add_value(int.__repr__(value))
                add_type("integer")
            elif kind is bool:
                add_path(path)
                add_value("true" if value else "false")
                add_type("boolean")
            elif value is None:
                add_path(path)
                add_value("null")
                add_type("null")
            elif kind is float and value - value == 0.0:
                add_path(path)
                add_value(float.__repr__(value))
                add_type("number")
            elif kind is dict and value and depth < MAX_PATH_DEPTH:
                walk_object(value.items(), path, depth + 1)
            elif kind is list and value and depth < MAX_PATH_DEPTH:
                walk_array(value, path, depth + 1)
            else:
                leaf(path, value, depth)

    def walk_array(items: Iterable[Any], prefix: str, depth: int) -> None:
        for index, value in enumerate(items):
            path = prefix + (_INDEX_SEGMENTS[index] if index < _INDEXED else f"[{index}]")
            kind = type(value)
            if kind is str:
                add_path(path)
                add_value(encode_basestring(value))
                add_type("string")
            elif kind is int:
                add_path(path)
                add_value(int.__repr__(value))
                add_type("integer")
            elif kind is dict and value and depth < MAX_PATH_DEPTH:
                walk_object(value.items(), path, depth + 1)
            elif kind is list and value and depth < MAX_PATH_DEPTH:
                walk_array(value, path, depth + 1)
            else:
                leaf(path, value, depth)

    def walk(root: Any) -> None:
        if type(root) is dict or isinstance(root, Mapping):
            # An empty root is the common empty metaData, visible in audit_logs.meta_data.
            if root:
                walk_object(root.items(), "$", 1)
        elif isinstance(root, list | tuple):
            if root:
                walk_array(root, "$", 1)
        else:
            text, kind = _scalar_text(root)
            add_path("$")
            add_value(text)
            add_type(kind)

    return walk


def _value_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return _scalar_text(value)[1]


def jsonpath_leaves(value: Any) -> Iterator[tuple[str, str, str]]:
    """(path, value as JSON text, value_type) for every leaf of `value`, in document order.

    Leaves are scalars and empty containers; an empty root has none. A subtree whose path
    would exceed MAX_PATH_DEPTH segments is one leaf holding its JSON text.
    """
    sink = _LeafSink()
    sink.add(value)
    return zip(sink.paths, sink.values, sink.types, strict=True)


# --------------------------------------------------------------------------- scalars


def _key_text(value: Any) -> str | None:
    """An identifier usable as a key: a non-empty string, or an integer spelled in decimal."""
    if type(value) is str:
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return _int_text(value)
    if isinstance(value, str):
        return str.__str__(value) or None
    return None


def _as_text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    return _json_text(value)


def _utf8_safe(text: str | None) -> str | None:
    """Lone surrogates (which stdlib json.loads produces from `"\\ud800"`) cannot be UTF-8;
    write them as the JSON escape they came from, which keeps JSON text valid JSON."""
    if text is None:
        return None
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def _string_array(values: list[Any]) -> pa.Array:
    """A string column; non-strings become their JSON text, lone surrogates their escapes."""
    try:
        return pa.array(values, type=_STR)
    except (pa.ArrowException, TypeError, ValueError):
        # Rare: a value of another type, or text Arrow cannot encode. Repair only then.
        return pa.array([_utf8_safe(_as_text(v)) for v in values], type=_STR)


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp as an aware UTC datetime; naive means UTC; None if unparseable."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            # Lower-case `t`/`z` and stray whitespace are ISO enough to accept.
            try:
                parsed = datetime.fromisoformat(value.strip().upper())
            except ValueError:
                return None
    elif isinstance(value, datetime):
        parsed = value
    else:
        return None
    tz = parsed.tzinfo
    if tz is UTC:
        return parsed
    if tz is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


# --------------------------------------------------------------------------- the batch


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
                event_id = _key_text(event_id)
            if event_id is not None and not event_id.isascii():
                # as stored: a lone surrogate becomes its escape, so an id that escapes to
                # another's text is the same id here too (a page holds each id once)
                event_id = _utf8_safe(event_id)
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
    extras = {k: v for k, v in event.items() if k not in _EVENT_KEYS}
    raw_subject = event.get("subject")
    if subject is None:
        if raw_subject is not None:
            extras["subject"] = raw_subject
    elif not subject.keys() <= _SUBJECT_KEYS:
        extras["subject"] = {k: v for k, v in subject.items() if k not in _SUBJECT_KEYS}
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
        capped, cut = _capped(extras, MAX_TEXT_DEPTH)
        texts.append(_json_text(capped))
        if cut:
            # the record names the field: a path thousands of levels long says no more
            field = next(
                (
                    path
                    for path in ("$" + _key_segment(key) for key in extras)
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


def _observe_subjects(
    ids: list[str], subjects: list[Mapping[str, Any] | None], created: list[datetime | None]
) -> dict[str, SubjectObservation]:
    """Per subjectId: the attributes of its latest event (ties: greatest event id) and the
    span of createdAt over its events."""
    # subject id -> [subject of the latest event, its rank, first_seen_at, last_seen_at]
    states: dict[str, list[Any]] = {}
    for event_id, subject, created_at in zip(ids, subjects, created, strict=True):
        if subject is None:
            continue
        subject_id = subject.get("subjectId")
        if type(subject_id) is not str or not subject_id:
            subject_id = _key_text(subject_id)
            if subject_id is None:
                continue
        rank = (created_at or _NEVER, event_id)
        state = states.get(subject_id)
        if state is None:
            states[subject_id] = [subject, rank, created_at, created_at]
            continue
        if rank >= state[1]:
            state[0] = subject
            state[1] = rank
        if created_at is not None:
            if state[2] is None or created_at < state[2]:
                state[2] = created_at
            if state[3] is None or created_at > state[3]:
                state[3] = created_at
    return {
        subject_id: _observation(subject_id, subject, first, last)
        for subject_id, (subject, _, first, last) in states.items()
    }


def _observation(
    subject_id: str,
    subject: Mapping[str, Any],
    first_seen_at: datetime | None,
    last_seen_at: datetime | None,
) -> SubjectObservation:
    def text(key: str) -> str | None:
        return _utf8_safe(_as_text(subject.get(key)))

    return SubjectObservation(
        subject_id=subject_id,
        subject_type=text("subjectType"),
        subject_slug=text("subjectSlug"),
        subject_display_name=text("subjectDisplayName"),
        subject_pat_name=text("subjectPatName"),
        subject_controller_name=text("subjectControllerName"),
        subject_external_identity_slug=text("subjectExternalIdentitySlug"),
        first_seen_at=first_seen_at,
        last_seen_at=last_seen_at,
    )


def _metadata_rows(
    kept: list[Mapping[str, Any]], ids: list[str], id_array: pa.Array
) -> tuple[list[str | None], pa.Table, list[Anomaly]]:
    """`audit_logs.meta_data` of each event, the `audit_log_metadata` table of them all, and a
    record of each event whose metaData is nested too deep to flatten whole."""
    texts: list[str | None] = []
    anomalies: list[Anomaly] = []
    # Each leaf's event as a position into `id_array`: Arrow's take() repeats the ids faster
    # than converting a Python list of them.
    owners: list[int] = []
    sink = _LeafSink()
    for position, event in enumerate(kept):
        meta = event.get("metaData")
        if meta is None:
            texts.append(None)
        elif type(meta) is dict and not meta:
            texts.append("{}")
        else:
            owners.extend([position] * sink.add(meta))
            if sink.capped:
                text, anomaly = _deep_metadata(meta, ids[position], sink.capped)
                sink.capped.clear()
                texts.append(text)
                anomalies.append(anomaly)
            else:
                texts.append(_json_text(meta))
    table = pa.Table.from_arrays(
        [
            id_array.take(pa.array(owners, type=pa.int32())),
            _string_array(sink.paths),
            _string_array(sink.values),
            pa.array(sink.types, type=_STR),
        ],
        schema=METADATA_SCHEMA,
    )
    return texts, table, anomalies


def _deep_metadata(meta: Any, event_id: str, capped: list[str]) -> tuple[str, Anomaly]:
    """`meta_data` of a document nested deeper than MAX_PATH_DEPTH (its leaves stop there, the
    subtrees below kept as JSON text at their paths), and the record saying so. The text is
    verbatim unless the document is deeper than MAX_TEXT_DEPTH: subtrees below that are JSON
    strings holding their JSON text."""
    capped_meta, cut = _capped(meta, MAX_TEXT_DEPTH)
    detail = (
        f"{len(capped)} subtree(s) nested past {MAX_PATH_DEPTH} levels kept as JSON text in "
        "audit_log_metadata.value"
    )
    if cut:
        detail += (
            f"; {len(cut)} past {MAX_TEXT_DEPTH} levels kept as JSON strings in meta_data "
            f"(first at {_metadata_field(cut[0])[:200]})"
        )
    anomaly = Anomaly(
        AnomalyKind.DEEP_NESTING,
        AnomalyAction.KEPT_AS_TEXT,
        event_id,
        _metadata_field(capped[0]),
        detail,
    )
    return _json_text(capped_meta), anomaly


def _metadata_field(path: str) -> str:
    """A leaf path of metaData (`$.a[0]`) as a path into the event (`$.metaData.a[0]`)."""
    return "$.metaData" + path[1:]


def _capped(value: Any, max_depth: int) -> tuple[Any, list[str]]:
    """`value` with each non-empty container below `max_depth` levels replaced by its JSON
    text, and the paths replaced; iterative, so any depth is safe. Unchanged when none is."""
    cut: list[str] = []
    root: list[Any] = [None]
    # (container to copy, where the copy goes, key or index in it, its path, its depth)
    stack: list[tuple[Any, Any, Any, str, int]] = [(value, root, 0, "$", 0)]
    while stack:
        item, parent, slot, path, depth = stack.pop()
        if isinstance(item, Mapping) and item:
            if depth >= max_depth:
                parent[slot] = _json_text(item)
                cut.append(path)
                continue
            copy: dict[str, Any] = {}
            parent[slot] = copy
            for key, child in item.items():
                text = _key_string(key)
                copy[text] = None
                stack.append((child, copy, text, path + _key_segment(key), depth + 1))
        elif isinstance(item, list | tuple) and item:
            if depth >= max_depth:
                parent[slot] = _json_text(item)
                cut.append(path)
                continue
            items: list[Any] = [None] * len(item)
            parent[slot] = items
            for index, child in enumerate(item):
                stack.append((child, items, index, f"{path}[{index}]", depth + 1))
        else:
            parent[slot] = item
    if not cut:
        return value, cut
    cut.reverse()  # the stack visits the last child first
    return root[0], cut


# The text fields and the subject's, as Arrow converts them from the events in one pass.
_TEXT_AT_ONCE_TYPE: Final = pa.struct(
    [pa.field(key, _STR) for _, key in _TEXT_FIELDS]
    + [
        pa.field(
            "subject",
            pa.struct(
                [pa.field("subjectId", _STR)] + [pa.field(key, _STR) for _, key in _SUBJECT_FIELDS]
            ),
        )
    ]
)
_TEXT_AT_ONCE_COLUMNS: Final = (
    *(column for column, _ in _TEXT_FIELDS),
    "subject__subject_id",
    *(f"subject__{attr}" for attr, _ in _SUBJECT_FIELDS),
)


def _text_columns_at_once(events: list[Mapping[str, Any]]) -> dict[str, pa.Array] | None:
    """The text and subject columns, converted by Arrow in one pass (half the time of a list
    per column). None unless every event and subject is a plain dict (Arrow would read a tuple
    subject by position) and every value text or null (Arrow refuses the rest, which the
    per-column path turns into JSON text): that path then does it, with the same result."""
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
    id_array = _string_array(ids)
    meta_texts, metadata, anomalies = _metadata_rows(kept, ids, id_array)
    leftovers = [
        None
        if event.keys() <= _EVENT_KEYS
        and c is not None
        and u is not None
        and (s is None or s.keys() <= _SUBJECT_KEYS)
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
        for column, key in _TEXT_FIELDS:
            columns[column] = _string_array([e.get(key) for e in kept])
        present = [s if s is not None else _NO_SUBJECT for s in subjects]
        columns["subject__subject_id"] = _string_array([s.get("subjectId") for s in present])
        for attr, key in _SUBJECT_FIELDS:
            columns[f"subject__{attr}"] = _string_array([s.get(key) for s in present])
    columns["created_at"] = pa.array(created, type=_TS)
    columns["updated_at"] = pa.array(updated, type=_TS)
    columns["meta_data"] = _string_array(meta_texts)
    columns["extra_fields"] = _string_array(extra_texts)
    audit_logs = pa.Table.from_arrays(
        [columns[name] for name in AUDIT_LOGS_SCHEMA.names], schema=AUDIT_LOGS_SCHEMA
    )

    stamps = [c for c in created if c is not None]
    return EventBatch(
        audit_logs=audit_logs,
        metadata=metadata,
        ids=ids,
        subjects=_observe_subjects(ids, subjects, created),
        max_created_at=max(stamps, default=None),
        min_created_at=min(stamps, default=None),
        skipped=skipped,
        anomalies=tuple(anomalies),
    )


# --------------------------------------------------------------------------- subjects


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _spanning(
    base: SubjectObservation, first: datetime | None, last: datetime | None
) -> SubjectObservation:
    """`base` seen from `first` to `last`: dataclasses.replace() at a fifth of its cost."""
    return SubjectObservation(
        subject_id=base.subject_id,
        subject_type=base.subject_type,
        subject_slug=base.subject_slug,
        subject_display_name=base.subject_display_name,
        subject_pat_name=base.subject_pat_name,
        subject_controller_name=base.subject_controller_name,
        subject_external_identity_slug=base.subject_external_identity_slug,
        first_seen_at=first,
        last_seen_at=last,
    )


def merge_subject_observations(
    current: dict[str, SubjectObservation], new: Mapping[str, SubjectObservation]
) -> list[SubjectObservation]:
    """Fold `new` into `current` in place; return the observations that changed.

    The attributes come from whichever side was seen last (ties go to `new`), so a batch of
    older events arriving after a newer one widens first_seen_at but cannot roll the
    attributes back.
    """
    changed: list[SubjectObservation] = []
    for observation in new.values():
        subject_id = observation.subject_id
        held = current.get(subject_id)
        if held is None:
            merged = observation
        else:
            # Runs for every subject of every page, so nothing is built unless it changes.
            first = _earliest(held.first_seen_at, observation.first_seen_at)
            last = _latest(held.last_seen_at, observation.last_seen_at)
            newer = (observation.last_seen_at or _NEVER) >= (held.last_seen_at or _NEVER)
            base = observation if newer else held
            if first == base.first_seen_at and last == base.last_seen_at:
                merged = base
            else:
                merged = _spanning(base, first, last)
            if merged is held or merged == held:
                continue
        current[subject_id] = merged
        changed.append(merged)
    return changed


def subjects_table(observations: Iterable[SubjectObservation]) -> pa.Table:
    """The `subjects` rows of `observations`, in SUBJECTS_SCHEMA."""
    rows = list(observations)
    arrays: list[pa.Array] = [_string_array([o.subject_id for o in rows])]
    for attr, _ in _SUBJECT_FIELDS:
        arrays.append(_string_array([getattr(o, attr) for o in rows]))
    arrays.append(pa.array([o.first_seen_at for o in rows], type=_TS))
    arrays.append(pa.array([o.last_seen_at for o in rows], type=_TS))
    return pa.Table.from_arrays(arrays, schema=SUBJECTS_SCHEMA)
