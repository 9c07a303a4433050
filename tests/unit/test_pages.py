"""Decoding a page: window membership, ids for the completeness check, bad bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from tfy_audit._service.pages import (
    NotAuditLogsResponse,
    decode_page,
    first_event_in_head,
    parse_list_body,
)

START = datetime(2026, 8, 1, tzinfo=UTC)
END = datetime(2026, 8, 2, tzinfo=UTC)


def body(*events: dict[str, object], total: int | None = None) -> bytes:
    page = {"data": list(events), "pagination": {"total": total or len(events)}}
    return json.dumps(page).encode()


def test_events_of_the_padding_millisecond_belong_to_the_neighbour() -> None:
    page = decode_page(
        body(
            {"id": "before", "createdAt": "2026-07-31T23:59:59.999Z"},
            {"id": "start", "createdAt": "2026-08-01T00:00:00.000Z"},
            {"id": "inside", "createdAt": "2026-08-01T12:00:00.000+02:00"},
            {"id": "end", "createdAt": "2026-08-02T00:00:00.000Z"},
            {"id": "no-time"},
            total=9,
        ),
        START,
        END,
    )
    assert page.total == 9
    assert page.ids == ["before", "start", "inside", "end", "no-time"]
    assert page.batch is not None
    assert page.batch.audit_logs.column("id").to_pylist() == ["start", "inside", "no-time"]
    assert page.outside == 2


def test_a_page_of_neighbours_only_has_no_rows() -> None:
    page = decode_page(body({"id": "x", "createdAt": "2026-08-02T00:00:00Z"}), START, END)
    assert page.batch is None and page.ids == ["x"]


@pytest.mark.parametrize(
    "raw",
    [b'{"hello": "world"}', b'{"data": [], "pagination": {}}', b"[]", b'{"data": {}}'],
)
def test_foreign_json_is_not_an_audit_logs_response(raw: bytes) -> None:
    with pytest.raises(NotAuditLogsResponse):
        parse_list_body(raw)


def test_truncated_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_list_body(b'{"data": [{"id": "a"')


def test_long_integers_survive_and_digit_runs_in_strings_are_harmless() -> None:
    events, _ = parse_list_body(
        b'{"data": [{"id": "1234567890123456789012", "n": 18446744073709551616}],'
        b' "pagination": {"total": 1}}'
    )
    assert events[0]["n"] == 18446744073709551616
    assert events[0]["id"] == "1234567890123456789012"


@pytest.mark.parametrize(
    "literal",
    [
        b"18446744073709551616",
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b" \n\t-123456789012345678901234567890",
    ],
)
@pytest.mark.parametrize("where", ["value", "array-first", "array-later"])
def test_every_long_integer_literal_keeps_its_digits(literal: bytes, where: str) -> None:
    """The fast parser turns integers beyond 64 bits into floats; each such literal, wherever it
    stands, must send the page to the exact parser."""
    value = {
        "value": b'{"n": ' + literal + b"}",
        "array-first": b'{"n": [' + literal + b", 1]}",
        "array-later": b'{"n": [1,' + literal + b"]}",
    }[where]
    raw = (
        b'{"data": [{"id": "c1a2128662549804438418 2fc", "metaData": '
        + value
        + b'}], "pagination": {"total": 1}}'
    )
    events, _ = parse_list_body(raw)
    # compared as JSON text: 2**64 == float(2**64) in Python, but "1.8446744073709552e+19" is
    # not "18446744073709551616"
    assert json.dumps(events[0]["metaData"]) == json.dumps(json.loads(value))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"id": "c1a21286625498044384182fc"}',  # a run inside an id
        b'{"x": 12345678901234567890.5}',  # floats parse alike either way
        b'{"x": 1.12345678901234567890123}',
        b'{"x": 12345678901234567890e3}',
    ],
)
def test_digit_runs_that_are_no_integer_take_the_fast_parser(raw: bytes) -> None:
    from tfy_audit._service.pages import _has_long_integer

    assert not _has_long_integer(raw)
    assert _has_long_integer(raw.replace(b"}", b', "n": 12345678901234567890}'))


# --------------------------------------------------------------------------- odd events


def _raw_page(*events: bytes) -> bytes:
    return b'{"data":[%b],"pagination":{"total":%d}}' % (b",".join(events), len(events))


def _nested(depth: int) -> bytes:
    return b'{"d":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [300, 1_100, 100_000])
def test_a_page_nested_deeper_than_the_parsers_follow_decodes(depth: int) -> None:
    # orjson refuses past 255 levels, the standard parser recurses near 1,000
    raw = _raw_page(
        b'{"id":"deep","createdAt":"2026-08-01T01:00:00Z","metaData":%b}' % _nested(depth),
        b'{"id":"plain","createdAt":"2026-08-01T02:00:00Z","metaData":{"k":"v"}}',
    )
    page = decode_page(raw, START, END)
    assert page.ids == ["deep", "plain"]
    assert page.batch is not None
    assert page.batch.ids == ["deep", "plain"]
    [record] = page.batch.anomalies
    assert (record.kind, record.action, record.event_id) == (
        "deep_nesting",
        "kept_as_json_text",
        "deep",
    )
    assert record.field_path == "$.metaData" + ".d" * 128


def test_the_iterative_parser_reads_json_as_the_standard_parser_does() -> None:
    from tfy_audit._service.lenient import loads_iterative

    text = (
        ' {"a": [1, -2.5e3, 0.5, true, false, null, "s\\u00e9\\"q", {}, [], [[]], {"b": {}}],'
        ' "n": -0, "big": 123456789012345678901234567890, "NaN": NaN, "": -Infinity } '
    )
    parsed = loads_iterative(text)
    expected = json.loads(text)
    assert json.dumps(parsed) == json.dumps(expected)
    assert type(parsed["big"]) is int
    for bad in ["", "{", '{"a" 1}', "[1,]", "[1 2]", "{'a': 1}", "[1] x", "tru"]:
        with pytest.raises(ValueError):
            loads_iterative(bad)


def test_a_byte_that_is_not_utf8_costs_only_its_field() -> None:
    raw = _raw_page(
        b'{"id":"ok","createdAt":"2026-08-01T01:00:00Z","message":"fine \xef\xbf\xbd kept"}',
        b'{"id":"bad","createdAt":"2026-08-01T02:00:00Z","message":"caf\xe9 ok",'
        b'"subject":{"subjectId":"s1","subjectDisplayName":"Zo\xeb \xff\xfe!"},'
        b'"metaData":{"k\xe9y":["x","\xc3"],"clean":"\\ufdd0 escaped"}}',
    )
    page = decode_page(raw, START, END)
    assert page.ids == ["ok", "bad"]
    assert page.batch is not None
    rows = {r["id"]: r for r in page.batch.audit_logs.to_pylist()}
    # a U+FFFD the service sent is no replacement, and no record
    assert rows["ok"]["message"] == "fine \ufffd kept"
    assert rows["bad"]["message"] == "caf\ufffd ok"
    # a run of bad bytes is one U+FFFD
    assert rows["bad"]["subject__subject_display_name"] == "Zo\ufffd \ufffd!"
    assert json.loads(rows["bad"]["meta_data"]) == {
        "k\ufffdy": ["x", "\ufffd"],
        "clean": "\ufdd0 escaped",
    }
    records = sorted((a.kind, a.action, a.event_id, a.field_path) for a in page.batch.anomalies)
    assert records == [
        ("invalid_utf8", "replaced", "bad", path)
        for path in sorted(
            [
                "$.message",
                '$.metaData["k\ufffdy"]',
                '$.metaData["k\ufffdy"][1]',
                "$.subject.subjectDisplayName",
            ]
        )
    ]


@pytest.mark.parametrize(
    ("head", "found"),
    [
        # a hostile body: no event in its data list
        (b'{"data": [], "pagination": {"total": 1}, "x": "aaaa', (False, None)),
        (b'{"data": [{"id": "abc", "metaData": {"x": "aaa', (True, "abc")),
        # keys in any order; an "id" elsewhere (pagination, nested in the event) is not its id
        (
            b'{"pagination": {"total": 3, "id": "no"}, "data": [ {"metaData": {"id": "nested"},'
            b' "id": "e\\"1", "x": "aaa',
            (True, 'e"1'),
        ),
        (b'{"data": [{"metaData": {"x": "aaa', (True, None)),  # the id comes later
        (b'{"data": [{"id": 123456, "m', (True, "123456")),
        (b'{"data": "x", "y": [{"id": "q"', (False, None)),
        (b"<html><body>", (False, None)),
        (b"", (False, None)),
    ],
)
def test_the_first_event_is_found_in_a_body_cut_short(
    head: bytes, found: tuple[bool, str | None]
) -> None:
    assert first_event_in_head(head) == found
