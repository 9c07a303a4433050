"""What a response means: the one place that turns a status, a body or a transport failure
into an error of `errors.py` (retried only when it is a `TransientApiError`).

Messages name the request (path and query, never the host's key) and the service's request id
when it sent one, so a user can quote them to the service's administrator.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import orjson

from tfy_audit._core.errors import (
    ApiError,
    AuthenticationError,
    ImplausibleCountError,
    NotAControlPlaneError,
    OffsetRefusedError,
    RequestRejectedError,
    ResponseTooLargeError,
    TransientApiError,
    service_text,
)
from tfy_audit._core.settings import AUDIT_LOGS_PATH, MAX_PAGE_SIZE, MAX_PLAUSIBLE_TOTAL
from tfy_audit._service.pages import ImplausibleTotal, NotAuditLogsResponse, first_event_in_head

__all__ = [
    "decode_body",
    "retry_after_seconds",
    "short_url",
    "too_large_error",
    "transport_error",
    "triage",
]

T = TypeVar("T")


def short_url(url: str) -> str:
    """The path and query of `url`: what a message shows of a request."""
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (seconds or an HTTP date); None if absent
    or unreadable."""
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


# the start of a JSON error's message, in a body cut short
_MESSAGE_START = re.compile(rb'"(?:message|error)"\s*:\s*"((?:[^"\\]|\\.){0,2000})')


def _server_message(body: bytes) -> str:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        found = _MESSAGE_START.search(body)
        if found is None:
            return ""
        try:
            return service_text(orjson.loads(b'"' + found[1] + b'"'))
        except orjson.JSONDecodeError:
            return service_text(found[1].decode("utf-8", "replace"))
    if isinstance(parsed, dict):
        msg = parsed.get("message") or parsed.get("error") or ""
        if isinstance(msg, list):
            return service_text("; ".join(str(m) for m in msg))
        return service_text(str(msg))
    return ""


def _looks_like_html(response: httpx.Response, body: bytes) -> bool:
    ctype = response.headers.get("content-type", "")
    return "html" in ctype or body.lstrip()[:1] == b"<"


def _where(response: httpx.Response) -> tuple[str, dict[str, Any]]:
    """How a message names the request, and the fields every ApiError of it carries."""
    url = str(response.request.url)
    rid = response.headers.get("x-request-id")
    where = f"GET {short_url(url)}" + (f" (request id {service_text(rid)})" if rid else "")
    return where, {"url": url, "status": response.status_code, "request_id": rid}


def triage(host: str, response: httpx.Response, body: bytes, params: Mapping[str, str]) -> None:
    """The one place that decides what a response's status means."""
    status = response.status_code
    where, kw = _where(response)

    if status == 429:
        raise TransientApiError(f"{where}: rate limited (HTTP 429)", **kw)
    if status >= 500:
        raise TransientApiError(f"{where}: server error HTTP {status}", **kw)
    if status in (401, 403):
        raise AuthenticationError(
            f"{host} rejected the API key (HTTP {status}): set TFY_API_KEY to a valid "
            "TrueFoundry API key (a PAT or virtual-account token allowed to read audit logs)",
            **kw,
        )
    if status in (404, 405):
        raise NotAControlPlaneError(
            f"{host} has no audit-logs endpoint (HTTP {status} for {AUDIT_LOGS_PATH}): "
            "is --host / TFY_HOST the URL of a TrueFoundry control plane?",
            **kw,
        )
    if 300 <= status < 400:
        raise NotAControlPlaneError(
            f"{where}: redirected (HTTP {status} to "
            f"{service_text(response.headers.get('location'))}); "
            "pass the control plane's final URL as --host",
            **kw,
        )
    if status >= 400:
        message = _server_message(body) or service_text(response.reason_phrase)
        if status == 400 and int(params.get("offset", "0") or 0) > 0:
            # The spec does not say how deep one may page; a refusal at a non-zero offset,
            # after the same query was answered at offset 0, is the service's depth limit.
            raise OffsetRefusedError(f"{where}: refused offset ({message})", **kw)
        raise RequestRejectedError(f"{where}: rejected with HTTP {status}: {message}", **kw)


def decode_body(response: httpx.Response, body: bytes, decode: Callable[[bytes], T]) -> T:
    """`decode(body)` of a 200. A body that cannot be decoded is retried: a cut connection or
    a glitch; an HTML page or foreign JSON only a few times, as it is more likely the wrong
    host. A count no audit trail can hold is the service's error, and not retried."""
    where, kw = _where(response)
    try:
        return decode(body)
    except ImplausibleTotal as exc:
        raise ImplausibleCountError(
            f"{where}: the service answered {exc}, which is no count of audit events "
            f"(an integer from 0 to {MAX_PLAUSIBLE_TOTAL:,}); nothing was planned or loaded "
            "from it: report this answer to your TrueFoundry administrator",
            **kw,
        ) from None
    except NotAuditLogsResponse as exc:
        raise TransientApiError(
            f"{where}: {exc}; is --host the URL of a TrueFoundry control plane?",
            suspect_host=True,
            **kw,
        ) from exc
    except ValueError as exc:
        if _looks_like_html(response, body):
            raise TransientApiError(
                f"{where}: answered with an HTML page, not JSON; is --host the URL of a "
                "TrueFoundry control plane?",
                suspect_host=True,
                **kw,
            ) from exc
        raise TransientApiError(
            f"{where}: body is not valid JSON ({service_text(str(exc))})", **kw
        ) from exc


def transport_error(
    host: str, exc: httpx.TransportError, request: httpx.Request, budget: float
) -> ApiError:
    """A request that got no response (`budget`: the seconds its attempt had), as the
    retriable error that says why."""
    url = str(request.url)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return TransientApiError(
            f"cannot connect to {host} ({type(exc).__name__}: {exc}); check --host / "
            "TFY_HOST and that this machine can reach it",
            url=url,
        )
    if isinstance(exc, httpx.TimeoutException):
        return TransientApiError(
            f"GET {short_url(url)} did not complete within {budget:.3g}s "
            f"({type(exc).__name__}); the service is slow: retry later or raise --timeout",
            url=url,
        )
    return TransientApiError(
        f"GET {short_url(url)} failed: {type(exc).__name__}: {exc or 'connection dropped'}",
        url=url,
    )


def too_large_error(
    request: httpx.Request,
    response: httpx.Response,
    cap: int,
    head: bytes,
    *,
    cap_was_asked: bool,
) -> ResponseTooLargeError:
    """A body past its `cap` (`head`: its first bytes); `cap_was_asked`: the cap came from
    --max-response-mb rather than from the page size."""
    url = str(request.url)
    rid = response.headers.get("x-request-id")
    where = f"GET {short_url(url)}" + (f" (request id {service_text(rid)})" if rid else "")
    page_size = request.url.params.get("limit")
    source = (
        "--max-response-mb"
        if cap_was_asked
        else f"the cap for a page of {page_size or MAX_PAGE_SIZE} events"
    )
    holds_event, event_id = first_event_in_head(head)
    return ResponseTooLargeError(
        f"{where}: the response is larger than {cap / 2**20:g} MB decompressed ({source}); "
        "nothing of it was loaded: pass a larger --max-response-mb, or a smaller --page-size",
        url=url,
        status=response.status_code,
        request_id=rid,
        holds_event=holds_event,
        event_id=event_id,
        cap=cap,
    )
