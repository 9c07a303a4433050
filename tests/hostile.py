"""Small hostile servers on loopback: each misbehaves in one way a real service or a wrong
`--host` can. Used by the tests, and runnable by hand:
`python -m tests.hostile MODE [PORT]` prints its URL and serves until killed."""

from __future__ import annotations

import gzip
import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

MODES = (
    "trickle",
    "slow-headers",
    "big-json",
    "gzip-bomb",
    "huge-count",
    "echo-auth",
    "escapes",
)
BIG_BYTES = 200 * 1024 * 1024


def _gzip_bomb(size: int) -> bytes:
    """`size` bytes of a JSON string value, gzip-compressed (a ratio of about 1000:1)."""
    raw = b'{"data": [], "pagination": {"total": 1}, "x": "' + b"a" * size + b'"}'
    return gzip.compress(raw, compresslevel=9)


@dataclass
class Hostile:
    mode: str
    requests: list[dict[str, str]] = field(default_factory=list)
    _bomb: bytes | None = None

    def bomb(self) -> bytes:
        if self._bomb is None:
            self._bomb = _gzip_bomb(BIG_BYTES)
        return self._bomb


def _handler(state: Hostile) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append({k.lower(): v for k, v in self.headers.items()})
            mode = state.mode
            counting = "metric=count" in self.path
            try:
                if mode in ("big-json", "gzip-bomb", "echo-auth") and counting:
                    # what is hostile is the page, read inside dlt's extract
                    self._json(200, {"data": [], "pagination": {"total": 1}})
                elif mode == "slow-headers":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                    self.wfile.flush()
                    while True:  # a header that never ends, one byte every 0.5 s
                        self.wfile.write(b"X")
                        self.wfile.flush()
                        time.sleep(0.5)
                elif mode == "trickle":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    self.wfile.flush()
                    while True:  # one byte every 0.5 s, forever
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.5)
                elif mode == "big-json":
                    head = b'{"data": [], "pagination": {"total": 1}, "x": "'
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(head) + BIG_BYTES + 2))
                    self.end_headers()
                    self.wfile.write(head)
                    block = b"a" * (1024 * 1024)
                    for _ in range(BIG_BYTES // len(block)):
                        self.wfile.write(block)
                    self.wfile.write(b'"}')
                elif mode == "gzip-bomb":
                    body = state.bomb()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Encoding", "gzip")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif mode == "huge-count":
                    self._json(200, {"data": [], "pagination": {"total": 10**12}})
                elif mode == "echo-auth":
                    auth = self.headers.get("Authorization", "")
                    self._json(400, {"message": f"invalid token: {auth}"})
                elif mode == "escapes":
                    title = "\x1b]0;pwned\x07\x1b[2J\x1b[H"
                    self._json(400, {"message": title + "bad request " + "x" * 1_000_000})
            except (BrokenPipeError, ConnectionResetError):
                pass

    return Handler


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up on a hostile answer is the point


@contextmanager
def hostile_server(mode: str) -> Iterator[tuple[str, Hostile]]:
    """A hostile server on 127.0.0.1 (any free port): its URL and what it saw."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode}")
    state = Hostile(mode)
    srv = _QuietServer(("127.0.0.1", 0), _handler(state))
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", state
    finally:
        srv.shutdown()
        srv.server_close()


if __name__ == "__main__":  # pragma: no cover
    with hostile_server(sys.argv[1]) as (url, _):
        print(url, flush=True)
        threading.Event().wait()
