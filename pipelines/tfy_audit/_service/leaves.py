"""`metaData` as `audit_log_metadata` rows: one per leaf, addressed by a JSONPath that is
unambiguous (an object key is written `.key` only when it is a plain identifier, otherwise as
a quoted JSON string), so the document can be rebuilt from its rows; and the depths past which
a subtree is kept as JSON text instead.

The leaf walker runs on every page of a sync: see `_walker` for why it is shaped as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from json.encoder import encode_basestring
from typing import Any, Final

import pyarrow as pa

from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind
from tfy_audit._service.columns import METADATA_SCHEMA, STRING, string_array
from tfy_audit._service.json_text import json_text, key_string, scalar_text

logger = logging.getLogger(__name__)


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


_INDEXED: Final = 1024
_INDEX_SEGMENTS: Final = tuple(f"[{i}]" for i in range(_INDEXED))


def key_segment(key: Any) -> str:
    """An object key as a JSONPath segment, as the metadata leaves' paths spell it."""
    text = key_string(key)
    # ASCII + isidentifier is exactly ^[A-Za-z_][A-Za-z0-9_]*$, without a regex per key.
    if text.isascii() and text.isidentifier():
        return "." + text
    return "[" + encode_basestring(text) + "]"


def _container_leaf(value: Any, empty: str) -> str:
    return json_text(value) if value else empty


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
            self.values.append(json_text(root))
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
            text, kind = scalar_text(value)
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
            text, kind = scalar_text(value)
        add_path(path)
        add_value(text)
        add_type(kind)

    def walk_object(items: Iterable[tuple[Any, Any]], prefix: str, depth: int) -> None:
        # `depth` is the number of segments in the children's paths.
        for key, value in items:
            # Only str keys are cached, so a non-str key (True == 1) never finds a wrong one.
            segment = segments.get(key)
            if segment is None:
                segment = key_segment(key)
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
            # The commonest leaves are written inline, as in walk_object, not through a shared
            # function: a call per leaf is what this loop must not pay (`make bench`).
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
            text, kind = scalar_text(root)
            add_path("$")
            add_value(text)
            add_type(kind)

    return walk


def _value_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return scalar_text(value)[1]


def jsonpath_leaves(value: Any) -> Iterator[tuple[str, str, str]]:
    """(path, value as JSON text, value_type) for every leaf of `value`, in document order.

    Leaves are scalars and empty containers; an empty root has none. A subtree whose path
    would exceed MAX_PATH_DEPTH segments is one leaf holding its JSON text.
    """
    sink = _LeafSink()
    sink.add(value)
    return zip(sink.paths, sink.values, sink.types, strict=True)


def metadata_rows(
    kept: list[Mapping[str, Any]], ids: list[str]
) -> tuple[list[str | None], pa.Table, list[Anomaly]]:
    """`audit_logs.meta_data` of each event, the `audit_log_metadata` table of them all, and a
    record of each event whose metaData is nested too deep to flatten whole."""
    texts: list[str | None] = []
    anomalies: list[Anomaly] = []
    # Each leaf's event, as a position into `ids`. The id column is built from a list, not with
    # Arrow's take(): a decoder process forked from the command runs no compute kernel
    # otherwise, and the first one sets up Arrow's function registry, which makes about 18 MB of
    # its library resident in each worker, for no less CPU (docs/performance.md).
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
                texts.append(json_text(meta))
    table = pa.Table.from_arrays(
        [
            pa.array([ids[owner] for owner in owners], type=STRING),
            string_array(sink.paths),
            string_array(sink.values),
            pa.array(sink.types, type=STRING),
        ],
        schema=METADATA_SCHEMA,
    )
    return texts, table, anomalies


def _deep_metadata(meta: Any, event_id: str, capped: list[str]) -> tuple[str, Anomaly]:
    """`meta_data` of a document nested deeper than MAX_PATH_DEPTH (its leaves stop there, the
    subtrees below kept as JSON text at their paths), and the record saying so. The text is
    verbatim unless the document is deeper than MAX_TEXT_DEPTH: subtrees below that are JSON
    strings holding their JSON text."""
    capped_meta, cut = cap_depth(meta, MAX_TEXT_DEPTH)
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
    return json_text(capped_meta), anomaly


def _metadata_field(path: str) -> str:
    """A leaf path of metaData (`$.a[0]`) as a path into the event (`$.metaData.a[0]`)."""
    return "$.metaData" + path[1:]


def cap_depth(value: Any, max_depth: int) -> tuple[Any, list[str]]:
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
                parent[slot] = json_text(item)
                cut.append(path)
                continue
            copy: dict[str, Any] = {}
            parent[slot] = copy
            for key, child in item.items():
                text = key_string(key)
                copy[text] = None
                stack.append((child, copy, text, path + key_segment(key), depth + 1))
        elif isinstance(item, list | tuple) and item:
            if depth >= max_depth:
                parent[slot] = json_text(item)
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
