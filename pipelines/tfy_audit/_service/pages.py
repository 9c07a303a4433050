"""Decoding one `metric=list` response body into Arrow rows, away from the main thread.

The work per page is CPU-bound Python (JSON parsing, flattening, metadata leaves), so it runs in
worker processes when the machine has cores to spare: the main process keeps to HTTP and dlt,
and only ids and Arrow tables come back. The function is pure and picklable by name.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import orjson

from tfy_audit._core.settings import MAX_PLAUSIBLE_TOTAL
from tfy_audit._core.times import parse_timestamp
from tfy_audit._service import lenient
from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind
from tfy_audit._service.rows import EventBatch, normalize_events

# 19+ digits may not fit in 64 bits; orjson would silently turn such integers into floats.
# Mapping every digit to "0" and everything else to " " finds such a run at memchr speed (a
# regex costs as much as the parse itself); each run found is then looked at in place, as ids
# often hold one (`c1a2128662549804438418 2fc`) and a stdlib parse of the page costs 2-3x.
_DIGITS_ONLY = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_DIGIT_RUN = b"0" * 19
_ZERO = 0x30
_BEFORE_NUMBER = frozenset(b":,[")  # what precedes a JSON number in an object or array
_FLOAT_PART = frozenset(b".eE")  # a literal with these is a float, parsed alike by both
_WHITESPACE = frozenset(b" \t\r\n")


def _has_long_integer(body: bytes) -> bool:
    """Whether `body` may hold an integer literal of 19+ digits. A run of digits is such a
    literal only if a `:`, `,` or `[` precedes it (past whitespace and a minus sign) and no
    fraction or exponent follows; anything else is inside a string or a float. Errs on the
    side of True: a string like `": 1234..."` merely costs the slower parse."""
    digits = body.translate(_DIGITS_ONLY)
    at = digits.find(_LONG_DIGIT_RUN)
    while at != -1:
        end = at + len(_LONG_DIGIT_RUN)
        while end < len(digits) and digits[end] == _ZERO:
            end += 1
        before = at - 1
        if before >= 0 and body[before] == 0x2D:  # "-"
            before -= 1
        while before >= 0 and body[before] in _WHITESPACE:
            before -= 1
        if (before < 0 or body[before] in _BEFORE_NUMBER) and not (
            end < len(body) and body[end] in _FLOAT_PART
        ):
            return True
        at = digits.find(_LONG_DIGIT_RUN, end)
    return False


class NotAuditLogsResponse(ValueError):
    """The body is JSON, but not the endpoint's `{data: [...], pagination: {total}}`."""


class ImplausibleTotal(ValueError):
    """`pagination.total` is no possible count: not an integer, negative, or beyond any
    audit trail's size. The message quotes it (cut short)."""


def parse_json_body(body: bytes) -> Any:
    """orjson for speed, the standard library where orjson would lose digits, and lenient.py
    for nesting either refuses and for bytes that are not UTF-8 (replaced by U+FFFD)."""
    parsed, marker = _parse(body)
    return parsed if marker is None else lenient.replace_marked(parsed, marker, _ignore)


def _ignore(path: str) -> None:
    pass


def _parse(body: bytes) -> tuple[Any, str | None]:
    """The parsed body, and the marker standing for each run of bytes that are not UTF-8 in
    its strings (None when it is all UTF-8): lenient.replace_marked finds and replaces them."""
    if not _has_long_integer(body):
        try:
            return orjson.loads(body), None
        except orjson.JSONDecodeError:
            # e.g. numbers beyond a double's range, which the standard parser still reads
            pass
    try:
        return lenient.loads(body), None
    except UnicodeDecodeError:
        decoded = lenient.decode_replacing(body)
        if decoded is None:
            raise
        text, marker = decoded
        return lenient.loads(text), marker


def parse_list_body(body: bytes) -> tuple[list[dict[str, Any]], int]:
    """(events, pagination.total); ValueError if the body is not such a response."""
    events, total, _ = parse_list_page(body)
    return events, total


def parse_list_page(body: bytes) -> tuple[list[dict[str, Any]], int, list[Anomaly]]:
    """(events, pagination.total, what was replaced in them); ValueError if the body is not
    such a response. Bytes that are not UTF-8 cost only the strings holding them: each run
    becomes U+FFFD, with an `invalid_utf8` record per event and field."""
    parsed, marker = _parse(body)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("data"), list):
        raise NotAuditLogsResponse("the JSON is not an audit-logs response (no data list)")
    pagination = parsed.get("pagination")
    if not isinstance(pagination, dict) or "total" not in pagination:
        raise NotAuditLogsResponse("the JSON is not an audit-logs response (no pagination.total)")
    total = pagination["total"]
    if (
        not isinstance(total, int)
        or isinstance(total, bool)
        or not 0 <= total <= MAX_PLAUSIBLE_TOTAL
    ):
        raise ImplausibleTotal(f"pagination.total = {json.dumps(total)[:40]}")
    events: list[dict[str, Any]] = parsed["data"]
    if marker is None:
        return events, total, []
    return events, total, _replace_invalid_utf8(events, marker)


def _replace_invalid_utf8(events: list[Any], marker: str) -> list[Anomaly]:
    """Replace `marker` by U+FFFD in every event, in place; one record per event and field."""
    anomalies: list[Anomaly] = []
    for index, event in enumerate(events):
        paths: list[str] = []
        events[index] = lenient.replace_marked(event, marker, paths.append)
        if paths:
            owner = event_id(events[index])
            anomalies.extend(
                Anomaly(
                    AnomalyKind.INVALID_UTF8,
                    AnomalyAction.REPLACED,
                    owner,
                    path,
                    "bytes that are not UTF-8 replaced by U+FFFD",
                )
                for path in paths
            )
    return anomalies


@dataclass(frozen=True)
class DecodedPage:
    total: int
    ids: list[str]  # every event id on the page: what the completeness check counts
    batch: EventBatch | None  # rows of the events that belong to the window
    outside: int  # events of the padding millisecond, left to the neighbouring window
    # `decode_ids` only: (id, createdAt) of the events that belong to the window, and the ids
    # of events whose createdAt does not parse (no day to compare them on)
    dated_ids: list[tuple[str, datetime]] | None = None
    undated_ids: tuple[str, ...] = ()
    body_bytes: int = 0  # the body it was decoded from (the reader sizes later pages by it)


def event_id(event: Any) -> str:
    value = event.get("id") if isinstance(event, dict) else None
    return value if isinstance(value, str) else str(value)


def decode_page(body: bytes, window_start: datetime, window_end: datetime) -> DecodedPage:
    """Parse a page and normalize the events whose createdAt lies in `[start, end)`.

    Windows are queried with a millisecond of padding (the service's bounds may be exclusive),
    so a page can hold events of the neighbouring window; each event is kept by exactly one
    window, so a run never reads an event twice. Events whose createdAt cannot be parsed are
    kept: dropping them would lose them.
    """
    events, total, replaced = parse_list_page(body)
    kept: list[dict[str, Any]] = []
    for event in events:
        created = parse_timestamp(event.get("createdAt")) if isinstance(event, dict) else None
        if created is None or window_start <= created < window_end:
            kept.append(event)
    batch = normalize_events(kept) if kept else None
    if batch is not None and replaced:
        # the records of the events this window keeps (the neighbour records the others)
        ids = set(batch.ids)
        batch = replace(
            batch, anomalies=(*(a for a in replaced if a.event_id in ids), *batch.anomalies)
        )
    return DecodedPage(total, [event_id(e) for e in events], batch, len(events) - len(kept))


def decode_released(
    decode_with: Callable[[bytes, datetime, datetime], DecodedPage],
    body: bytes,
    window_start: datetime,
    window_end: datetime,
    large: int,
) -> DecodedPage:
    """`decode_with(body, ...)`, then, for a body of `large` bytes or more, the memory its
    decoding freed given back to the OS (memory.py), in the process that decoded it: a
    worker's memory counts toward the run's too. In a decoder process (`release_in_worker`)
    this is also done every RELEASE_EVERY pages of any size.

    Decoding a large page allocates Python objects many times its size, which glibc keeps after
    they are freed: without this the process keeps that much for each arena a large page was
    decoded in. Pages of ordinary events are smaller than `large` and skip it (it walks the
    heap). Here, not in fetch.py, so that a worker imports no HTTP client to run it."""
    global _since_release
    try:
        return decode_with(body, window_start, window_end)
    finally:
        _since_release += 1
        if len(body) >= large or _since_release == _release_every:
            from tfy_audit._core.memory import release_free_memory

            _since_release = 0
            release_free_memory()


# A decoder process keeps what decoding a page of ordinary events freed (glibc's heap, Arrow's
# pool) for the next page, and would hold tens of MB of it for the whole run; released every few
# pages, it holds about half, for a small part of a page's CPU (docs/performance.md).
RELEASE_EVERY: Final = 4
_release_every = 0  # 0: only after a large body (the command's own process and its threads)
_since_release = 0


def release_in_worker() -> None:
    """Make this process, a decoder worker, release freed memory every RELEASE_EVERY pages."""
    global _release_every
    _release_every = RELEASE_EVERY


def decode_ids(body: bytes, window_start: datetime, window_end: datetime) -> DecodedPage:
    """Like `decode_page`, for `verify --ids`: only the ids and createdAt of the window's
    events, with no rows built (the spec lets a request select no fields, so pages are whole)."""
    events, total = parse_list_body(body)
    dated: list[tuple[str, datetime]] = []
    undated: list[str] = []
    for event in events:
        created = parse_timestamp(event.get("createdAt")) if isinstance(event, dict) else None
        if created is None:
            undated.append(event_id(event))
        elif window_start <= created < window_end:
            dated.append((event_id(event), created))
    outside = len(events) - len(dated) - len(undated)
    ids = [event_id(e) for e in events]
    return DecodedPage(total, ids, None, outside, dated, tuple(undated))


_SPACE = b" \t\r\n"
_ID_MAX = 200  # an id longer than this is not read from a cut body


def _string_end(head: bytes, at: int) -> int:
    """The index past the closing quote of the JSON string opening at `at`; -1 if it is cut."""
    search = at + 1
    while True:
        quote = head.find(b'"', search)
        if quote == -1:
            return -1
        slashes = 0
        while head[quote - 1 - slashes] == 0x5C:
            slashes += 1
        if slashes % 2 == 0:
            return quote + 1
        search = quote + 1


def _skip_space(head: bytes, at: int) -> int:
    while at < len(head) and head[at] in _SPACE:
        at += 1
    return at


def first_event_in_head(head: bytes) -> tuple[bool, str | None]:
    """Whether `head`, the first bytes of a body cut short, is an audit-logs response whose
    `data` list begins with an event (an object), and that event's `id` if it is among them.

    Told apart, a response too large because of one event (set aside, anomalies.py) from a body
    that is no page of events at all (a wrong host, a bomb: refused as before)."""
    containers: list[int] = []  # the open `{` and `[`
    keys: list[bytes | None] = []  # each open object's latest key
    in_event = False
    at = _skip_space(head, 0)
    while at < len(head):
        char = head[at]
        if char == 0x22:  # a string: a key, or a value
            end = _string_end(head, at)
            if end == -1:
                break
            after = _skip_space(head, end)
            if after < len(head) and head[after] == 0x3A and containers[-1:] == [0x7B]:
                keys[-1] = head[at + 1 : end - 1]
                at = after + 1
                continue
            if in_event and len(containers) == 3 and keys[-1] == b"id" and end - at <= _ID_MAX:
                try:
                    value = orjson.loads(head[at:end])
                except orjson.JSONDecodeError:
                    return True, None
                return True, event_id({"id": value})
            at = end
            continue
        if char in b"{[":
            if char == 0x7B and containers == [0x7B, 0x5B] and keys[0] == b"data":
                in_event = True  # the first element of the top-level `data` list
            containers.append(char)
            keys.append(None)
            at += 1
            continue
        if char in b"}]":
            if in_event and len(containers) == 3:
                return True, None  # the first event ended without an id
            if not containers:
                break
            containers.pop()
            keys.pop()
            at += 1
            continue
        if in_event and len(containers) == 3 and keys[-1] == b"id" and char in b"-0123456789":
            end = at + 1
            while end < len(head) and head[end] in b"0123456789":
                end += 1
            if end < len(head) and end - at <= _ID_MAX:
                return True, head[at:end].decode("ascii")
        at += 1
    return in_event, None
