"""NUL for destinations that cannot hold it: a visible substitute, a record per event and field."""

from __future__ import annotations

import pyarrow as pa
from tfy_audit._service.nul import SUBSTITUTE, replace_nul
from tfy_audit._service.rows import normalize_events


def test_nothing_to_replace_is_the_same_table() -> None:
    batch = normalize_events([{"id": "a", "message": "m", "metaData": {"k": "\\u0000"}}])
    for table, name in ((batch.audit_logs, "audit_logs"), (batch.metadata, "audit_log_metadata")):
        same, records = replace_nul(table, name)
        assert same is table
        assert records == []


def test_nul_and_its_json_escape_are_replaced_an_escaped_backslash_is_not() -> None:
    batch = normalize_events(
        [
            {"id": "a", "message": "m\0m", "metaData": {"k": "v\0", "e": "\\u0000"}},
            {"id": "b", "message": "clean", "metaData": {"k": "\\\0"}},
        ]
    )
    logs, log_records = replace_nul(batch.audit_logs, "audit_logs")
    assert logs.column("message").to_pylist() == [f"m{SUBSTITUTE}m", "clean"]
    assert logs.column("meta_data").to_pylist() == [
        f'{{"k":"v{SUBSTITUTE}","e":"\\\\u0000"}}',
        f'{{"k":"\\\\{SUBSTITUTE}"}}',
    ]
    leaves, leaf_records = replace_nul(batch.metadata, "audit_log_metadata")
    assert leaves.column("value").to_pylist() == [
        f'"v{SUBSTITUTE}"',
        '"\\\\u0000"',
        f'"\\\\{SUBSTITUTE}"',
    ]
    found = {(r.kind, r.action, r.event_id, r.field_path) for r in log_records + leaf_records}
    assert found == {
        ("nul_character", "replaced", "a", "$.message"),
        ("nul_character", "replaced", "a", "$.metaData.k"),
        ("nul_character", "replaced", "b", "$.metaData.k"),
    }


def test_any_string_column_of_any_table_is_fitted() -> None:
    table = pa.table({"subject_id": ["s\0"], "n": [1]})
    fitted, records = replace_nul(table, "subjects")
    assert fitted.column("subject_id").to_pylist() == [f"s{SUBSTITUTE}"]
    assert records == []  # the events carrying the subject have the record
