"""Every use of httpx and httpcore beyond `httpx.Client(transport=..., mounts=...)`, in one place.

The client gives each request a wall-clock deadline through the network backend of its
connection pools (`_service/deadline.py`). httpx's `HTTPTransport` takes no network backend, so
`pooled_transport` builds the same transport over an `httpcore` pool that does: httpcore's
public `ConnectionPool` / `HTTPProxy` / `SOCKSProxy`, with httpx's public `Request`, `Response`
and exception classes. A client given a transport no longer reads proxies from the
environment; `environment_proxies` reads them as httpx would (its one private function used
here). `tests/unit/test_httpx_compat.py` exercises each one, so that an httpx or httpcore
upgrade that changes one fails there, naming what changed.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from contextlib import contextmanager

import httpcore
import httpx

__all__ = ["environment_proxies", "pooled_transport"]

# httpcore's errors and the httpx errors its transport raises for them, most specific first:
# the same mapping as httpx's own HTTPTransport, so callers see httpx's exception tree.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core, mapped in _ERRORS:
            if isinstance(exc, core):
                raise mapped(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: typing.Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _core_url(url: httpx.URL) -> httpcore.URL:
    return httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )


class _PooledTransport(httpx.BaseTransport):
    """httpx's HTTPTransport (HTTP/1.1, no retries), over an httpcore pool given to it."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        # the name httpx's HTTPTransport gives its pool, so code that inspects a client's pool
        # (its TLS settings) reads either transport alike
        self._pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not isinstance(request.stream, httpx.SyncByteStream):
            raise TypeError("a synchronous transport needs a synchronous request body")
        core_request = httpcore.Request(
            method=request.method,
            url=_core_url(request.url),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        stream = response.stream
        if not isinstance(stream, typing.Iterable):
            raise TypeError("httpcore answered a synchronous request with an async body")
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._pool.close()


def pooled_transport(
    *,
    verify: bool,
    limits: httpx.Limits,
    network_backend: httpcore.NetworkBackend,
    proxy: httpx.Proxy | None = None,
) -> httpx.BaseTransport:
    """A transport like `httpx.HTTPTransport(verify=verify, limits=limits, proxy=proxy)`, its
    connections made through `network_backend`. TLS settings come from the environment
    (SSL_CERT_FILE, SSL_CERT_DIR) as httpx's do."""
    ssl_context = httpx.create_ssl_context(verify=verify, trust_env=True)
    pool_settings: dict[str, typing.Any] = {
        "ssl_context": ssl_context,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "network_backend": network_backend,
    }
    pool: typing.Any
    if proxy is None:
        pool = httpcore.ConnectionPool(**pool_settings)
    elif proxy.url.scheme in ("http", "https"):
        pool = httpcore.HTTPProxy(
            proxy_url=_core_url(proxy.url),
            proxy_auth=proxy.raw_auth,
            proxy_headers=proxy.headers.raw,
            proxy_ssl_context=proxy.ssl_context,
            **pool_settings,
        )
    elif proxy.url.scheme in ("socks5", "socks5h"):
        pool = httpcore.SOCKSProxy(
            proxy_url=_core_url(proxy.url), proxy_auth=proxy.raw_auth, **pool_settings
        )
    else:
        raise ValueError(
            f"a proxy's scheme is http, https, socks5 or socks5h, not {proxy.url.scheme!r}"
        )
    return _PooledTransport(pool)


def environment_proxies() -> dict[str, str | None]:
    """The proxies the environment asks for (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY), as
    httpx's `Client` reads them when it builds its own transports: URL patterns (`mounts`
    keys) to a proxy URL, or to None for hosts reached directly."""
    from httpx._utils import get_environment_proxies

    return dict(get_environment_proxies())
