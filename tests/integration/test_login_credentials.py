"""`tfy-audit sync` as a user who has only run `tfy login` runs it: a HOME holding nothing but
`~/.truefoundry/credentials.json`, no flags, no TFY_* variables, no dlt config."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from tfy_audit._core.settings import DEFAULT_DUCKDB_PATH
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history

from tests.conftest import DATASET, NOW
from tests.unit.test_credentials import make_jwt, write_credentials

TOKEN = make_jwt(datetime.now(UTC) + timedelta(hours=2), sub="alice", tenantName="acme")


@pytest.fixture
def login_server() -> Iterator[SimulatorServer]:
    """A control plane that accepts the `tfy login` token only."""
    sim = Simulator(
        SimulatorConfig(api_key=TOKEN), generate_history(1_500, days=5, seed=16, end=NOW)
    )
    with SimulatorServer(sim) as srv:
        yield srv


def run_as_logged_in_user(
    home: Path, cwd: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TFY_HOST", "TFY_API_KEY") and not k.startswith("SOURCES__TRUEFOUNDRY_AUDIT")
    }
    env["HOME"] = str(home)
    env.update(extra_env or {})
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "tfy_audit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_login_credentials_alone_sync_with_no_flags(
    login_server: SimulatorServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    path = write_credentials(
        home, {"host": login_server.url, "access_token": TOKEN, "refresh_token": "refresh-me"}
    )
    before = (path.read_bytes(), path.stat().st_mtime_ns)

    proc = run_as_logged_in_user(home, tmp_path / "work", "sync")

    assert proc.returncode == 0, proc.stderr
    db = tmp_path / "work" / DEFAULT_DUCKDB_PATH  # the default --db, in the cwd
    con = duckdb.connect(str(db), read_only=True)
    try:
        ids = {r[0] for r in con.execute(f"select id from {DATASET}.audit_logs").fetchall()}
    finally:
        con.close()
    assert ids == login_server.sim.ids()
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before  # read, never written
    assert sorted(p.name for p in (home / ".truefoundry").iterdir()) == ["credentials.json"]
    assert TOKEN not in proc.stdout + proc.stderr


def test_expired_login_stops_before_any_request(
    login_server: SimulatorServer, tmp_path: Path
) -> None:
    expired = make_jwt(datetime.now(UTC) - timedelta(minutes=5), sub="alice")
    home = tmp_path / "home"
    write_credentials(home, {"host": login_server.url, "access_token": expired})

    proc = run_as_logged_in_user(home, tmp_path / "work", "sync")

    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tfy-audit: error: the `tfy login` token in ")
    assert "run `tfy login` again" in lines[0]
    assert "PAT or virtual-account token in TFY_API_KEY" in lines[0]
    assert expired not in proc.stdout + proc.stderr
    assert login_server.connections_accepted == 0
    assert login_server.sim.stats.requests == 0
    assert not (tmp_path / "work" / DEFAULT_DUCKDB_PATH).exists()


def test_environment_key_wins_over_the_login_file(
    login_server: SimulatorServer, tmp_path: Path
) -> None:
    """TFY_API_KEY beats the file's token (here an expired one, which is then not even
    checked); the file still gives the host, as nothing else does."""
    home = tmp_path / "home"
    stale = make_jwt(datetime.now(UTC) - timedelta(days=3), sub="alice")
    write_credentials(home, {"host": login_server.url, "access_token": stale})

    proc = run_as_logged_in_user(home, tmp_path / "work", "sync", extra_env={"TFY_API_KEY": TOKEN})

    assert proc.returncode == 0, proc.stderr
    con = duckdb.connect(str(tmp_path / "work" / DEFAULT_DUCKDB_PATH), read_only=True)
    try:
        ids = {r[0] for r in con.execute(f"select id from {DATASET}.audit_logs").fetchall()}
    finally:
        con.close()
    assert ids == login_server.sim.ids()
