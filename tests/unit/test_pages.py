"""Decoding a page: window membership, ids for the completeness check, bad bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from tfy_audit.pages import (
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
    from tfy_audit.pages import _has_long_integer

    assert not _has_long_integer(raw)
    assert _has_long_integer(raw.replace(b"}", b', "n": 12345678901234567890}'))


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
