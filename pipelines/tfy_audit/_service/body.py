"""Reading a response's body under a deadline and a size cap, counted after decompression.

The client asks for gzip and deflate only, and decompresses them here a piece at a time, so a
small compressed body cannot expand past the cap in one go. A body past its cap is given up;
its first bytes are kept so the client can tell whether it was a page of events and name its
first event (anomalies.py records an event set aside by it).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from tfy_audit._core.errors import service_text

__all__ = ["BodyTooLarge", "read_body"]

_PIECE = 1024 * 1024

# How much of a body past its cap is kept: enough to see whether it is a page of events and
# to read its first event's id.
_HEAD_BYTES = 64 * 1024


class BodyTooLarge(Exception):
    """A body went past its cap (internal: the client turns it into ResponseTooLargeError);
    `head` holds its first bytes (decompressed), as far as they were read."""

    def __init__(self, head: bytes = b"") -> None:
        super().__init__()
        self.head = head


def _head(pieces: list[bytes]) -> bytes:
    out = bytearray()
    for piece in pieces:
        out += piece[: _HEAD_BYTES - len(out)]
        if len(out) >= _HEAD_BYTES:
            break
    return bytes(out)


def _decompressor(encoding: str) -> Any:
    """A zlib decompressor for the response's Content-Encoding, None for none; ValueError for
    one the client did not ask for (it asks for gzip and deflate only)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # a zlib or gzip header, detected
    raise ValueError(f"the response is encoded as {service_text(encoding)!r}, not gzip")


def read_body(
    response: httpx.Response,
    until: float,
    cap: int,
    *,
    cut: bool = False,
    grow: Callable[[int], None] | None = None,
) -> bytes:
    """The body, decompressed, read before the monotonic time `until` and at most `cap` bytes
    long (counted after decompression, so a small compressed body cannot expand past it):
    BodyTooLarge past it, or with `cut`, its first `cap` bytes. `grow(n)` is told of each `n`
    bytes kept before they are read further (it may wait: a byte budget, budget.py)."""
    if response.is_stream_consumed:  # a body in memory already (an httpx MockTransport's)
        if len(response.content) > cap and not cut:
            raise BodyTooLarge(response.content[:_HEAD_BYTES])
        return response.content[:cap]
    decompressor = _decompressor(response.headers.get("content-encoding", ""))
    declared = response.headers.get("content-length", "")
    # a body declared too large is read no further than its head
    too_long = decompressor is None and declared.isdigit() and int(declared) > cap and not cut
    pieces: list[bytes] = []  # joined once at the end: one copy of the body, as httpx makes
    size = 0
    for raw in response.iter_raw():
        if time.monotonic() > until:
            raise httpx.ReadTimeout("the response did not arrive in time", request=response.request)
        if too_long:
            pieces.append(raw)
            size += len(raw)
            if size >= _HEAD_BYTES:
                break
            continue
        data = raw
        while data:
            if decompressor is None:
                piece, data = data, b""
            else:
                # a piece at a time: a bomb never expands in one go
                piece = decompressor.decompress(data, min(cap - size + 1, _PIECE))
                data = decompressor.unconsumed_tail
            pieces.append(piece)
            size += len(piece)
            if grow is not None:
                grow(len(piece))
            if size > cap:
                if cut:
                    return b"".join(pieces)[:cap]
                raise BodyTooLarge(_head(pieces))
    if too_long:
        raise BodyTooLarge(_head(pieces))
    if decompressor is not None:
        pieces.append(decompressor.flush())
        size += len(pieces[-1])
        if size > cap:
            if cut:
                return b"".join(pieces)[:cap]
            raise BodyTooLarge(_head(pieces))
    return b"".join(pieces)
