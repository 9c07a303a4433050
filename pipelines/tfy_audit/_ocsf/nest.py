"""A flat row of the `ocsf_api_activity` view -> one nested OCSF event, and the Arrow schema of
a class's events in Parquet.

The view's column names are the attributes' paths: `a__b__c` is `a.b.c`, and `name_N__...`
(`resources_0__uid`) is element N of the array `name`. The class's `objects` (classes.csv)
say which top-level objects its events carry beyond the base event's; a NULL attribute is
absent, an object with no attribute left is absent, and so is an array element.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import pyarrow as pa

from tfy_audit._ocsf.mapping import OcsfClass

# the base event's own top-level objects and attributes, which every class carries
BASE_OBJECTS: Final = frozenset({"metadata", "unmapped"})
# the integer attributes (every other one is a string); time and modified_time are epoch ms
INTEGER_COLUMNS: Final = frozenset(
    {
        "class_uid",
        "category_uid",
        "activity_id",
        "severity_id",
        "actor__user__type_id",
        "user__type_id",
    }
)
LONG_COLUMNS: Final = frozenset({"type_uid", "time", "metadata__modified_time"})

_ELEMENT: Final = re.compile(r"^(\w+?)_(\d+)$")


def _top(column: str) -> str:
    head = column.split("__", 1)[0]
    element = _ELEMENT.match(head)
    return element[1] if element else head


def class_columns(columns: Sequence[str], ocsf_class: OcsfClass) -> list[str]:
    """The view's columns that a class's events carry, in the view's order."""
    allowed = BASE_OBJECTS | set(ocsf_class.objects)
    return [c for c in columns if _is_base_attribute(c) or _top(c) in allowed]


def _is_base_attribute(column: str) -> bool:
    return "__" not in column and not _ELEMENT.match(column)


def _put(tree: dict[str, Any], path: list[str], value: Any) -> None:
    head, rest = path[0], path[1:]
    element = _ELEMENT.match(head)
    if element:
        items: dict[int, dict[str, Any]] = tree.setdefault(element[1], {})
        if rest:  # an element is an object: its attributes follow
            _put(items.setdefault(int(element[2]), {}), rest, value)
        return
    if not rest:
        tree[head] = value
        return
    _put(tree.setdefault(head, {}), rest, value)


def _prune(value: Any) -> Any:
    """Drop None leaves and empty objects; turn {index: element} into a list in index order."""
    if isinstance(value, dict):
        if value and all(isinstance(k, int) for k in value):
            elements = [_prune(value[k]) for k in sorted(value)]
            kept = [e for e in elements if e is not None]
            return kept or None
        pruned = {k: _prune(v) for k, v in value.items()}
        kept_items = {k: v for k, v in pruned.items() if v is not None}
        return kept_items or None
    return value


def nest(row: Mapping[str, Any]) -> dict[str, Any]:
    """One flat row (column -> value) as the nested event, without its NULL attributes."""
    tree: dict[str, Any] = {}
    for column, value in row.items():
        if value is not None:
            _put(tree, column.split("__"), value)
    nested = _prune(tree)
    return nested if isinstance(nested, dict) else {}


def _leaf_type(column: str) -> pa.DataType:
    if column in LONG_COLUMNS:
        return pa.int64()
    if column in INTEGER_COLUMNS:
        return pa.int32()
    return pa.string()


def arrow_schema(columns: Iterable[str]) -> pa.Schema:
    """The Parquet schema of events with these (flat) columns: structs for objects, a list of
    structs for an array, int32/int64/string leaves."""
    tree: dict[str, Any] = {}
    for column in columns:
        _put(tree, column.split("__"), _leaf_type(column))

    def build(node: Any) -> pa.DataType:
        if isinstance(node, pa.DataType):
            return node
        if node and all(isinstance(k, int) for k in node):
            merged: dict[str, Any] = {}
            for k in sorted(node):
                merged.update(node[k])
            return pa.list_(build(merged))
        return pa.struct([pa.field(name, build(child)) for name, child in node.items()])

    return pa.schema([pa.field(name, build(child)) for name, child in tree.items()])


def event_day(time_ms: int) -> str:
    """Security Lake's `eventDay` partition value of an event time: its UTC day, YYYYMMDD."""
    return datetime.fromtimestamp(time_ms / 1000, UTC).strftime("%Y%m%d")
