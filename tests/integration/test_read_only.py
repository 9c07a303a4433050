"""A DuckDB file the file system will not let us write (read-only, immutable, or in a folder that
is): the commands that only read work on it; a command that writes says so in one line naming
the file and the fix (exit 2), never dlt's "check if you configured the credentials"."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import Workspace, make_simulator, run_cli, run_cli_captured, ts
from tests.integration.test_cli_errors import one_line_error


def _refuse_writes(path: Path) -> None:
    """Read-only for this user: mode bits, and for root (whom they do not stop) the immutable
    attribute."""
    path.chmod(0o555 if path.is_dir() else 0o444)
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot make {path} immutable here: {done.stderr.strip()!r}")


def _allow_writes(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture(params=["file", "folder"])
def frozen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Workspace, Simulator]]:
    """A database synced once, then made unwritable: the file itself, or its folder (the
    pipelines dir is elsewhere, as a scheduler's may be)."""
    folder = tmp_path / "data"
    folder.mkdir()
    ws = Workspace(folder / "audit.duckdb", tmp_path / "pipelines")
    sim = make_simulator(400, days=3, seed=51)
    with SimulatorServer(sim) as srv:
        assert run_cli(*ws.sync_args(srv.url)) == 0
        frozen_path = ws.db if request.param == "file" else folder
        _refuse_writes(frozen_path)
        try:
            sim.url = srv.url  # type: ignore[attr-defined]
            yield ws, sim
        finally:
            _allow_writes(frozen_path)


def _db_args(ws: Workspace) -> list[str]:
    return ["--db", str(ws.db), "--pipelines-dir", str(ws.pipelines_dir)]


def _no_credentials_hint(proc: subprocess.CompletedProcess[str]) -> None:
    assert "credentials" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_reading_commands_work_on_a_file_that_refuses_writes(
    frozen: tuple[Workspace, Simulator], tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ws, sim = frozen
    status = run_cli_captured(capfd, "status", *_db_args(ws), "--json")
    _no_credentials_hint(status)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["filter_sets"][0]["filter_key"] == "all"

    out = tmp_path / "report.html"
    report = run_cli_captured(capfd, "report", *_db_args(ws), "--out", str(out), "--json")
    _no_credentials_hint(report)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["events"] == len(sim.ids())

    url = sim.url  # type: ignore[attr-defined]
    verify = run_cli_captured(capfd, "verify", "--host", url, *_db_args(ws), "--json")
    _no_credentials_hint(verify)
    assert verify.returncode == 0, verify.stderr
    checked = json.loads(verify.stdout)["result"]
    days = {ts(e["createdAt"]).date() for e in sim.events()}
    assert checked["differing"] == [] and checked["days"] == len(days)
    assert "not recorded" in verify.stderr and str(ws.db) in verify.stderr


@pytest.mark.parametrize("command", ["sync", "views", "verify --repair"])
def test_a_command_that_writes_says_so_in_one_line(
    command: str, frozen: tuple[Workspace, Simulator], capfd: pytest.CaptureFixture[str]
) -> None:
    ws, sim = frozen
    args = [*command.split(), *_db_args(ws)]
    if command != "views":
        args += ["--host", sim.url]  # type: ignore[attr-defined]
    proc = run_cli_captured(capfd, *args)
    _no_credentials_hint(proc)
    one_line_error(proc, 2, str(ws.db), "writable")
    assert ws.ids() == sim.ids()  # left as it was
