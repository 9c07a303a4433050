"""HTTP client of TrueFoundry's audit-logs endpoint: auth, timeouts, retries, error triage.

It knows nothing of dlt. Every response is judged in one place, `_triage`, which either returns
the parsed body or raises an error from `errors.py`; retries happen only for `TransientApiError`.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from .errors import (
    ApiError,
    AuthenticationError,
    NotAControlPlaneError,
    OffsetRefusedError,
    RequestRejectedError,
    RetriesExhaustedError,
    TransientApiError,
    UsageError,
)
from .pages import NotAuditLogsResponse, parse_list_body
from .settings import AUDIT_LOGS_PATH, DEFAULT_RETRIES, DEFAULT_TIMEOUT, MAX_PAGE_SIZE

logger = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = "tfy-audit/0.1 (+dlt)"

# An HTML page or foreign JSON with status 200 is more likely a wrong --host than a glitch.
_SUSPECT_HOST_ATTEMPTS = 3


@dataclass(frozen=True)
class AuditLogFilters:
    """The endpoint's filters. Each sync with a different set keeps its own high-water mark."""

    action: str | None = None
    search: str | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    resource_name: str | None = None
    resource_fqn: str | None = None
    cluster_id: str | None = None
    workspace_id: str | None = None
    subject_slug: str | None = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AuditLogFilters:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UsageError(f"unknown filter(s) {unknown}; known filters: {sorted(known)}")
        return cls(**{k: (str(v) if v not in (None, "") else None) for k, v in values.items()})

    def as_dict(self) -> dict[str, str]:
        """The filters that are set, by snake_case name."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def as_params(self) -> dict[str, str]:
        """The query parameters: each field's name in camelCase (`resource_id`: `resourceId`)."""
        return {_camel(k): v for k, v in self.as_dict().items()}

    @property
    def key(self) -> str:
        """A stable name for this filter set, used to keep its sync state apart."""
        d = self.as_dict()
        if not d:
            return "all"
        return "&".join(f"{k}={d[k]}" for k in sorted(d))


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Backoff is exponential with full jitter; `Retry-After` wins when sent."""

    max_attempts: int = DEFAULT_RETRIES
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 300.0
    # An unreachable host should fail fast rather than after minutes of backoff.
    connect_attempts: int = 3


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_metric: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, metric: str, status: int | None, retried: bool) -> None:
        with self._lock:
            self.requests += 1
            self.by_metric[metric] = self.by_metric.get(metric, 0) + 1
            if status is not None:
                self.by_status[status] = self.by_status.get(status, 0) + 1
            if retried:
                self.retries += 1


def normalize_host(host: str) -> str:
    """`app.example.com`, `https://app.example.com/` -> `https://app.example.com`."""
    host = host.strip()
    if not host:
        raise UsageError("the TrueFoundry host is empty; set TFY_HOST or pass --host")
    if "://" not in host:
        host = "https://" + host
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"{host!r} is not a control plane URL; pass --host like https://your-org.truefoundry.cloud"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def format_query_time(dt: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, milliseconds unless the value needs microseconds."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime; tfy-audit uses UTC-aware datetimes only")
    dt = dt.astimezone(UTC)
    if dt.microsecond % 1000 == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _server_message(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    if isinstance(body, dict):
        msg = body.get("message") or body.get("error") or ""
        if isinstance(msg, list):
            return "; ".join(str(m) for m in msg)
        return str(msg)
    return ""


def _looks_like_html(response: httpx.Response) -> bool:
    ctype = response.headers.get("content-type", "")
    return "html" in ctype or response.content.lstrip()[:1] == b"<"


class AuditLogClient:
    """Reads `GET /api/svc/v1/audit-logs`. Thread-safe: windows are fetched concurrently."""

    def __init__(
        self,
        host: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = 16,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise UsageError(
                "no TrueFoundry API key: set TFY_API_KEY (or sources.truefoundry_audit.api_key "
                "in .dlt/secrets.toml)"
            )
        self.host = normalize_host(host)
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self._sleep = sleep
        self._rng = random.Random()
        self._http = httpx.Client(
            base_url=self.host,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
            follow_redirects=False,
            # A plain-http host reached without a proxy never does TLS (redirects are not
            # followed), so it is spared loading the CA bundle (40 ms of every run). An https
            # host is always verified, and so is a proxy from the environment (httpx gives
            # proxies the same setting).
            verify=self.host.startswith("https://") or bool(urllib.request.getproxies()),
        )

    def __enter__(self) -> AuditLogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the two metrics -------------------------------------------------------------------

    def count(self, filters: AuditLogFilters, start: datetime, end: datetime) -> int:
        params = {"metric": "count", **self._window_params(filters, start, end)}
        return self._get(params, lambda body: parse_list_body(body)[1])

    def list_page(
        self,
        filters: AuditLogFilters,
        start: datetime,
        end: datetime,
        *,
        offset: int,
        limit: int,
        decode: Callable[[bytes], T],
    ) -> T:
        """One page, its body handed to `decode` (which raises ValueError on a bad body, and
        is then retried like any garbled response)."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise UsageError(f"page size {limit} is outside 1..{MAX_PAGE_SIZE}")
        params = {
            "metric": "list",
            **self._window_params(filters, start, end),
            "limit": str(limit),
            "offset": str(offset),
        }
        return self._get(params, decode)

    @staticmethod
    def _window_params(filters: AuditLogFilters, start: datetime, end: datetime) -> dict[str, str]:
        return {
            **filters.as_params(),
            "start": format_query_time(start),
            "end": format_query_time(end),
        }

    # -- transport, retries, triage ---------------------------------------------------------

    def _get(self, params: dict[str, str], decode: Callable[[bytes], T]) -> T:
        metric = params.get("metric", "")
        attempt = 0
        connect_failures = 0
        suspect_failures = 0
        while True:
            attempt += 1
            request = self._http.build_request("GET", AUDIT_LOGS_PATH, params=params)
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                self.stats.record(metric, None, attempt > 1)
                is_connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                connect_failures += is_connect
                error: ApiError = self._transport_error(exc, request)
                if is_connect and connect_failures >= self.retry.connect_attempts:
                    raise error from exc
                delay = self._backoff(attempt)
            else:
                self.stats.record(metric, response.status_code, attempt > 1)
                try:
                    self._triage(response, params)
                    return self._decode(response, decode)
                except TransientApiError as exc:
                    error = exc
                    suspect_failures += exc.suspect_host
                    delay = self._backoff(attempt)
                    if response.status_code == 429:
                        after = _retry_after_seconds(response.headers.get("retry-after"))
                        if after is not None:
                            delay = min(after, self.retry.retry_after_max)
            if attempt >= self.retry.max_attempts or suspect_failures >= _SUSPECT_HOST_ATTEMPTS:
                raise RetriesExhaustedError(
                    f"{error} (gave up after {attempt} attempts)",
                    url=error.url,
                    status=error.status,
                    request_id=error.request_id,
                ) from error
            logger.debug("retrying in %.2fs (attempt %d): %s", delay, attempt + 1, error)
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry.backoff_max, self.retry.backoff_initial * 2 ** (attempt - 1))
        return self._rng.uniform(cap / 2, cap)

    def _transport_error(self, exc: httpx.TransportError, request: httpx.Request) -> ApiError:
        url = str(request.url)
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return TransientApiError(
                f"cannot connect to {self.host} ({type(exc).__name__}: {exc}); check --host / "
                "TFY_HOST and that this machine can reach it",
                url=url,
            )
        if isinstance(exc, httpx.TimeoutException):
            return TransientApiError(
                f"GET {_short(url)} timed out ({type(exc).__name__}); the service is slow: "
                "retry later or raise --timeout",
                url=url,
            )
        return TransientApiError(
            f"GET {_short(url)} failed: {type(exc).__name__}: {exc or 'connection dropped'}",
            url=url,
        )

    def _triage(self, response: httpx.Response, params: Mapping[str, str]) -> None:
        """The one place that decides what a response's status means."""
        status = response.status_code
        url = str(response.request.url)
        rid = response.headers.get("x-request-id")
        where = f"GET {_short(url)}" + (f" (request id {rid})" if rid else "")
        kw: dict[str, Any] = {"url": url, "status": status, "request_id": rid}

        if status == 429:
            raise TransientApiError(f"{where}: rate limited (HTTP 429)", **kw)
        if status >= 500:
            raise TransientApiError(f"{where}: server error HTTP {status}", **kw)
        if status in (401, 403):
            raise AuthenticationError(
                f"{self.host} rejected the API key (HTTP {status}): set TFY_API_KEY to a valid "
                "TrueFoundry API key (a PAT or virtual-account token allowed to read audit logs)",
                **kw,
            )
        if status in (404, 405):
            raise NotAControlPlaneError(
                f"{self.host} has no audit-logs endpoint (HTTP {status} for {AUDIT_LOGS_PATH}): "
                "is --host / TFY_HOST the URL of a TrueFoundry control plane?",
                **kw,
            )
        if 300 <= status < 400:
            raise NotAControlPlaneError(
                f"{where}: redirected (HTTP {status} to {response.headers.get('location')}); "
                "pass the control plane's final URL as --host",
                **kw,
            )
        if status >= 400:
            message = _server_message(response) or response.reason_phrase
            if status == 400 and int(params.get("offset", "0") or 0) > 0:
                # The spec does not say how deep one may page; a refusal at a non-zero offset,
                # after the same query was answered at offset 0, is the service's depth limit.
                raise OffsetRefusedError(f"{where}: refused offset ({message})", **kw)
            raise RequestRejectedError(f"{where}: rejected with HTTP {status}: {message}", **kw)

    def _decode(self, response: httpx.Response, decode: Callable[[bytes], T]) -> T:
        """A 200 whose body cannot be decoded is retried: a cut connection or a glitch; an HTML
        page or foreign JSON only a few times, as it is more likely the wrong host."""
        url = str(response.request.url)
        rid = response.headers.get("x-request-id")
        where = f"GET {_short(url)}" + (f" (request id {rid})" if rid else "")
        kw: dict[str, Any] = {"url": url, "status": response.status_code, "request_id": rid}
        try:
            return decode(response.content)
        except NotAuditLogsResponse as exc:
            raise TransientApiError(
                f"{where}: {exc}; is --host the URL of a TrueFoundry control plane?",
                suspect_host=True,
                **kw,
            ) from exc
        except ValueError as exc:
            if _looks_like_html(response):
                raise TransientApiError(
                    f"{where}: answered with an HTML page, not JSON; is --host the URL of a "
                    "TrueFoundry control plane?",
                    suspect_host=True,
                    **kw,
                ) from exc
            raise TransientApiError(f"{where}: body is not valid JSON ({exc})", **kw) from exc


def _short(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")
