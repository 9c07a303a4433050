"""U+0000 for destinations that cannot hold it: replaced by U+2400 (␀), each change recorded.

PostgreSQL's text cannot hold NUL and its jsonb refuses the escape `\\u0000`, so one NUL in one
event made the whole load fail (or, in some columns, was dropped in silence). For such a
destination every string column of every table has NUL replaced by the visible substitute
U+2400 SYMBOL FOR NULL, and the columns holding JSON text (`meta_data`, `extra_fields`, the
metadata leaves' `path` and `value`) have the escape `\\u0000` replaced by it, so the text stays
JSON. Each event and field changed gets a `nul_character` / `replaced` record. Destinations
that hold NUL (DuckDB, Parquet) keep it exactly.

Applied to the Arrow tables in the main process, before dlt gets them. No dlt here.
"""

from __future__ import annotations

import re
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc

from tfy_audit._core.settings import AUDIT_LOGS_TABLE, METADATA_TABLE
from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind
from tfy_audit._service.columns import COLUMN_FIELDS

SUBSTITUTE: Final = "\u2400"
_NUL: Final = "\x00"
_ESCAPE: Final = "\\u0000"
# the escape, not an escaped backslash followed by "u0000"
_JSON_ESCAPE: Final = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
_JSON_COLUMNS: Final[dict[str, frozenset[str]]] = {
    AUDIT_LOGS_TABLE: frozenset({"meta_data", "extra_fields"}),
    METADATA_TABLE: frozenset({"path", "value"}),
}
_DETAIL: Final = "U+0000 replaced by U+2400 (the destination cannot hold it)"

# Where each table names its event, and how a changed column is named in the record.
_OWNER: Final = {AUDIT_LOGS_TABLE: "id", METADATA_TABLE: "audit_log_id"}


def _replace_json_escapes(values: list[str | None]) -> list[str | None]:
    return [None if v is None else _JSON_ESCAPE.sub(rf"\g<1>{SUBSTITUTE}", v) for v in values]


def replace_nul(table: pa.Table, table_name: str) -> tuple[pa.Table, list[Anomaly]]:
    """`table` with NUL replaced in its string columns, and a record per event and field of
    the event tables. Unchanged (the same object) when there is none: the usual case costs a
    scan of each string column."""
    json_columns = _JSON_COLUMNS.get(table_name, frozenset())
    changed: dict[str, pa.ChunkedArray] = {}
    masks: dict[str, list[bool]] = {}
    for index, field in enumerate(table.schema):
        if not pa.types.is_string(field.type):
            continue
        column = table.column(index)
        raw = pc.match_substring(column, _NUL)
        if pc.any(raw).as_py():
            column = pc.replace_substring(column, _NUL, SUBSTITUTE)
        else:
            raw = None
        escaped = None
        if field.name in json_columns:
            candidates = pc.match_substring(column, _ESCAPE)
            if pc.any(candidates).as_py():
                before = column.to_pylist()
                after = _replace_json_escapes(before)
                escaped = [a != b for a, b in zip(after, before, strict=True)]
                if any(escaped):
                    column = pa.chunked_array([pa.array(after, type=field.type)])
                else:
                    escaped = None
        if raw is None and escaped is None:
            continue
        changed[field.name] = column
        mask = [bool(x) for x in raw.to_pylist()] if raw is not None else [False] * len(table)
        if escaped is not None:
            mask = [a or b for a, b in zip(mask, escaped, strict=True)]
        masks[field.name] = mask
    if not changed:
        return table, []
    for name, column in changed.items():
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table, _records(table, table_name, masks)


def _records(table: pa.Table, table_name: str, masks: dict[str, list[bool]]) -> list[Anomaly]:
    owner = _OWNER.get(table_name)
    if owner is None:
        return []  # subjects come from events whose own rows carry the record
    owners = table.column(owner).to_pylist()
    paths = table.column("path").to_pylist() if table_name == METADATA_TABLE else None
    out: list[Anomaly] = []
    for name, mask in masks.items():
        if table_name == AUDIT_LOGS_TABLE and name == "meta_data":
            continue  # the metadata leaves name the fields within it
        for row, hit in enumerate(mask):
            if not hit:
                continue
            if paths is not None:
                field_path = "$.metaData" + str(paths[row])[1:]
            else:
                field_path = COLUMN_FIELDS.get(name, f"$.{name}")
            out.append(
                Anomaly(
                    AnomalyKind.NUL_CHARACTER,
                    AnomalyAction.REPLACED,
                    owners[row],
                    field_path,
                    _DETAIL,
                )
            )
    return out
