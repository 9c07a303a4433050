"""The HTTP client against httpx.MockTransport: params, retries, Retry-After, error triage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from tfy_audit._core.errors import (
    AuthenticationError,
    NotAControlPlaneError,
    OffsetRefusedError,
    RequestRejectedError,
    RetriesExhaustedError,
    RunDeadlineError,
    UsageError,
)
from tfy_audit._service.client import (
    AuditLogClient,
    AuditLogFilters,
    RetryPolicy,
    format_query_time,
    normalize_host,
)
from tfy_audit._service.pages import parse_list_body

START = datetime(2026, 8, 1, tzinfo=UTC)
END = datetime(2026, 8, 2, 12, 30, 0, 250_000, tzinfo=UTC)
OK_BODY = {"data": [{"id": "a"}], "pagination": {"total": 1, "offset": 0, "limit": 10}}


def page(client: AuditLogClient, *, offset: int = 0, limit: int = 10) -> tuple[list[Any], int]:
    return client.list_page(
        AuditLogFilters(), START, END, offset=offset, limit=limit, decode=parse_list_body
    )


def make_client(
    handler: Callable[[httpx.Request], httpx.Response], **retry: float
) -> tuple[AuditLogClient, list[float]]:
    sleeps: list[float] = []
    client = AuditLogClient(
        "http://control-plane.test",
        "secret-token",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(**retry),  # type: ignore[arg-type]
        sleep=sleeps.append,
        allow_insecure_http=True,  # a mock host: nothing leaves the process
    )
    return client, sleeps


def scripted(*responses: httpx.Response | Exception) -> Callable[[httpx.Request], httpx.Response]:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def test_list_sends_every_parameter_and_bearer_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK_BODY)

    client, _ = make_client(handler)
    filters = AuditLogFilters(action="DELETE_SECRET", subject_slug="a@x.com,b@x.com", search="db")
    page = client.list_page(filters, START, END, offset=20, limit=10, decode=parse_list_body)
    assert page == ([{"id": "a"}], 1)
    (request,) = seen
    assert request.url.path == "/api/svc/v1/audit-logs"
    assert dict(request.url.params) == {
        "metric": "list",
        "action": "DELETE_SECRET",
        "search": "db",
        "subjectSlug": "a@x.com,b@x.com",
        "start": "2026-08-01T00:00:00.000Z",
        "end": "2026-08-02T12:30:00.250Z",
        "limit": "10",
        "offset": "20",
    }
    assert request.headers["authorization"] == "Bearer secret-token"


def test_count_uses_the_count_metric() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["metric"] == "count"
        return httpx.Response(200, json={"data": [], "pagination": {"total": 12345}})

    client, _ = make_client(handler)
    assert client.count(AuditLogFilters(), START, END) == 12345
    assert client.stats.by_metric == {"count": 1}


def test_429_honours_retry_after_then_succeeds() -> None:
    client, sleeps = make_client(
        scripted(
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(429, headers={"Retry-After": "0"}),
            httpx.Response(200, json=OK_BODY),
        )
    )
    assert (
        client.list_page(AuditLogFilters(), START, END, offset=0, limit=10, decode=parse_list_body)[
            1
        ]
        == 1
    )
    assert sleeps == [7.0, 0.0]
    assert client.stats.retries == 2 and client.stats.by_status == {429: 2, 200: 1}


def test_5xx_with_html_body_and_transport_errors_are_retried_with_backoff() -> None:
    req = httpx.Request("GET", "http://control-plane.test/")
    client, sleeps = make_client(
        scripted(
            httpx.Response(503, html="<html>Service Unavailable</html>"),
            httpx.RemoteProtocolError("peer closed connection", request=req),
            httpx.ReadTimeout("timed out", request=req),
            httpx.Response(200, content=b'{"data": [{"id": "a"}], "pagination": {"tot'),
            httpx.Response(200, text="not json at all"),
            httpx.Response(200, json=OK_BODY),
        ),
        backoff_initial=0.5,
        backoff_max=4,
    )
    assert (
        client.list_page(AuditLogFilters(), START, END, offset=0, limit=10, decode=parse_list_body)[
            1
        ]
        == 1
    )
    assert len(sleeps) == 5
    caps = [min(4.0, 0.5 * 2**i) for i in range(5)]
    assert all(cap / 2 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))


def test_persistent_failure_names_the_request() -> None:
    client, sleeps = make_client(
        lambda r: httpx.Response(502, text="bad gateway"), max_attempts=3, backoff_initial=0.01
    )
    with pytest.raises(RetriesExhaustedError) as err:
        client.count(AuditLogFilters(action="CREATE_SECRET"), START, END)
    assert "HTTP 502" in str(err.value) and "action=CREATE_SECRET" in str(err.value)
    assert "after 3 attempts" in str(err.value)
    assert len(sleeps) == 2


def test_unreachable_host_fails_fast() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client, sleeps = make_client(handler, connect_attempts=3, backoff_initial=0.01)
    with pytest.raises(Exception) as err:
        client.count(AuditLogFilters(), START, END)
    assert "cannot connect to http://control-plane.test" in str(err.value)
    assert "TFY_HOST" in str(err.value)
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [401, 403])
def test_bad_key_is_an_authentication_error_without_retry(status: int) -> None:
    client, sleeps = make_client(lambda r: httpx.Response(status, json={"message": "no"}))
    with pytest.raises(AuthenticationError, match="TFY_API_KEY"):
        client.count(AuditLogFilters(), START, END)
    assert sleeps == []


def test_not_a_control_plane() -> None:
    client, _ = make_client(lambda r: httpx.Response(404, html="<h1>Not Found</h1>"))
    with pytest.raises(NotAControlPlaneError, match="TrueFoundry control plane"):
        client.count(AuditLogFilters(), START, END)
    client, _ = make_client(
        lambda r: httpx.Response(200, json={"hello": "world"}),
        max_attempts=2,
        backoff_initial=0.01,
    )
    with pytest.raises(RetriesExhaustedError, match="not an audit-logs response"):
        client.count(AuditLogFilters(), START, END)


def test_400_at_an_offset_is_a_depth_refusal_but_at_zero_a_rejection() -> None:
    body = {"statusCode": 400, "message": ["offset too large"], "error": "Bad Request"}
    client, _ = make_client(lambda r: httpx.Response(400, json=body))
    with pytest.raises(OffsetRefusedError):
        client.list_page(
            AuditLogFilters(), START, END, offset=10_000, limit=1000, decode=parse_list_body
        )
    with pytest.raises(RequestRejectedError, match="offset too large") as err:
        client.list_page(
            AuditLogFilters(), START, END, offset=0, limit=1000, decode=parse_list_body
        )
    assert not isinstance(err.value, OffsetRefusedError)


def test_integers_beyond_64_bits_are_kept_exactly() -> None:
    body = (
        b'{"data": [{"id": "a", "metaData": {"n": 123456789012345678901234567890}}],'
        b' "pagination": {"total": 1}}'
    )
    client, _ = make_client(lambda r: httpx.Response(200, content=body))
    events, _ = page(client, limit=1)
    assert events[0]["metaData"]["n"] == 123456789012345678901234567890


def test_usage_errors() -> None:
    with pytest.raises(UsageError, match="API key"):
        AuditLogClient("http://x", "")
    client, _ = make_client(lambda r: httpx.Response(200, json=OK_BODY))
    with pytest.raises(UsageError, match=r"1\.\.1000"):
        client.list_page(
            AuditLogFilters(), START, END, offset=0, limit=1001, decode=parse_list_body
        )
    with pytest.raises(UsageError):
        normalize_host("ftp://x")
    assert normalize_host("https://app.example.com/") == "https://app.example.com"
    with pytest.raises(UsageError, match="known filters"):
        AuditLogFilters.from_mapping({"colour": "red"})
    assert format_query_time(datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)).endswith(".000001Z")


def test_filter_keys_are_stable_and_distinct() -> None:
    assert AuditLogFilters().key == "all"
    a = AuditLogFilters(action="X", cluster_id="c1")
    assert a.key == "action=X&cluster_id=c1" == AuditLogFilters(cluster_id="c1", action="X").key
    assert a.key != AuditLogFilters(action="X").key


def test_https_hosts_are_verified_and_plain_http_hosts_skip_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ssl

    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    secure = AuditLogClient("https://tfy.example.com", "k")
    context = secure._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    plain = AuditLogClient("http://127.0.0.1:9", "k")
    context = plain._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_NONE
    secure.close()
    plain.close()


def test_a_plain_http_host_behind_a_proxy_keeps_verifying(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx hands the proxy the client's `verify`: an https proxy must still be verified."""
    import ssl

    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example:8443")
    client = AuditLogClient("http://tfy.internal", "k", allow_insecure_http=True)
    context = client._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED
    client.close()


def always(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        return response

    return handler


def test_a_long_retry_wait_is_logged_at_warning_with_its_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, sleeps = make_client(
        scripted(
            httpx.Response(429, headers={"Retry-After": "120"}),
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(200, json=OK_BODY),
        )
    )
    with caplog.at_level(logging.WARNING, logger="tfy_audit._service.client"):
        assert page(client)[1] == 1
    assert sleeps == [120.0, 2.0]
    # the short wait is not worth a warning; the long one says why, how long and which attempt
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "\n" not in message
    assert "rate limited (HTTP 429)" in message
    assert "Retry-After: 120" in message
    assert "waiting 120 s before attempt 2 of 8" in message


def test_a_wait_capped_below_what_the_service_asks_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, sleeps = make_client(
        scripted(
            httpx.Response(429, headers={"Retry-After": "999999"}),
            httpx.Response(200, json=OK_BODY),
        )
    )
    with caplog.at_level(logging.WARNING, logger="tfy_audit._service.client"):
        assert page(client)[1] == 1
    assert sleeps == [300.0]
    (record,) = caplog.records
    assert "Retry-After: 999999" in record.getMessage()
    assert "waiting 300 s (the most one wait may take) before attempt 2 of 8" in (
        record.getMessage()
    )


def test_retry_waits_of_one_request_stop_at_the_documented_budget() -> None:
    client, sleeps = make_client(always(httpx.Response(429, headers={"Retry-After": "999999"})))
    with pytest.raises(RetriesExhaustedError) as caught:
        page(client)
    # two waits of 300 s fill the 600 s budget; a third would pass it: no eight-retry 40 minutes
    assert sleeps == [300.0, 300.0]
    text = str(caught.value)
    assert "\n" not in text
    assert "rate limited (HTTP 429)" in text
    assert "waited 600 s for retries of this request, its most (600 s)" in text
    assert "retry later" in text
    assert client.stats.requests == 3


def test_a_retry_wait_past_the_run_deadline_fails_now_without_sleeping() -> None:
    sleeps: list[float] = []
    client = AuditLogClient(
        "http://control-plane.test",
        "secret-token",
        transport=httpx.MockTransport(
            always(httpx.Response(429, headers={"Retry-After": "999999"}))
        ),
        sleep=sleeps.append,
        run_deadline=time.monotonic() + 5,
        allow_insecure_http=True,
    )
    with pytest.raises(RunDeadlineError) as caught:
        page(client)
    assert sleeps == []
    text = str(caught.value)
    assert "\n" not in text
    assert "--max-duration" in text
    assert "Retry-After: 999999" in text


def test_a_503_retry_after_is_honoured_too() -> None:
    client, sleeps = make_client(
        scripted(
            httpx.Response(503, headers={"Retry-After": "9"}),
            httpx.Response(200, json=OK_BODY),
        )
    )
    assert page(client)[1] == 1
    assert sleeps == [9.0]


@pytest.mark.parametrize("asked", [None, 3])
def test_the_pool_holds_as_many_connections_as_requests_in_flight(asked: int | None) -> None:
    """More requests than the concurrency asked for (DEFAULT_CONCURRENCY by default) share its
    connections: each request waits at the server until that many are in flight, and the
    requests beyond them reuse those connections once they are answered."""
    import http.server
    import json
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from tfy_audit._core.settings import DEFAULT_CONCURRENCY

    expected = DEFAULT_CONCURRENCY if asked is None else asked
    requests = 2 * expected
    state = {"in_flight": 0, "peak": 0}
    connections: set[int] = set()
    changed = threading.Condition()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # kept alive: a connection serves request after request

        def do_GET(self) -> None:
            with changed:
                connections.add(self.client_address[1])
                state["in_flight"] += 1
                state["peak"] = max(state["peak"], state["in_flight"])
                changed.notify_all()
                changed.wait_for(lambda: state["peak"] >= expected, timeout=10)
            body = json.dumps(OK_BODY).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            with changed:
                state["in_flight"] -= 1

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    pool = {} if asked is None else {"max_connections": asked}
    client = AuditLogClient(
        f"http://127.0.0.1:{srv.server_address[1]}", "k-1234", timeout=30, **pool
    )
    try:
        with ThreadPoolExecutor(max_workers=requests) as workers:
            results = list(workers.map(lambda _: page(client)[1], range(requests)))
    finally:
        client.close()
        srv.shutdown()
        srv.server_close()
    assert results == [1] * requests
    assert (state["peak"], len(connections)) == (expected, expected)
