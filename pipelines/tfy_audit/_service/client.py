"""HTTP client of TrueFoundry's audit-logs endpoint: auth, timeouts, retries, error triage.

It knows nothing of dlt. Every response is judged in one place, `triage.py`, which either
returns the parsed body or raises an error from `errors.py`; retries happen only for
`TransientApiError`.

Bounds, each cheap on the normal path: every attempt has a wall-clock deadline (`timeout`)
covering connect, headers and body, enforced on each socket operation (`deadline.py`) and
between body chunks; a run may have a deadline too (`run_deadline`), after which no request
starts and each attempt's budget is the time left; a body is read as a stream and given up once
its decompressed size passes a cap derived from the page size (`body.py`).

The connection pool holds as many connections as requests may be in flight (`concurrency`).
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import httpx

from tfy_audit._core.errors import (
    ApiError,
    ConfigurationError,
    RequestNotSentError,
    RetriesExhaustedError,
    RunDeadlineError,
    TransientApiError,
    UsageError,
    service_text,
)
from tfy_audit._core.query import AuditLogFilters, RetryPolicy
from tfy_audit._core.redact import register_secret
from tfy_audit._core.settings import (
    AUDIT_LOGS_PATH,
    DEFAULT_CONCURRENCY,
    DEFAULT_TIMEOUT,
    ERROR_BODY_BYTES,
    MAX_EVENT_BYTES,
    MAX_PAGE_SIZE,
    RESPONSE_BYTES_BASE,
    RESPONSE_BYTES_PER_EVENT,
)
from tfy_audit._service import deadline
from tfy_audit._service.body import BodyTooLarge, read_body
from tfy_audit._service.budget import Hold
from tfy_audit._service.hosts import normalize_host
from tfy_audit._service.pages import first_event_in_head, parse_list_body
from tfy_audit._service.triage import (
    decode_body,
    retry_after_seconds,
    short_url,
    too_large_error,
    transport_error,
    triage,
)

__all__ = ["AuditLogClient", "AuditLogFilters", "RetryPolicy", "normalize_host"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

USER_AGENT = "tfy-audit/0.1 (+dlt)"

# An HTML page or foreign JSON with status 200 is more likely a wrong --host than a glitch.
_SUSPECT_HOST_ATTEMPTS = 3


# A wait longer than this is logged at WARNING (with its reason); shorter ones at DEBUG.
LONG_WAIT_SECONDS = 5.0


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    by_metric: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def record(self, metric: str, status: int | None, retried: bool) -> None:
        with self._lock:
            self.requests += 1
            self.by_metric[metric] = self.by_metric.get(metric, 0) + 1
            if status is not None:
                self.by_status[status] = self.by_status.get(status, 0) + 1
            if retried:
                self.retries += 1


def format_query_time(dt: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, milliseconds unless the value needs microseconds."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime; tfy-audit uses UTC-aware datetimes only")
    dt = dt.astimezone(UTC)
    if dt.microsecond % 1000 == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _valid_api_key(api_key: str) -> str:
    """The key without surrounding whitespace (an env file saved with CRLF line ends leaves a
    `\r`); ConfigurationError naming the position of any character a header cannot carry."""
    key = api_key.strip()
    for position, char in enumerate(key, start=1):
        if not "\x21" <= char <= "\x7e":
            raise ConfigurationError(
                f"the API key holds a character an HTTP header cannot carry, at position "
                f"{position} of {len(key)}; check TFY_API_KEY (or sources.truefoundry_audit."
                "api_key in .dlt/secrets.toml) for a stray character"
            )
    return key


class AuditLogClient:
    """Reads `GET /api/svc/v1/audit-logs`. Thread-safe: windows are fetched concurrently."""

    def __init__(
        self,
        host: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_CONCURRENCY,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        run_deadline: float | None = None,
        max_response_bytes: int | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        """`timeout`: seconds one attempt may take in all; `max_connections`: the requests in
        flight at once (the run's concurrency), which the pool holds connections for;
        `transport`: a stand-in for the network (a test's `httpx.MockTransport`), checked
        against the deadline between body chunks only; `run_deadline`: a `time.monotonic()`
        after which no request starts; `max_response_bytes`: the cap of every body (default:
        derived from the page size asked for)."""
        register_secret(api_key)
        if not api_key or not api_key.strip():
            raise UsageError(
                "no TrueFoundry API key: set TFY_API_KEY (or sources.truefoundry_audit.api_key "
                "in .dlt/secrets.toml)"
            )
        api_key = _valid_api_key(api_key)
        self.host = normalize_host(host, allow_insecure_http=allow_insecure_http)
        self.retry = retry or RetryPolicy()
        self.stats = ClientStats()
        self.timeout = timeout
        self.run_deadline = run_deadline
        self.max_response_bytes = max_response_bytes
        self._sleep = sleep
        self._rng = random.Random()
        # the `Date` of the first response that carried one, and our clock when it arrived
        self._service_clock: tuple[datetime, datetime] | None = None
        # A plain-http host reached without a proxy never does TLS (redirects are not
        # followed), so it is spared loading the CA bundle. An https host is always verified,
        # and so is a proxy from the environment (its transport shares this setting).
        verify = self.host.startswith("https://") or bool(urllib.request.getproxies())
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        mounts: dict[str, httpx.BaseTransport | None] = {}
        if transport is None:
            transport = deadline.deadline_transport(verify=verify, limits=limits)
            mounts = deadline.environment_mounts(verify=verify, limits=limits)
        self._http = httpx.Client(
            base_url=self.host,
            headers={
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                # the two encodings the body reader decompresses under its cap
                "Accept-Encoding": "gzip, deflate",
                "User-Agent": USER_AGENT,
            },
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
            mounts=mounts,
            follow_redirects=False,
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
        # the spec does not say a count's body is small: it is capped like the largest page
        return self._get(params, lambda body: parse_list_body(body)[1], MAX_PAGE_SIZE)

    def list_page(
        self,
        filters: AuditLogFilters,
        start: datetime,
        end: datetime,
        *,
        offset: int,
        limit: int,
        decode: Callable[[bytes], T],
        hold: Hold | None = None,
        page_bytes: int | None = None,
    ) -> T:
        """One page, its body handed to `decode` (which raises ValueError on a bad body, and
        is then retried like any garbled response). `hold`: the body's bytes are counted in it
        as they arrive, waiting while its budget is spent (budget.py). `page_bytes`: a page of
        several events whose body passes this many bytes is given up at once with
        ResponseTooLargeError (`holds_event`), for the caller to ask for fewer events; a body
        past it that is no page of events is read again under the usual cap."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise UsageError(f"page size {limit} is outside 1..{MAX_PAGE_SIZE}")
        params = {
            "metric": "list",
            **self._window_params(filters, start, end),
            "limit": str(limit),
            "offset": str(offset),
        }
        return self._get(params, decode, limit, hold, page_bytes if limit > 1 else None)

    def response_cap(self, page_size: int) -> int:
        """The most bytes (decompressed) a body may hold for a page of `page_size` events:
        never less than one event of MAX_EVENT_BYTES needs."""
        if self.max_response_bytes is not None:
            return self.max_response_bytes
        return RESPONSE_BYTES_BASE + max(page_size * RESPONSE_BYTES_PER_EVENT, MAX_EVENT_BYTES)

    def check_run_deadline(self) -> float:
        """Seconds left of the run (infinity without a deadline); RunDeadlineError if none."""
        if self.run_deadline is None:
            return float("inf")
        left = self.run_deadline - time.monotonic()
        if left <= 0:
            raise RunDeadlineError(
                "the run reached its --max-duration and stopped; what it loaded before is "
                "kept: run again to continue (or raise --max-duration)"
            )
        return left

    def service_clock(self) -> tuple[datetime, datetime] | None:
        """(the service's `Date`, this machine's clock when that response arrived) of the first
        response with a valid `Date` header; None before one. `Date` has whole seconds: the
        service's clock was at most a second later than it."""
        return self._service_clock

    def _note_date(self, response: httpx.Response) -> None:
        if self._service_clock is not None:
            return
        received = datetime.now(UTC)
        value = response.headers.get("date")
        if not value:
            return
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        self._service_clock = (when.astimezone(UTC), received)

    @staticmethod
    def _window_params(filters: AuditLogFilters, start: datetime, end: datetime) -> dict[str, str]:
        return {
            **filters.as_params(),
            "start": format_query_time(start),
            "end": format_query_time(end),
        }

    # -- transport, retries, triage ---------------------------------------------------------

    def _get(
        self,
        params: dict[str, str],
        decode: Callable[[bytes], T],
        page_size: int,
        hold: Hold | None = None,
        page_bytes: int | None = None,
    ) -> T:
        metric = params.get("metric", "")
        full_cap = self.response_cap(page_size)
        cap = full_cap if page_bytes is None else min(full_cap, page_bytes)
        attempt = 0
        connect_failures = 0
        suspect_failures = 0
        waited = 0.0
        while True:
            attempt += 1
            budget = min(self.timeout, self.check_run_deadline())
            until = time.monotonic() + budget
            request = self._http.build_request("GET", AUDIT_LOGS_PATH, params=params)
            if hold is not None:
                hold.reset()  # the body of an attempt before is dropped
            not_sent: ApiError | None = None
            asked: str | None = None  # the response's Retry-After, when it set the wait
            try:
                with deadline.bounded(until):
                    response = self._http.send(request, stream=True)
                    self._note_date(response)
                    try:
                        if response.status_code == 200:
                            grow = None if hold is None else hold.grow
                            body = read_body(response, until, cap, grow=grow)
                        else:  # what an error says is in its first bytes, if anywhere
                            body = read_body(response, until, ERROR_BODY_BYTES, cut=True)
                    except BodyTooLarge as exc:
                        self.stats.record(metric, response.status_code, attempt > 1)
                        if cap < full_cap and not first_event_in_head(exc.head)[0]:
                            cap = full_cap  # not a page of events: the usual cap judges it
                            attempt -= 1
                            continue
                        raise too_large_error(
                            request,
                            response,
                            cap,
                            exc.head,
                            cap_was_asked=self.max_response_bytes is not None,
                        ) from None
                    finally:
                        response.close()
            except httpx.LocalProtocolError as exc:
                # our own request could not be sent as built: sending it again cannot help.
                # Raised outside this handler, so that the httpx error (whose text may quote a
                # header) is not chained to ours, nor kept in dlt's trace.
                not_sent = RequestNotSentError(
                    f"GET {short_url(str(request.url))} could not be sent "
                    f"({type(exc).__name__}: {exc})",
                    url=str(request.url),
                )
            except httpx.TransportError as exc:
                self.stats.record(metric, None, attempt > 1)
                is_connect = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                connect_failures += is_connect
                error: ApiError = transport_error(self.host, exc, request, budget)
                if is_connect and connect_failures >= self.retry.connect_attempts:
                    raise error from exc
                delay = self._backoff(attempt)
            else:
                self.stats.record(metric, response.status_code, attempt > 1)
                try:
                    triage(self.host, response, body, params)
                    return decode_body(response, body, decode)
                except TransientApiError as exc:
                    error = exc
                    suspect_failures += exc.suspect_host
                    delay = self._backoff(attempt)
                    asked = response.headers.get("retry-after")
                    after = (
                        retry_after_seconds(asked) if response.status_code in (429, 503) else None
                    )
                    if after is not None:
                        delay = min(after, self.retry.retry_after_max)
                    else:
                        asked = None
            if not_sent is not None:
                self.stats.record(metric, None, attempt > 1)
                raise not_sent
            if attempt >= self.retry.max_attempts or suspect_failures >= _SUSPECT_HOST_ATTEMPTS:
                raise RetriesExhaustedError(
                    f"{error} (gave up after {attempt} attempts)",
                    url=error.url,
                    status=error.status,
                    request_id=error.request_id,
                ) from error
            wanted = (
                f"Retry-After: {service_text(asked.strip())}" if asked is not None else "backoff"
            )
            if delay >= self.check_run_deadline():  # which raises once the run's time is up
                raise RunDeadlineError(
                    f"the run would reach its --max-duration while waiting to retry ({error}; "
                    f"a wait of {delay:.0f} s, {wanted}); what it loaded before is kept: run "
                    "again to continue"
                ) from error
            if waited + delay > self.retry.wait_budget:
                raise RetriesExhaustedError(
                    f"{error} (gave up after {attempt} attempts: waited {waited:.0f} s for "
                    f"retries of this request, its most ({self.retry.wait_budget:.0f} s), and "
                    f"the next wait is {delay:.0f} s ({wanted})); retry later",
                    url=error.url,
                    status=error.status,
                    request_id=error.request_id,
                ) from error
            self._log_wait(delay, after_asked=asked, error=error, attempt=attempt)
            waited += delay
            self._sleep(delay)

    def _log_wait(
        self, delay: float, *, after_asked: str | None, error: ApiError, attempt: int
    ) -> None:
        """A long wait at WARNING with its reason (a run seemingly stuck says why); others at
        DEBUG."""
        if delay <= LONG_WAIT_SECONDS:
            logger.debug("retrying in %.2fs (attempt %d): %s", delay, attempt + 1, error)
            return
        if after_asked is None:
            why = "backoff"
        else:
            why = f"Retry-After: {service_text(after_asked.strip())}"
        capped = (
            " (the most one wait may take)"
            if after_asked is not None and delay >= self.retry.retry_after_max
            else ""
        )
        logger.warning(
            "%s; %s; waiting %.0f s%s before attempt %d of %d",
            error,
            why,
            delay,
            capped,
            attempt + 1,
            self.retry.max_attempts,
        )

    def _backoff(self, attempt: int) -> float:
        cap = min(self.retry.backoff_max, self.retry.backoff_initial * 2 ** (attempt - 1))
        return self._rng.uniform(cap / 2, cap)
