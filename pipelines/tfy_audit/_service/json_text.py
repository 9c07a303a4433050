"""Any value as compact JSON text, and the text of the scalars an event's columns hold.

Total: nothing here raises for a value's type, size or depth. Imported by the decoder worker
processes with the rest of the page decoding (rows.py), so nothing here imports dlt or Arrow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any, Final

import orjson


def json_text(value: Any) -> str:
    """`value` as compact JSON text, key order kept. Never raises.

    orjson first (fast); it refuses integers beyond 64 bits, nesting deeper than ~255, lone
    surrogates and non-string keys, so stdlib `json` takes those; what even that refuses
    (deeper than the interpreter's recursion limit, NaN, foreign types) gets the iterative
    encoder. Non-finite floats become `null` on every path, as orjson writes them, because
    JSON has no spelling for them.
    """
    try:
        return orjson.dumps(value).decode()
    except (TypeError, ValueError):
        pass
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return _dumps_iterative(value)


def int_text(value: int) -> str:
    try:
        return int.__repr__(value)
    except ValueError:
        # Beyond the interpreter's int->str digit limit; Decimal converts without it.
        return str(Decimal(value))


def float_text(value: float) -> str:
    # x - x is NaN exactly for NaN and the infinities.
    return float.__repr__(value) if value - value == 0.0 else "null"


def _unknown_text(value: Any) -> str:
    """A value JSON cannot hold (only reachable from non-JSON callers) as a JSON string."""
    try:
        text = str(value)
    except Exception:
        text = object.__repr__(value)
    return encode_basestring(text)


def key_string(key: Any) -> str:
    """An object key as the string JSON would make of it (stdlib's rules for non-str keys)."""
    if type(key) is str:
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int_text(key)
    if isinstance(key, float):
        return float_text(key)
    if isinstance(key, str):
        return str.__str__(key)
    try:
        return str(key)
    except Exception:
        return object.__repr__(key)


def scalar_text(value: Any) -> tuple[str, str]:
    """(JSON text, value_type) of a non-container value, subclasses included."""
    if value is None:
        return "null", "null"
    if isinstance(value, bool):
        return ("true" if value else "false"), "boolean"
    if isinstance(value, int):
        return int_text(value), "integer"
    if isinstance(value, float):
        text = float_text(value)
        return text, ("number" if text != "null" else "null")
    if isinstance(value, str):
        return encode_basestring(value), "string"
    return _unknown_text(value), "string"


class _Raw:
    """A piece of finished JSON text on the iterative encoder's stack."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_OPEN_OBJ: Final = _Raw("{")
_CLOSE_OBJ: Final = _Raw("}")
_OPEN_ARR: Final = _Raw("[")
_CLOSE_ARR: Final = _Raw("]")
_COMMA: Final = _Raw(",")


def _dumps_iterative(value: Any) -> str:
    """The encoder of last resort: no recursion, no type or size it refuses."""
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Raw:
            out.append(item.text)
        elif isinstance(item, Mapping):
            if not item:
                out.append("{}")
                continue
            work: list[Any] = [_OPEN_OBJ]
            for i, (k, v) in enumerate(item.items()):
                if i:
                    work.append(_COMMA)
                work.append(_Raw(encode_basestring(key_string(k)) + ":"))
                work.append(v)
            work.append(_CLOSE_OBJ)
            stack.extend(reversed(work))
        elif isinstance(item, list | tuple):
            if not item:
                out.append("[]")
                continue
            work = [_OPEN_ARR]
            for i, v in enumerate(item):
                if i:
                    work.append(_COMMA)
                work.append(v)
            work.append(_CLOSE_ARR)
            stack.extend(reversed(work))
        else:
            out.append(scalar_text(item)[0])
    return "".join(out)


def key_text(value: Any) -> str | None:
    """An identifier usable as a key: a non-empty string, or an integer spelled in decimal."""
    if type(value) is str:
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return int_text(value)
    if isinstance(value, str):
        return str.__str__(value) or None
    return None


def as_text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    return json_text(value)


def utf8_safe(text: str | None) -> str | None:
    """Lone surrogates (which stdlib json.loads produces from `"\\ud800"`) cannot be UTF-8;
    write them as the JSON escape they came from, which keeps JSON text valid JSON."""
    if text is None:
        return None
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text
