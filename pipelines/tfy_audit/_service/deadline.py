"""A wall-clock deadline for each HTTP request, enforced on every socket operation.

httpx's timeouts bound each read, not a request: a server that sends a byte every half second
(in its headers or its body) keeps a request going forever. The client sets the deadline of the
request its thread is making (`bounded`); the network streams of its transports
(`deadline_transport`, handed to `httpx.Client(transport=...)`) then give each connect, read
and write at most the time left, and fail once none is.

Requests are synchronous in the thread that makes them, so a thread-local holds the deadline;
pooled connections serve whichever request is using them at the time.
"""

from __future__ import annotations

import threading
import time
import typing
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx

from tfy_audit._compat.httpx import environment_proxies, pooled_transport

_local = threading.local()


@contextmanager
def bounded(until: float) -> Iterator[None]:
    """Socket operations of this thread end by the monotonic time `until`."""
    previous = getattr(_local, "until", None)
    _local.until = until
    try:
        yield
    finally:
        _local.until = previous


def _left(timeout: float | None, error: type[Exception]) -> float | None:
    until: float | None = getattr(_local, "until", None)
    if until is None:
        return timeout
    left = until - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _left(timeout, httpcore.ConnectTimeout)
        )
        return _Stream(inner)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _left(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _Stream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _Stream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_transport(
    *, verify: bool, limits: httpx.Limits, proxy: httpx.Proxy | None = None
) -> httpx.BaseTransport:
    """A transport (to the host, or through `proxy`) whose every socket operation ends by the
    deadline of the request its thread is making."""
    backend = _Backend(httpcore.SyncBackend())
    return pooled_transport(verify=verify, limits=limits, network_backend=backend, proxy=proxy)


def environment_mounts(
    *, verify: bool, limits: httpx.Limits
) -> dict[str, httpx.BaseTransport | None]:
    """`httpx.Client(mounts=...)` for the proxies the environment asks for, each a deadline
    transport (None: the host is reached directly, through the client's own transport). A
    client given a transport reads no proxies itself; this keeps honouring them."""
    return {
        pattern: None
        if url is None
        else deadline_transport(verify=verify, limits=limits, proxy=httpx.Proxy(url))
        for pattern, url in environment_proxies().items()
    }
