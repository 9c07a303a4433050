"""Delivering alerts to a loopback receiver that checks signatures and records deliveries:
signed and exactly once per id; the receiver down, then up; 500s; slow (bounded); Slack; a
run killed between writing its alerts and delivering them; re-running a range."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._core.options import DestinationOptions
from tfy_audit._detect.delivery import WEBHOOK, Channel, deliver
from tfy_audit._detect.rules import builtin_rules
from tfy_audit._detect.runner import detect
from tfy_audit._warehouse.destination import make_pipeline
from tfy_audit._warehouse.view_params import ViewParams
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer
from tfy_audit.simulator.plants import plant_patterns, quiet_history

from tests.conftest import (
    API_KEY,
    free_port,
    isolate_env,
    run_cli,
    run_cli_captured,
    run_crashing_cli,
)

pytestmark = pytest.mark.xdist_group("test_alert_delivery")

END = datetime(2026, 11, 5, tzinfo=UTC)
START = END - timedelta(days=2)
SECRET = "s3cret-for-tests"
PARAMS = ViewParams(timezone="Europe/Berlin")
PLANTS = plant_patterns(END - timedelta(days=1))


class Receiver:
    """A webhook receiver on loopback: records each delivery and whether its signature held;
    `fail` answers that many requests 500 first, `delay` seconds before answering."""

    def __init__(self, port: int = 0) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.fail = 0
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                if receiver.fail > 0:
                    receiver.fail -= 1
                    self.send_response(500)
                    self.end_headers()
                    return
                sent = self.headers.get("X-Tfy-Audit-Signature-256")
                good = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                receiver.deliveries.append(
                    {
                        "id": self.headers["X-Tfy-Audit-Alert-Id"],
                        "path": self.path,
                        "body": json.loads(body),
                        "signed": sent is not None and hmac.compare_digest(sent, good),
                    }
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/tfy"

    def ids(self) -> list[str]:
        return sorted(d["id"] for d in self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synced DuckDB file with every plant; each test detects on its own copy."""
    tmp = tmp_path_factory.mktemp("delivery")
    with pytest.MonkeyPatch.context() as mp:
        isolate_env(mp, tmp_path_factory)
        events = quiet_history(400, days=2, end=END, seed=3) + [e for p in PLANTS for e in p.events]
        sim = Simulator(SimulatorConfig(api_key=API_KEY), events)
        with SimulatorServer(sim) as server:
            since = (START - timedelta(days=30)).isoformat()
            code = run_cli("sync", "--host", server.url, "--db", str(tmp / "audit.duckdb"),
                           "--pipelines-dir", str(tmp / "p"), "--since", since, "--no-progress",
                           "--workers", "0")  # fmt: skip
            assert code == 0
    return tmp / "audit.duckdb"


@pytest.fixture
def target(loaded: Path, tmp_path: Path) -> DestinationOptions:
    shutil.copy(loaded, tmp_path / "audit.duckdb")
    return DestinationOptions(db=str(tmp_path / "audit.duckdb"), pipelines_dir=str(tmp_path / "p"))


def _detect(target: DestinationOptions, *channels: Channel) -> Any:
    return detect(make_pipeline(target), builtin_rules(), START, END, params=PARAMS, to=channels)


def _table_ids(target: DestinationOptions) -> list[str]:
    with make_pipeline(target).sql_client() as client:
        rows = client.execute_sql(
            f"select alert_id from {client.make_qualified_table_name('alerts')}"
        )
    return sorted(r[0] for r in rows)


def test_webhook_signed_once_per_alert_and_rerun_adds_nothing(
    target: DestinationOptions, receiver: Receiver
) -> None:
    first = _detect(target, Channel(WEBHOOK, receiver.url, SECRET))
    ids = _table_ids(target)
    assert len(ids) == len(PLANTS) and sorted(first.new_alerts) == ids
    assert receiver.ids() == ids
    assert all(d["signed"] for d in receiver.deliveries)
    by_id = {d["id"]: d["body"] for d in receiver.deliveries}
    assert {by_id[i]["rule_id"] for i in ids} == {p.rule_id for p in PLANTS}
    assert all(by_id[i]["alert_id"] == i for i in ids)
    # the same range again: no new alert, no second delivery
    again = _detect(target, Channel(WEBHOOK, receiver.url, SECRET))
    assert again.new_alerts == [] and again.pending == {"webhook": 0}
    assert _table_ids(target) == ids and receiver.ids() == ids


def test_receiver_down_then_up_delivers_each_alert_once(
    target: DestinationOptions, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    down = _detect(target, Channel(WEBHOOK, f"http://127.0.0.1:{port}/hooks/tfy", SECRET))
    assert down.deliveries[0].delivered == [] and down.deliveries[0].failed
    assert down.pending == {"webhook": len(PLANTS)}
    status = run_cli_captured(capsys, "status", "--db", target.db, "--json")
    alerts = json.loads(status.stdout)["alerts"]
    assert alerts["total"] == alerts["pending"] == len(PLANTS)
    assert len(alerts["recent"]) == 5
    up = Receiver(port)
    try:
        later = _detect(target, Channel(WEBHOOK, up.url, SECRET))
        assert later.pending == {"webhook": 0}
        assert up.ids() == _table_ids(target)  # each once
    finally:
        up.close()


def test_500s_are_retried(target: DestinationOptions, receiver: Receiver) -> None:
    receiver.fail = 2  # the first alert's first two attempts
    found = _detect(target, Channel(WEBHOOK, receiver.url, SECRET))
    assert found.pending == {"webhook": 0} and receiver.ids() == _table_ids(target)


def test_a_slow_receiver_is_bounded(receiver: Receiver) -> None:
    receiver.delay = 2.0
    alert = {"alert_id": "a1", "rule_id": "r", "title": "t", "severity": "high"}
    started = time.monotonic()
    result = deliver(
        Channel(WEBHOOK, receiver.url, SECRET),
        [alert, {**alert, "alert_id": "a2"}],
        on_delivered=lambda _: pytest.fail("nothing is confirmed"),
        attempts=2,
        backoff=0.05,
        timeout=0.3,
    )
    assert time.monotonic() - started < 1.5
    assert result.delivered == [] and "no answer in time" in (result.failed or "")


def test_slack_gets_text_and_its_url_is_never_shown(
    target: DestinationOptions, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    slack = receiver.url.replace("/hooks/tfy", "/services/T000/B000/XXXXSECRETXXXX")
    done = run_cli_captured(
        capsys, "detect", "--db", target.db, "--pipelines-dir", str(target.pipelines_dir),
        "--start", START.isoformat(), "--end", END.isoformat(), "--alert-slack", slack,
        "--timezone", "Europe/Berlin", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "XXXXSECRETXXXX" not in done.stdout + done.stderr
    document = json.loads(done.stdout)
    assert document["pending"] == {"slack": 0}
    assert sorted(document["new_alerts"]) == receiver.ids() == _table_ids(target)
    texts = [d["body"]["text"] for d in receiver.deliveries]
    assert all(d["path"] == "/services/T000/B000/XXXXSECRETXXXX" for d in receiver.deliveries)
    assert {p.rule_id for p in PLANTS} == {r for r in (t.split("`")[1] for t in texts)}


def test_killed_between_writing_and_delivering_delivers_once_after(
    target: DestinationOptions, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TFY_AUDIT_WEBHOOK_SECRET", SECRET)
    args = ["detect", "--db", target.db, "--pipelines-dir", str(target.pipelines_dir),
            "--start", START.isoformat(), "--end", END.isoformat(),
            "--alert-webhook", receiver.url, "--timezone", "Europe/Berlin"]  # fmt: skip
    crashed = run_crashing_cli(args, "alerts:1")
    assert crashed.returncode == -9, crashed.stderr
    assert receiver.deliveries == []
    ids = _table_ids(target)
    assert len(ids) == len(PLANTS)  # written before the kill
    again = run_crashing_cli(args, "none")
    assert again.returncode == 0, again.stderr
    assert receiver.ids() == ids and all(d["signed"] for d in receiver.deliveries)
