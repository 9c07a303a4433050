"""The canonical JSON of receipts' event hashes (RFC 8785 with exact integers) and the
Merkle tree hash (RFC 6962) over them."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from tfy_audit._receipts.canonical import canonical_json, es_number, event_from_row
from tfy_audit._receipts.merkle import merkle_root


def test_rfc8785_sample_is_written_as_the_rfc_writes_it() -> None:
    # RFC 8785, section 3.2.2 (its input, parsed as any JSON reader would)
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(text)) == expected.encode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (0.000123, "0.000123"),
        (5e-324, "5e-324"),
        (-1.7976931348623157e308, "-1.7976931348623157e+308"),
    ],
)
def test_doubles_are_written_as_ecmascript_writes_them(value: float, text: str) -> None:
    assert es_number(value) == text


def test_integers_keep_every_digit_and_meet_doubles_of_the_same_value() -> None:
    assert canonical_json(2**64) == b"18446744073709551616"
    assert canonical_json(10**308) == canonical_json(1e308) == b"1e+308"
    assert canonical_json(123 * 10**30) == b"1.23e+32"
    assert canonical_json({"\U0001f600": 1, "\uffff": 2}) == '{"😀":1,"\uffff":2}'.encode()


def test_an_event_is_rebuilt_under_the_service_s_names() -> None:
    row = {
        "id": "e1",
        "action": "CREATE_APP",
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=UTC),
        "updated_at": None,
        "subject__subject_id": "u1",
        "subject__subject_type": "user",
        "meta_data": '{"b": [1, 2.50], "a": null}',
        "extra_fields": '{"subject": {"team": "x"}, "newKey": 7}',
    }
    assert event_from_row(row) == {
        "id": "e1",
        "action": "CREATE_APP",
        "createdAt": "2026-01-02T03:04:05.006000Z",
        "subject": {"subjectId": "u1", "subjectType": "user", "team": "x"},
        "metaData": {"b": [1, 2.5], "a": None},
        "newKey": 7,
    }


def _rfc6962(leaves: list[bytes]) -> bytes:
    """RFC 6962's MTH as the RFC defines it: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _rfc6962(leaves[:k]) + _rfc6962(leaves[k:])).digest()


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 9, 13])
def test_the_merkle_root_is_rfc_6962_over_the_sorted_hashes(n: int) -> None:
    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)]
    expected = _rfc6962([bytes.fromhex(h) for h in sorted(hashes)]).hex()
    assert merkle_root(hashes) == merkle_root(reversed(hashes)) == expected
