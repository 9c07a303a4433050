"""The simulator over real loopback HTTP: a threaded stdlib server with keep-alive.

Wire faults happen here for real: "reset" drops the connection without an answer, "slow"
holds the answer back, "truncate" announces a longer body than it sends and closes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Final

from tfy_audit.simulator.handler import SimResponse, Simulator

logger = logging.getLogger(__name__)

_CLOSE_TIMEOUT: Final = 5.0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # The default backlog of 5 drops connections when eight clients connect at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.accepted = 0
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
            self.accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or hang up mid-answer are part of the game, not server bugs.
        logger.debug("connection from %s ended with an error", client_address, exc_info=True)

    def drop_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive connections."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    # Headers and body go out in two writes; with Nagle's algorithm on, the second waits for
    # the client's delayed ACK of the first (~40 ms on a kept-alive connection), which made
    # most responses 60 ms late instead of the configured latency.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        # Idle keep-alive connections are closed after this, as Node does after 5 s.
        self.connection.settimeout(self.server.sim.config.keepalive_timeout)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # the `Date` header `send_response` adds: the simulated service's clock
        return self.server.sim.http_date()

    def _serve(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            self.rfile.read(
                int(length)
            )  # drain a body so the next request on this connection parses
        sim = self.server.sim
        resp = sim.handle(self.command, self.path, dict(self.headers.items()))
        stopping = self.server.stopping
        if resp.delay and stopping.wait(resp.delay):
            self.close_connection = True
            return
        if resp.fault == "reset":
            self._reset()
            return
        if resp.fault == "slow" and stopping.wait(sim.config.slow_seconds):
            self.close_connection = True
            return
        self._send(resp)

    def _send(self, resp: SimResponse) -> None:
        body = resp.body
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            if name != "Date":  # sent by `send_response` (date_time_string)
                self.send_header(name, value)
        if resp.fault == "truncate":
            self.send_header("Content-Length", str(len(body) * 2 + 64))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        # Linger 0: closing sends RST instead of FIN, as a crashed proxy would.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True


class SimulatorServer:
    """Serve a `Simulator` on loopback from a background thread, from construction on.

    Use as a context manager (`with SimulatorServer(sim) as server: ... server.url`), or call
    `serve_forever()` to block the calling thread until interrupted (the `simulate` command).
    """

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self._httpd = _HTTPServer((host, port), sim)
        self._closed = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"tfy-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        logger.debug("simulator listening on %s", self.url)

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted so far (keep-alive reuses one for many requests)."""
        return self._httpd.accepted

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def serve_forever(self) -> None:
        """Block until `close()` is called from elsewhere or the process is interrupted."""
        try:
            while self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            logger.info("simulator interrupted; shutting down")
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.drop_connections()
        self._thread.join(_CLOSE_TIMEOUT)
        logger.debug("simulator on port %d closed", self.port)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
