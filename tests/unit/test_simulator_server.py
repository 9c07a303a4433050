"""The simulator over real loopback HTTP."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import pytest
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

from tests.conftest import WALL_CLOCK

PATH = "/api/svc/v1/audit-logs"
AUTH = {"Authorization": "Bearer tfy-sim-key"}
END = datetime(2026, 8, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def sim() -> Simulator:
    return Simulator(events=generate_history(2_000, days=10, end=END))


@pytest.fixture
def server(sim: Simulator) -> Iterator[SimulatorServer]:
    sim.config = SimulatorConfig()
    sim.reset_stats()
    with SimulatorServer(sim) as srv:
        yield srv


def client(server: SimulatorServer, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=AUTH, timeout=timeout)


def test_serves_pages_over_keep_alive(server: SimulatorServer, sim: Simulator) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    with client(server) as c:
        seen: list[str] = []
        for offset in range(0, 2_000, 500):
            resp = c.get(PATH, params={"metric": "list", "limit": 500, "offset": offset})
            assert resp.status_code == 200
            assert resp.headers["content-length"] == str(len(resp.content))
            assert resp.http_version == "HTTP/1.1"
            seen += [e["id"] for e in resp.json()["data"]]
    assert set(seen) == sim.ids()
    assert server.connections_accepted == 1


@WALL_CLOCK
def test_latency_does_not_serialize_concurrent_clients(
    server: SimulatorServer, sim: Simulator
) -> None:
    sim.config.latency_ms = 300

    def one(_: int) -> int:
        with client(server) as c:
            return c.get(PATH, params={"metric": "count"}).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(one, range(8)))
    elapsed = time.perf_counter() - started
    assert statuses == [200] * 8
    assert 0.3 <= elapsed < 1.5  # eight sequential answers would take 2.4 s


def test_error_answers_are_complete_http(server: SimulatorServer) -> None:
    with httpx.Client(base_url=server.url, timeout=5) as anon:
        missing = anon.get("/", params={"metric": "count"})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert anon.get(PATH, params={"metric": "count"}).status_code == 401
        assert anon.post(PATH, content=b"{}", headers=AUTH).status_code == 405
        # The connection survives all of them (bodies drained, lengths exact).
        assert anon.get(PATH, params={"metric": "count"}, headers=AUTH).status_code == 200
    assert server.connections_accepted == 1


def test_wire_faults_surface_as_httpx_errors(server: SimulatorServer, sim: Simulator) -> None:
    sim.config.slow_seconds = 5
    sim.inject("reset", "truncate", "slow")
    with client(server, timeout=0.5) as c:
        params: dict[str, str | int] = {"metric": "list", "limit": 50}
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            c.get(PATH, params=params)
        with pytest.raises(httpx.RemoteProtocolError):
            c.get(PATH, params=params)
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            c.get(PATH, params=params)
        assert time.perf_counter() - started < 2
        assert c.get(PATH, params=params).status_code == 200
    assert sim.stats.faults == {"reset": 1, "truncate": 1, "slow": 1}


def test_retry_after_header_over_http(server: SimulatorServer, sim: Simulator) -> None:
    sim.config.retry_after = "0"
    sim.inject("429")
    with client(server) as c:
        resp = c.get(PATH, params={"metric": "count"})
    assert resp.status_code == 429
    assert resp.headers["retry-after"] == "0"


def test_idle_keep_alive_connections_are_closed(server: SimulatorServer, sim: Simulator) -> None:
    sim.config.keepalive_timeout = 0.2
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        deadline = time.monotonic() + 5
        received = b""
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break  # the server hung up on the idle connection
            received += chunk
        assert received.startswith(b"HTTP/1.1 404")
        assert time.monotonic() < deadline


def test_close_is_bounded_with_requests_in_flight(sim: Simulator) -> None:
    sim.config = SimulatorConfig(slow_seconds=30)
    sim.reset_stats()
    server = SimulatorServer(sim)
    idle = httpx.Client(base_url=server.url, headers=AUTH)
    # Leaves an idle keep-alive connection open on the server.
    assert idle.get(PATH, params={"metric": "count"}).status_code == 200
    sim.inject("slow")
    errors: list[BaseException] = []

    def stuck() -> None:
        try:
            with client(server, timeout=60) as c:
                c.get(PATH, params={"metric": "count"})
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=stuck)
    thread.start()
    deadline = time.monotonic() + 5
    while sim.stats.faults["slow"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.perf_counter()
    server.close()
    assert time.perf_counter() - started < 2
    thread.join(5)
    assert not thread.is_alive()
    assert errors  # the in-flight request was cut, not answered after 30 s
    idle.close()


def test_serve_forever_returns_after_close_from_another_thread(sim: Simulator) -> None:
    server = SimulatorServer(sim)
    threading.Timer(0.2, server.close).start()
    started = time.perf_counter()
    server.serve_forever()
    assert time.perf_counter() - started < 3
