"""The httpx and httpcore glue tfy-audit relies on, all in `_compat/httpx.py`: each piece is
exercised here, so that an upgrade that changes one fails with what changed."""

from __future__ import annotations

import http.server
import socket
import threading
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx
import pytest
from tfy_audit._compat.httpx import environment_proxies, pooled_transport

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@contextmanager
def expect(what: str) -> Iterator[None]:
    """Fail with the message a maintainer needs when httpx or httpcore no longer does `what`."""
    try:
        yield
        return
    except Exception as exc:
        failure = (
            f"httpx {httpx.__version__} / httpcore {httpcore.__version__} changed {what}; "
            f"update _compat/httpx.py ({type(exc).__name__}: {exc})"
        )
    pytest.fail(failure, pytrace=False)  # outside the except: no chained traceback


class RecordingBackend(httpcore.NetworkBackend):
    """httpcore's own backend, noting each address it connects to."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()
        self.connected: list[tuple[str, int]] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        self.connected.append((host, port))
        return self.inner.connect_tcp(host, port, timeout, local_address, socket_options)


@contextmanager
def server(body: bytes, declared: int | None = None) -> Iterator[str]:
    """A loopback server answering every GET with `body`, declaring `declared` bytes."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) if declared is None else declared))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def transport(backend: httpcore.NetworkBackend) -> httpx.BaseTransport:
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    return pooled_transport(verify=False, limits=limits, network_backend=backend)


def test_a_pooled_transport_connects_through_the_backend_it_is_given() -> None:
    backend = RecordingBackend()
    client = httpx.Client(transport=transport(backend))
    with server(b'{"ok": true}') as url, client, expect("httpcore's ConnectionPool or Request"):
        response = client.get(f"{url}/x")
        assert (response.status_code, response.content) == (200, b'{"ok": true}')
    port = int(url.rsplit(":", 1)[1])
    assert backend.connected == [("127.0.0.1", port)]


def test_httpcore_errors_reach_the_caller_as_httpxs() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: a connection is refused
        client = httpx.Client(transport=transport(RecordingBackend()))
        with client, expect("httpcore's ConnectError"), pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{port}/x")
    # a body cut short of its Content-Length, while it is streamed
    client = httpx.Client(transport=transport(RecordingBackend()))
    with (
        server(b"0123456789", declared=100) as url,
        client,
        expect("httpcore's RemoteProtocolError for a body cut short"),
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("GET", f"{url}/x") as response,
    ):
        response.read()


def test_proxies_are_read_from_the_environment_as_httpx_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    with expect("httpx._utils.get_environment_proxies"):
        assert environment_proxies() == {}
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example,10.0.0.1")
    with expect("how httpx reads HTTP_PROXY and NO_PROXY"):
        assert environment_proxies() == {
            "http://": "http://proxy.example:3128",
            "all://*internal.example": None,
            "all://10.0.0.1": None,
        }


def test_a_pooled_transport_goes_through_an_http_proxy() -> None:
    """The proxy's pool takes the backend too: the connection is to the proxy."""
    backend = RecordingBackend()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with server(b"proxied") as proxy:
        proxied = pooled_transport(
            verify=False, limits=limits, network_backend=backend, proxy=httpx.Proxy(proxy)
        )
        client = httpx.Client(transport=proxied)
        with client, expect("httpcore's HTTPProxy(network_backend=...)"):
            response = client.get("http://tfy.internal/x")
            assert (response.status_code, response.content) == (200, b"proxied")
    port = int(proxy.rsplit(":", 1)[1])
    assert backend.connected == [("127.0.0.1", port)]
