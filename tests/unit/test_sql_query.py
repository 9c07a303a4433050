"""The parts of `tfy-audit sql` that need no database: which statements it lets through,
which snapshot a pointer file names, and how values are shown."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from tfy_audit._core.errors import UsageError
from tfy_audit._warehouse.sql_query import (
    QueryResult,
    format_csv,
    format_json,
    format_table,
    published_snapshot,
    read_only_statement,
)


@pytest.mark.parametrize(
    "sql",
    [
        "select 1",
        "  with a as (select 1 as x) select x from a ;  ",
        "-- a comment first\nselect 1;",
        "show tables",
        "describe audit_logs",
        "explain select 1",
    ],
)
def test_one_read_goes_through(sql: str) -> None:
    assert read_only_statement(sql) == sql.strip().rstrip(";").strip()


@pytest.mark.parametrize(
    "sql,message",
    [
        ("", "the query is empty; pass one, e.g. tfy-audit sql \"select 1\""),
        ("select 1; select 2", "the query holds 2 statements; tfy-audit sql runs one read "
         "query at a time"),
        ("delete from t", "tfy-audit sql only reads: a DELETE statement is refused; write a "
         "SELECT (the dataset is changed by tfy-audit sync only)"),
        ("pragma threads=1; select 1", "the query holds 2 statements; tfy-audit sql runs one "
         "read query at a time"),
    ],
)  # fmt: skip
def test_anything_else_is_refused_in_one_line(sql: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        read_only_statement(sql)
    assert str(raised.value) == message


def test_a_query_that_does_not_parse_names_the_parser_error() -> None:
    with pytest.raises(UsageError) as raised:
        read_only_statement("selec 1\x1b[31m")
    assert str(raised.value).startswith("the query does not parse: Parser Error: syntax error")
    assert "\x1b" not in str(raised.value)


def test_the_pointer_beside_the_database_names_the_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "tfy_audit.duckdb"
    db.write_bytes(b"")
    pointer = tmp_path / ".tfy_audit.duckdb.published.json"
    assert published_snapshot(db) is None  # no pointer

    snapshot = tmp_path / "snap" / "s1.duckdb"
    snapshot.parent.mkdir()
    snapshot.write_bytes(b"")
    stamp = datetime(2026, 12, 1, tzinfo=UTC).isoformat()
    pointer.write_text(json.dumps({"path": str(snapshot), "published_at": stamp}))
    assert published_snapshot(db) == snapshot
    pointer.write_text(json.dumps({"path": "snap/s1.duckdb", "published_at": stamp}))
    assert published_snapshot(db) == snapshot  # relative to the pointer's folder

    with caplog.at_level(logging.WARNING):
        for text in ("{not json", json.dumps({"published_at": stamp}), "[]"):
            pointer.write_text(text)
            assert published_snapshot(db) is None
        pointer.write_text(json.dumps({"path": str(tmp_path / "gone.duckdb")}))
        assert published_snapshot(db) is None
    assert len(caplog.records) == 4


def test_values_in_each_format() -> None:
    at = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    result = QueryResult(
        ["id", "n", "at", "meta", "note"],
        [
            ("a", 1, at, {"k": [1, "é"]}, "two\nlines"),
            ("b", None, None, None, Decimal("2.50")),
        ],
        truncated=False,
        source="x",
    )
    assert format_table(result) == (
        "id     n  at                         meta             note\n"
        "--  ----  -------------------------  ---------------  ---------\n"
        'a      1  2026-12-01T08:30:00+00:00  {"k": [1, "é"]}  two lines\n'
        "b   NULL  NULL                       NULL             2.50"
    )
    assert format_csv(result) == (
        "id,n,at,meta,note\n"
        'a,1,2026-12-01T08:30:00+00:00,"{""k"": [1, ""é""]}","two\nlines"\n'
        "b,,,,2.50"
    )
    assert json.loads(format_json(result)) == [
        {"id": "a", "n": 1, "at": "2026-12-01T08:30:00+00:00", "meta": {"k": [1, "é"]},
         "note": "two\nlines"},
        {"id": "b", "n": None, "at": None, "meta": None, "note": "2.50"},
    ]  # fmt: skip
