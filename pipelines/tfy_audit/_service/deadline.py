"""A wall-clock deadline for each HTTP request, enforced on every socket operation.

httpx's timeouts bound each read, not a request: a server that sends a byte every half second
(in its headers or its body) keeps a request going forever. The client sets the deadline of the
request its thread is making (`bounded`); the network streams of its transports (`bound_transports`)
then give each connect, read and write at most the time left, and fail once none is.

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


def bound_transports(client: httpx.Client) -> None:
    """Give the client's transports (its own, and those of proxies from the environment) the
    deadline-aware network backend. A transport of another kind (a test's MockTransport) is left
    as it is: the client also checks the deadline between body chunks."""
    transports: list[typing.Any] = [client._transport, *client._mounts.values()]
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        usable = backend is not None and not isinstance(backend, _Backend)
        if isinstance(transport, httpx.HTTPTransport) and usable:
            pool._network_backend = _Backend(backend)  # type: ignore[union-attr,arg-type]
