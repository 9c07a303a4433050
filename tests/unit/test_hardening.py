"""The protections one at a time: deadlines, body caps, count checks, key hygiene, cleaned
service text, hosts, private files, and dlt configuration errors in one line."""

from __future__ import annotations

import gzip
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tfy_audit._compat.dlt import explain_configuration_failure
from tfy_audit._core.errors import (
    ConfigurationError,
    ImplausibleCountError,
    RequestNotSentError,
    ResponseTooLargeError,
    RetriesExhaustedError,
    RunDeadlineError,
    UsageError,
)
from tfy_audit._core.redact import clean, install_log_filter, redact, register_secret
from tfy_audit._engine.lock import pipeline_lock, validate_pipeline_name
from tfy_audit._service.client import AuditLogClient, AuditLogFilters, RetryPolicy
from tfy_audit._service.hosts import normalize_host
from tfy_audit._service.pages import ImplausibleTotal, parse_list_body
from tfy_audit._service.windows import MAX_FANOUT, Window, plan_windows
from tfy_audit._source.config import resolve_host

from tests.conftest import WALL_CLOCK, SerialExecutor
from tests.hostile import hostile_server

START = datetime(2026, 8, 1, tzinfo=UTC)
END = datetime(2026, 8, 2, tzinfo=UTC)
OK = {"data": [{"id": "a"}], "pagination": {"total": 1}}


def mock_client(
    handler: Callable[[httpx.Request], httpx.Response], **kw: Any
) -> tuple[AuditLogClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = AuditLogClient(
        "https://control-plane.test",
        kw.pop("api_key", "secret-token-1234"),
        transport=httpx.MockTransport(record),
        sleep=lambda s: None,
        **kw,
    )
    return client, seen


def page(client: AuditLogClient, limit: int = 10) -> Any:
    return client.list_page(
        AuditLogFilters(), START, END, offset=0, limit=limit, decode=parse_list_body
    )


# -- item 1 --------------------------------------------------------------------------------


@WALL_CLOCK
def test_slow_headers_cannot_outlast_the_timeout() -> None:
    """httpx's per-read timeout alone would wait forever: a byte arrives every 0.5 s."""
    with hostile_server("slow-headers") as (url, _):
        client = AuditLogClient(url, "k-1234", timeout=1.5, retry=RetryPolicy(max_attempts=1))
        t0 = time.monotonic()
        with pytest.raises(RetriesExhaustedError, match=r"did not complete within 1\.5s"):
            client.count(AuditLogFilters(), START, END)
        assert time.monotonic() - t0 < 5
        client.close()


def test_no_request_starts_after_the_run_deadline() -> None:
    client, seen = mock_client(
        lambda r: httpx.Response(200, json=OK), run_deadline=time.monotonic() - 1
    )
    with pytest.raises(RunDeadlineError, match="--max-duration"):
        page(client)
    assert not seen


def test_a_retry_that_would_pass_the_run_deadline_is_not_waited_for() -> None:
    client, seen = mock_client(lambda r: httpx.Response(503), run_deadline=time.monotonic() + 0.2)
    client.retry = RetryPolicy(backoff_initial=5.0)
    with pytest.raises(RunDeadlineError, match="while waiting to retry"):
        page(client)
    assert len(seen) == 1


# -- item 2 --------------------------------------------------------------------------------


def test_a_body_past_the_cap_is_refused_after_decompression() -> None:
    big = b'{"data": [], "pagination": {"total": 1}, "x": "' + b"a" * 3_000_000 + b'"}'
    bomb = gzip.compress(big)
    assert len(bomb) < 10_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bomb, headers={"content-encoding": "gzip"})

    client, _ = mock_client(handler, max_response_bytes=1_000_000)
    with pytest.raises(ResponseTooLargeError, match=r"metric=list.*larger than 0\.95\d* MB"):
        page(client)
    assert client.response_cap(1000) == 1_000_000
    # the default cap admits one event of 16 MB whatever the page size: a bigger bomb
    bigger = b'{"data": [], "pagination": {"total": 1}, "x": "' + b"a" * 20_000_000 + b'"}'
    bigger_bomb = gzip.compress(bigger)
    assert len(bigger_bomb) < 40_000

    def bigger_handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=bigger_bomb, headers={"content-encoding": "gzip"})

    default, _ = mock_client(bigger_handler)
    assert default.response_cap(1000) == 1024 * 1024 + 1000 * 32 * 1024
    assert default.response_cap(10) == 1024 * 1024 + 16 * 1024 * 1024 < len(bigger)
    with pytest.raises(ResponseTooLargeError, match="the cap for a page of 10 events"):
        page(default)


def test_a_gzip_body_within_the_cap_is_read_from_the_network() -> None:
    """The streamed reader decompresses what a real server sends."""
    import http.server
    import threading

    body = gzip.compress(b'{"data": [{"id": "z"}], "pagination": {"total": 1}}')

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        client = AuditLogClient(f"http://127.0.0.1:{srv.server_address[1]}", "k-1234")
        assert page(client) == ([{"id": "z"}], 1)
        client.close()
    finally:
        srv.shutdown()
        srv.server_close()


@WALL_CLOCK
def test_slow_headers_through_a_proxy_from_the_environment_cannot_outlast_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client handed its own transport reads no proxies from the environment by itself: the
    proxy is mounted by the client, with the same deadline on every socket operation."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    with hostile_server("slow-headers") as (proxy, seen):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        client = AuditLogClient(
            "http://tfy.internal",
            "k-1234",
            timeout=1.5,
            retry=RetryPolicy(max_attempts=1),
            allow_insecure_http=True,
        )
        t0 = time.monotonic()
        with pytest.raises(RetriesExhaustedError, match=r"did not complete within 1\.5s"):
            client.count(AuditLogFilters(), START, END)
        assert time.monotonic() - t0 < 5
        client.close()
    # the request went to the proxy, for the host asked for
    assert [request["host"] for request in seen.requests] == ["tfy.internal"]


# -- item 3 --------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [-1, 1.5, "12", True, 10**12, None])
def test_impossible_totals_are_refused(total: Any) -> None:
    import json

    body = json.dumps({"data": [], "pagination": {"total": total}}).encode()
    with pytest.raises(ImplausibleTotal, match=r"pagination\.total = "):
        parse_list_body(body)
    client, seen = mock_client(lambda r: httpx.Response(200, content=body))
    with pytest.raises(ImplausibleCountError, match=r"pagination\.total = "):
        client.count(AuditLogFilters(), START, END)
    assert len(seen) == 1  # not retried


def test_counts_that_do_not_add_up_stop_planning() -> None:
    calls = [0]

    def count(window: Window) -> int:
        calls[0] += 1
        return 5_000_000_000  # plausible alone, but the same for every part

    # counts run at once, in order, so the number of requests is exact (a pool of threads may
    # run a few more queued counts before the planner reads the answer that gives it away)
    with pytest.raises(ImplausibleCountError, match="add up"):
        plan_windows(Window(START, END), count, max_events=10_000, executor=SerialExecutor())
    # the root, its parts, and the parts of the three parts counted before the fourth gave the
    # service away: a few splits, not millions of requests
    assert calls[0] == 1 + MAX_FANOUT + 3 * MAX_FANOUT


def test_planning_has_a_request_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counts that add up but never narrow down (dense single milliseconds) still end."""
    import tfy_audit._service.windows

    monkeypatch.setattr(tfy_audit._service.windows, "PLAN_BASE_REQUESTS", 100)
    monkeypatch.setattr(tfy_audit._service.windows, "PLAN_REQUESTS_PER_WINDOW", 1)
    spots = [START + timedelta(hours=h, microseconds=500) for h in range(24)]
    calls = [0]

    def count(window: Window) -> int:
        calls[0] += 1
        return 20_000 * sum(window.start <= t < window.end for t in spots)

    with ThreadPoolExecutor(4) as pool, pytest.raises(ImplausibleCountError, match="more than"):
        plan_windows(Window(START, END), count, max_events=10_000, executor=pool)
    assert calls[0] <= 100 + 48 + 2 * 256


def test_a_real_plan_is_unaffected() -> None:
    def count(window: Window) -> int:
        return int(window.width / timedelta(seconds=1))  # an event a second

    with ThreadPoolExecutor(4) as pool:
        plan = plan_windows(Window(START, END), count, max_events=10_000, executor=pool)
    assert sum(p.count for p in plan) == 86_400


# -- item 4 --------------------------------------------------------------------------------


def test_the_key_is_stripped_and_checked() -> None:
    client, seen = mock_client(lambda r: httpx.Response(200, json=OK), api_key=" tok-1234\r\n")
    page(client)
    assert seen[0].headers["authorization"] == "Bearer tok-1234"
    with pytest.raises(ConfigurationError, match="at position 4 of 9") as err:
        mock_client(lambda r: httpx.Response(200, json=OK), api_key="tok\x01-1234")
    assert "tok" not in str(err.value).replace("TFY_API_KEY", "")


def test_a_protocol_error_on_our_request_is_permanent_and_redacted() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("Illegal header value b'Bearer secret-token-1234 x'")

    client, seen = mock_client(handler)
    with pytest.raises(RequestNotSentError) as err:
        page(client)
    assert len(seen) == 1
    assert "secret-token-1234" not in str(err.value) and "[redacted]" in str(err.value)
    assert err.value.__context__ is None and err.value.__cause__ is None


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    register_secret("tfy-logged-secret-99")
    install_log_filter()
    logger = logging.getLogger("tfy_audit.test")
    handler_records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_records.append(self.format(record))

    keep = Keep()
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        install_log_filter()
        logger.warning("server said %s", "Bearer tfy-logged-secret-99")
        try:
            raise ValueError("tfy-logged-secret-99")
        except ValueError:
            logger.exception("failed")
    finally:
        root.removeHandler(keep)
    assert handler_records and all("tfy-logged-secret-99" not in r for r in handler_records)
    assert "Bearer [redacted]" in handler_records[0]


# -- item 5 --------------------------------------------------------------------------------


def test_clean_removes_escape_sequences_and_cuts() -> None:
    text = "\x1b]0;title\x07\x1b[2J\x1b[Hbad\r\nthing\x9b31m \u202eevil" + "x" * 1000
    out = clean(text, 300)
    assert out.startswith("bad thing evil")
    assert len(out) == 300 and out.endswith("…")
    assert all(c.isprintable() for c in out)
    assert redact("nothing registered here") == "nothing registered here"


def test_a_servers_message_is_cleaned_in_the_error() -> None:
    message = "\x1b[2Jno" + "y" * 5_000

    client, _ = mock_client(lambda r: httpx.Response(400, json={"message": message}))
    with pytest.raises(Exception, match="rejected with HTTP 400: no") as err:
        page(client)
    assert "\x1b" not in str(err.value) and len(str(err.value)) < 600


# -- item 6 --------------------------------------------------------------------------------


def test_the_pipelines_dir_is_private_and_checked(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh" / "pipelines"
    with pipeline_lock(str(fresh), "p"):
        pass
    assert fresh.stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    with pytest.raises(UsageError, match="writable by every user"), pipeline_lock(str(shared), "p"):
        pass
    if os.geteuid() == 0:  # only root can hand a folder to another user
        theirs = tmp_path / "theirs"
        theirs.mkdir()
        os.chown(theirs, 12345, 12345)
        with pytest.raises(UsageError, match="another user"), pipeline_lock(str(theirs), "p"):
            pass


def test_the_lock_file_is_never_a_link(tmp_path: Path) -> None:
    folder = tmp_path / "pipelines"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("precious")
    lock = folder / ".p.tfy-audit.lock"
    os.link(victim, lock)
    with pytest.raises(UsageError, match="not a plain file"), pipeline_lock(str(folder), "p"):
        pass
    lock.unlink()
    lock.symlink_to(victim)
    with pytest.raises(UsageError, match="symbolic link"), pipeline_lock(str(folder), "p"):
        pass
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("name", ["../x", "a/b", "x.y", "", "a%b", "con"])
def test_pipeline_names_dlt_would_refuse_are_refused_first(name: str) -> None:
    with pytest.raises(UsageError, match="not a valid pipeline name"):
        validate_pipeline_name(name)


def test_a_rewritten_report_keeps_its_mode(tmp_path: Path) -> None:
    from tfy_audit._report.report import _write_atomically

    out = tmp_path / "report.html"
    _write_atomically(out, "one")
    out.chmod(0o600)
    _write_atomically(out, "two")
    assert out.read_text() == "two" and out.stat().st_mode & 0o777 == 0o600


# -- item 7 --------------------------------------------------------------------------------


def test_hosts() -> None:
    assert normalize_host("https://a.example/") == "https://a.example"
    assert normalize_host("http://127.0.0.1:8765") == "http://127.0.0.1:8765"
    assert normalize_host("http://[::1]:8765") == "http://[::1]:8765"
    assert normalize_host("http://localhost:1") == "http://localhost:1"
    assert normalize_host("http://a.example", allow_insecure_http=True) == "http://a.example"
    with pytest.raises(UsageError, match="unencrypted"):
        normalize_host("http://10.0.0.1")
    with pytest.raises(UsageError, match=r"no scheme; pass https://a\.example$"):
        normalize_host("a.example")
    with pytest.raises(UsageError, match=r"or http://127\.0\.0\.1:1 for"):
        normalize_host("127.0.0.1:1")
    for bad in ("https://u:pw-777@a.example", "u:pw-777@a.example"):
        with pytest.raises(UsageError, match="user name or password") as err:
            normalize_host(bad)
        assert "pw-777" not in str(err.value)


def test_a_configured_host_and_tfy_host_that_differ_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SOURCES__TRUEFOUNDRY_AUDIT__HOST", "https://configured.example")
    monkeypatch.setenv("TFY_HOST", "https://env.example")
    with caplog.at_level(logging.WARNING, logger="tfy_audit._source.config"):
        assert resolve_host(None) == "https://configured.example"
    assert "https://configured.example" in caplog.text and "TFY_HOST" in caplog.text
    assert "https://env.example" in caplog.text


# -- item 10 -------------------------------------------------------------------------------


def test_dlt_configuration_errors_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from dlt.common.configuration import resolve_configuration
    from dlt.destinations.impl.postgres.configuration import PostgresClientConfiguration

    monkeypatch.setenv(
        "DESTINATION__POSTGRES__CREDENTIALS", "postgresql://postgres@127.0.0.1:5432/test"
    )
    with pytest.raises(Exception) as err:
        resolve_configuration(
            PostgresClientConfiguration()._bind_dataset_name(dataset_name="d"),
            sections=("destination", "postgres"),
        )
    text = explain_configuration_failure(err.value)
    assert text is not None and "\n" not in text
    assert "`password`" in text and "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD" in text
    assert explain_configuration_failure(ValueError("x")) is None
