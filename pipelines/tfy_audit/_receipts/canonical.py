"""The canonical form of an event as the warehouse holds it, and its hash.

An event is rebuilt from its `audit_logs` row under the service's own key names (`id`, the text
fields, `createdAt`/`updatedAt`, `subject`, `metaData`, and the keys `extra_fields` kept), then
written as canonical JSON: the RFC 8785 (JCS) rules of sorted keys (by UTF-16 code units), no
whitespace, UTF-8, JCS string escapes and ECMAScript number text, with one departure: an integer
is written with all its digits, where JCS would round one beyond 2**53 to a double (two events
differing only in such an id or count must not hash alike); from 10**21 up, in ECMAScript's
exponent form, so a double and the integer of the same value (PostgreSQL's jsonb writes 1e308
as 309 digits) are written alike. A null column is an absent key
(the warehouse cannot tell them apart); timestamps are the warehouse's instant, in UTC, to the
microsecond. docs/receipts.md says why the form is built from the rows, not kept from the wire.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from tfy_audit._core.times import utc
from tfy_audit._service.columns import SUBJECT_FIELDS, TEXT_FIELDS
from tfy_audit._service.json_text import int_text
from tfy_audit._service.lenient import loads

# The version of the canonical form; a receipt names the one its hashes were made with.
CANONICAL_VERSION: Final = 1

# The `audit_logs` columns the canonical form is made of, in the order `event_from_row` reads.
EVENT_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    *(column for column, _ in TEXT_FIELDS),
    "created_at",
    "updated_at",
    "subject__subject_id",
    *(f"subject__{attr}" for attr, _ in SUBJECT_FIELDS),
    "meta_data",
    "extra_fields",
)

# Integral doubles below this are written as integers by ECMAScript's Number::toString.
_INTEGRAL_LIMIT: Final = 1e21


def canonical_json(value: Any) -> bytes:
    """`value` (JSON types only) as canonical JSON bytes; ValueError for anything else."""
    parts: list[str] = []
    _write(value, parts)
    return "".join(parts).encode("utf-8", "surrogatepass")


def _write(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, int):
        out.append(integer_text(value))
    elif isinstance(value, float):
        out.append(es_number(value))
    elif isinstance(value, Mapping):
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if not isinstance(key, str):
                raise ValueError(f"an object key must be text, not {type(key).__name__}")
            if i:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ValueError(f"{type(value).__name__} is not a JSON value")


def _utf16_key(key: Any) -> bytes:
    return str(key).encode("utf-16-be", "surrogatepass")


def integer_text(value: int) -> str:
    """An integer's exact value, written as ECMAScript writes a number (module docstring)."""
    digits = int_text(abs(value))
    sign = "-" if value < 0 else ""
    if len(digits) <= 21:
        return sign + digits
    kept = digits.rstrip("0")
    return sign + kept[0] + ("." + kept[1:] if len(kept) > 1 else "") + f"e+{len(digits) - 1}"


def number_text(value: int | float) -> str:
    """A JSON number's canonical text, whether parsed as an integer or a double."""
    return integer_text(value) if isinstance(value, int) else es_number(value)


def es_number(value: float) -> str:
    """A double as ECMAScript's Number::toString writes it (what JCS requires)."""
    if not math.isfinite(value):
        raise ValueError("JSON has no spelling for a non-finite number")
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < _INTEGRAL_LIMIT:
        return str(int(value))
    sign = "-" if value < 0 else ""
    # repr is the shortest text that reads back as the same double: its digits are JCS's
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    point = len(whole) + (int(exp) if exp else 0)  # the decimal point's place in `digits`
    stripped = digits.lstrip("0")  # 0.000123: each leading zero moves the point left
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0") or "0"
    k, n = len(digits), point
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e > 0 else "e-")
        text += str(abs(e))
    return sign + text


def parse_json_text(text: Any) -> tuple[Any, bool]:
    """A JSON column's value as the destination returned it (text, cast so on every kind),
    parsed as the service layer parses a page (an integer of any size stays one, any depth);
    (the text itself, False) where it is not JSON."""
    if text is None or not isinstance(text, str | bytes):
        return text, True
    try:
        return loads(text), True
    except (ValueError, RecursionError):
        return text, False


def timestamp_text(value: Any) -> str | None:
    """A warehouse timestamp as canonical text: UTC, microseconds, `Z`."""
    at = utc(value)
    if at is None:
        return None
    text: str = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return text


def event_from_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The event an `audit_logs` row holds, under the service's key names (module docstring).
    `row` maps EVENT_COLUMNS to values; `meta_data` and `extra_fields` as JSON text."""
    event: dict[str, Any] = {"id": row["id"]}
    for column, key in TEXT_FIELDS:
        if row.get(column) is not None:
            event[key] = row[column]
    for column, key in (("created_at", "createdAt"), ("updated_at", "updatedAt")):
        text = timestamp_text(row.get(column))
        if text is not None:
            event[key] = text
    subject = {"subjectId": row.get("subject__subject_id")} | {
        key: row.get(f"subject__{attr}") for attr, key in SUBJECT_FIELDS
    }
    subject = {k: v for k, v in subject.items() if v is not None}
    if subject:
        event["subject"] = subject
    if row.get("meta_data") is not None:
        event["metaData"] = parse_json_text(row["meta_data"])[0]
    extras, _ = parse_json_text(row.get("extra_fields"))
    if isinstance(extras, dict):
        for key, value in extras.items():
            held = event.get(key)
            if key == "subject" and isinstance(held, dict) and isinstance(value, dict):
                event["subject"] = held | value  # the subject's keys no column holds
            else:
                event[key] = value
    elif extras is not None:
        event["extra_fields"] = extras  # not an object: not one tfy-audit wrote
    return event


def event_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the event a row holds."""
    return hashlib.sha256(canonical_json(event_from_row(row))).hexdigest()


def now_text(now: datetime | None = None) -> str:
    """An issue time as receipts write it: UTC, seconds, `Z`."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
