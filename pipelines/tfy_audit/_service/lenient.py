"""Reading the response bodies the fast parsers refuse: any nesting depth, bytes not UTF-8.

orjson refuses nesting past 255 levels and the standard library's parser recurses once per
level (RecursionError near the interpreter's limit), so a body either refuses is parsed here
without recursion. A body that is not valid UTF-8 is decoded with replacement: each run of
bytes that are not UTF-8 becomes one U+FFFD in the string that held it, and the strings so
changed are named, so that one bad byte costs one field of one event, never the page.

Only bodies the fast path refuses come here, so the valid path costs nothing more. No dlt here:
the decoder worker processes import this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from json.decoder import scanstring  # type: ignore[attr-defined]  # public since 2.6, untyped
from typing import Any, Final

from tfy_audit._service.leaves import key_segment  # the JSONPath spelling the metadata leaves use

REPLACEMENT: Final = "\ufffd"

_WHITESPACE: Final = re.compile(r"[ \t\n\r]*")
_NUMBER: Final = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
_LITERALS: Final[tuple[tuple[str, Any], ...]] = (
    ("true", True),
    ("false", False),
    ("null", None),
    # what the standard library accepts too
    ("NaN", float("nan")),
    ("Infinity", float("inf")),
    ("-Infinity", float("-inf")),
)
# What surrogateescape makes of bytes that are not UTF-8 (valid UTF-8 never encodes these).
_ESCAPED_BYTES: Final = re.compile("[\udc80-\udcff]+")
# Noncharacters: a marker for the bad bytes while the text is parsed, one the body lacks.
_MARKERS: Final = tuple(chr(c) for c in range(0xFDD0, 0xFDF0))


def loads(text: str | bytes) -> Any:
    """`json.loads`, falling back to a parser that does not recurse for nesting it cannot
    follow. ValueError (as json.loads raises) if the text is not JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        return loads_iterative(text.decode() if isinstance(text, bytes) else text)


def decode_replacing(body: bytes) -> tuple[str, str] | None:
    """(text, marker) of a body that is not valid UTF-8: each run of bad bytes is `marker`, a
    character the body holds neither as text nor as an escape. None if no marker is free."""
    text = body.decode("utf-8", "surrogateescape")
    folded = text.casefold()
    for marker in _MARKERS:
        if marker not in text and f"\\u{ord(marker):04x}" not in folded:
            return _ESCAPED_BYTES.sub(marker, text), marker
    return None


def replace_marked(value: Any, marker: str, on_replaced: Callable[[str], None]) -> Any:
    """`value` (a parsed JSON document) with `marker` replaced by U+FFFD in every string and
    key, calling `on_replaced(path)` with the JSONPath of each value changed (a key changed
    names its value). Without recursion; containers are changed in place."""
    if isinstance(value, str):
        if marker in value:
            on_replaced("$")
            return value.replace(marker, REPLACEMENT)
        return value
    stack: list[tuple[Any, str]] = [(value, "$")]
    while stack:
        container, path = stack.pop()
        if isinstance(container, dict):
            if any(marker in key for key in container):
                renamed = {k.replace(marker, REPLACEMENT): v for k, v in container.items()}
                for key in container:
                    if marker in key:
                        on_replaced(path + key_segment(key.replace(marker, REPLACEMENT)))
                container.clear()
                container.update(renamed)
            for key, child in container.items():
                if isinstance(child, str):
                    if marker in child:
                        container[key] = child.replace(marker, REPLACEMENT)
                        on_replaced(path + key_segment(key))
                elif isinstance(child, dict | list):
                    stack.append((child, path + key_segment(key)))
        elif isinstance(container, list):
            for index, child in enumerate(container):
                if isinstance(child, str):
                    if marker in child:
                        container[index] = child.replace(marker, REPLACEMENT)
                        on_replaced(f"{path}[{index}]")
                elif isinstance(child, dict | list):
                    stack.append((child, f"{path}[{index}]"))
    return value


def loads_iterative(text: str) -> Any:
    """JSON text -> Python values, as `json.loads` makes them, with an explicit stack instead
    of recursion: any nesting depth. ValueError if the text is not JSON."""
    end = len(text)
    containers: list[Any] = []  # open containers, innermost last
    keys: list[str] = []  # the key being filled in each open object
    at = _WHITESPACE.match(text, 0).end()  # type: ignore[union-attr]
    while True:
        # a value starts at `at`
        char = text[at : at + 1]
        if char == "{":
            at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
            if text.startswith("}", at):
                value: Any = {}
                at += 1
            else:
                key, at = _key(text, at)
                containers.append({})
                keys.append(key)
                continue
        elif char == "[":
            at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
            if text.startswith("]", at):
                value = []
                at += 1
            else:
                containers.append([])
                keys.append("")
                continue
        elif char == '"':
            value, at = scanstring(text, at + 1)
        else:
            value, at = _scalar(text, at)
        # a value ends at `at`: put it in its container, closing those that end with it
        while True:
            if not containers:
                at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
                if at != end:
                    raise ValueError(f"Extra data: char {at}")
                return value
            top = containers[-1]
            if type(top) is dict:
                top[keys[-1]] = value
            else:
                top.append(value)
            at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
            char = text[at : at + 1]
            if char == ",":
                at = _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]
                if type(top) is dict:
                    keys[-1], at = _key(text, at)
                break
            if char == ("}" if type(top) is dict else "]"):
                at += 1
                value = containers.pop()
                keys.pop()
                continue
            raise ValueError(f"Expecting ',' delimiter: char {at}")


def _key(text: str, at: int) -> tuple[str, int]:
    """An object's key and its colon at `at`; the position of the value after them."""
    if not text.startswith('"', at):
        raise ValueError(f"Expecting property name enclosed in double quotes: char {at}")
    key, at = scanstring(text, at + 1)
    at = _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]
    if not text.startswith(":", at):
        raise ValueError(f"Expecting ':' delimiter: char {at}")
    return key, _WHITESPACE.match(text, at + 1).end()  # type: ignore[union-attr]


def _scalar(text: str, at: int) -> tuple[Any, int]:
    number = _NUMBER.match(text, at)
    if number is not None:
        integer, fraction, exponent = number.groups()
        if fraction or exponent:
            return float(integer + (fraction or "") + (exponent or "")), number.end()
        return int(integer), number.end()
    for literal, value in _LITERALS:
        if text.startswith(literal, at):
            return value, at + len(literal)
    raise ValueError(f"Expecting value: char {at}")
