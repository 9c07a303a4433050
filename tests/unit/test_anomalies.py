"""The record of what the tool changed or could not place: stable keys, one row per finding."""

from __future__ import annotations

from datetime import UTC, datetime

from tfy_audit._service.anomalies import (
    ANOMALIES_SCHEMA,
    Anomaly,
    AnomalyAction,
    AnomalyKind,
    anomalies_table,
)

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 11, 2, tzinfo=UTC)


def test_a_finding_has_the_same_key_on_every_read() -> None:
    a = Anomaly(AnomalyKind.INVALID_UTF8, AnomalyAction.REPLACED, "e1", "$.message", "1 byte")
    b = Anomaly(AnomalyKind.INVALID_UTF8, AnomalyAction.REPLACED, "e1", "$.message", "other")
    c = Anomaly(AnomalyKind.INVALID_UTF8, AnomalyAction.REPLACED, "e1", "$.resourceName")
    assert a.key == b.key
    assert a.key != c.key


def test_an_event_without_id_is_keyed_by_where_it_was_read() -> None:
    def at(offset: int) -> Anomaly:
        return Anomaly(
            AnomalyKind.EVENT_TOO_LARGE,
            AnomalyAction.NOT_LOADED,
            None,
            "$",
            window_start=START,
            window_end=END,
            page_offset=offset,
        )

    assert at(0).key == at(0).key
    assert at(0).key != at(1).key


def test_the_table_holds_one_row_per_finding_with_every_field() -> None:
    a = Anomaly(
        AnomalyKind.DEEP_NESTING,
        AnomalyAction.KEPT_AS_TEXT,
        "e1",
        "$.metaData.a",
        "nested past 64 levels",
        START,
        END,
        0,
    )
    table = anomalies_table([a, a], sync_id="s1", load_id="l1")
    assert table.schema == ANOMALIES_SCHEMA
    rows = table.to_pylist()
    assert len(rows) == 1
    row = rows[0]
    del row["recorded_at"]
    assert row == {
        "anomaly_id": a.key,
        "kind": "deep_nesting",
        "action": "kept_as_json_text",
        "event_id": "e1",
        "field_path": "$.metaData.a",
        "detail": "nested past 64 levels",
        "window_start": START,
        "window_end": END,
        "page_offset": 0,
        "sync_id": "s1",
        "load_id": "l1",
    }
