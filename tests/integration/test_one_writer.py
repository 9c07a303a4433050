"""One writer per dataset: two syncs with working dirs of their own (two machines, or two
schedulers) into one dataset never load side by side. The second refuses naming the holder, or
waits for it and then adds nothing; every table holds each key once, exact ids."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import (
    API_KEY,
    REPO,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli_process,
)
from tests.integration import test_destinations
from tests.integration.test_destinations import UNIQUE_KEYS, postgres

postgres_dataset = test_destinations.postgres_dataset  # the fixture, shared

HOLDER = re.compile(
    r"another sync is loading dataset '[^']+' \(host (?P<host>\S+), pid (?P<pid>\d+), "
    r"started at (?P<at>\d{4}-\d\d-\d\dT[\d:]+\+00:00)\); .*--wait SECONDS"
)


class HeldService:
    """The simulator, answering no page until released: a sync that reached its pages holds
    the destination's lock, mid-run, for as long as the test needs."""

    def __init__(self, sim: Simulator) -> None:
        self.reading = threading.Event()
        self.release = threading.Event()

        def hold(_sim: Simulator, params: dict[str, str]) -> None:
            if params.get("metric") != "count":
                self.reading.set()
                assert self.release.wait(timeout=300)

        sim.on_request = hold


@contextmanager
def first_sync(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfy_audit", *args],
        cwd=REPO,
        env={**os.environ, "TFY_API_KEY": API_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


def _file_opens(db: Path) -> bool:
    probe = "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True).close()"
    done = subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True, timeout=60)
    return done.returncode == 0


def _other(workspace: Workspace, url: str, *extra: str) -> list[str]:
    """The same database and dataset, another working dir: another machine's scheduler."""
    args = workspace.sync_args(url, *extra)
    args[args.index("--pipelines-dir") + 1] = str(workspace.pipelines_dir.with_name("other"))
    return args


def _assert_names_the_holder(stderr: str, first: subprocess.Popen[str]) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    found = HOLDER.search(lines[0])
    assert found, lines[0]
    assert found["pid"] == str(first.pid)
    assert found["host"] == socket.gethostname()


def test_duckdb_second_writer_refuses_naming_the_holder(workspace: Workspace) -> None:
    # a first chunk large enough that the first sync lets the database file go while it
    # reads (database.py): DuckDB's own lock no longer keeps the second one out then
    sim = make_simulator(24_000, days=4, seed=21)
    held = HeldService(sim)
    with SimulatorServer(sim) as srv, first_sync(workspace.sync_args(srv.url)) as first:
        try:
            assert held.reading.wait(timeout=120), "the first sync never read a page"
            _wait_until(lambda: _file_opens(workspace.db), 120, "the first sync lets go")
            second = run_cli_process(*_other(workspace, srv.url))
        finally:
            held.release.set()
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1, second.stderr
    _assert_names_the_holder(second.stderr, first)
    assert_warehouse_matches(workspace, sim.events())


def test_duckdb_second_writer_waits_then_adds_nothing(workspace: Workspace) -> None:
    sim = make_simulator(24_000, days=4, seed=22)
    held = HeldService(sim)
    with SimulatorServer(sim) as srv, first_sync(workspace.sync_args(srv.url, "--json")) as first:
        waiting = threading.Event()
        lines: list[str] = []
        try:
            assert held.reading.wait(timeout=120), "the first sync never read a page"
            _wait_until(lambda: _file_opens(workspace.db), 120, "the first sync lets go")
            second = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tfy_audit._cli.main",
                    *_other(workspace, srv.url),
                    "--wait",
                    "600",
                ],
                cwd=REPO,
                env={**os.environ, "TFY_API_KEY": API_KEY},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )

            def read() -> None:
                assert second.stderr is not None
                for line in second.stderr:
                    lines.append(line)
                    if "waiting up to" in line:
                        waiting.set()

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            assert waiting.wait(timeout=120), "".join(lines)
            assert second.poll() is None  # queued behind the first, not loading
        finally:
            held.release.set()
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
        # what the first sync loaded, from its own summary: the file may already be the
        # queued second sync's to write, so it is not opened here
        rows_after_first = json.loads(out)["events_new"]
        assert second.wait(timeout=300) == 0, "".join(lines)
        reader.join(timeout=60)
    assert "dataset 'truefoundry_audit'" in "".join(lines)
    assert workspace.query("select count(*) from truefoundry_audit.audit_logs") == [
        (rows_after_first,)
    ]
    assert_warehouse_matches(workspace, sim.events())


def test_duckdb_lock_is_let_go_with_its_holder(tmp_path: Path) -> None:
    """A lock file left by a killed sync never blocks the next one: the kernel holds it."""
    from tfy_audit._engine.lock import _duckdb_lock, duckdb_lock_path

    db = tmp_path / "a.duckdb"
    probe = (
        "import sys, time; from tfy_audit._engine.lock import _duckdb_lock\n"
        "with _duckdb_lock(sys.argv[1], 'ds', wait=0):\n"
        "    print('held', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", probe, str(db)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"pid {proc.pid}"), _duckdb_lock(str(db), "ds", wait=0):
            pass
    finally:
        proc.kill()
        proc.wait(timeout=60)
    with _duckdb_lock(str(db), "ds", wait=0):
        assert duckdb_lock_path(str(db), "ds").exists()
    # the lock is beside the database, not in it
    assert not db.exists()


@pytest.mark.postgres
def test_postgres_second_writer_refuses_naming_the_holder(
    postgres_dataset: str, tmp_path: Path
) -> None:
    ds = postgres_dataset
    sim = make_simulator(3_000, seed=23)
    held = HeldService(sim)

    def args(url: str, pipelines_dir: Path) -> list[str]:
        return [
            "sync", "--host", url, "--destination", "postgres", "--dataset", ds,
            "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(pipelines_dir), "--no-progress",
        ]  # fmt: skip

    with SimulatorServer(sim) as srv, first_sync(args(srv.url, tmp_path / "a")) as first:
        try:
            assert held.reading.wait(timeout=120), "the first sync never read a page"
            second = run_cli_process(*args(srv.url, tmp_path / "b"))
        finally:
            held.release.set()
        _out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 1, second.stderr
    _assert_names_the_holder(second.stderr, first)
    with postgres() as cur:
        for table, key in UNIQUE_KEYS.items():
            cols = ", ".join(key)
            cur.execute(f'SELECT count(*), count(DISTINCT ({cols})) FROM "{ds}".{table}')
            total, distinct = cur.fetchone()
            assert total == distinct, f"{table} holds duplicates: {total} rows, {distinct} keys"
        cur.execute(f'SELECT id FROM "{ds}".audit_logs')
        assert {r[0] for r in cur.fetchall()} == sim.ids()


def test_duckdb_lock_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    """The lock file sits beside the database, perhaps in a shared directory: a link planted
    there is never followed (it would make the sync write its holder line into the target)."""
    from tfy_audit._core.errors import UsageError
    from tfy_audit._engine.lock import _duckdb_lock, duckdb_lock_path

    target = tmp_path / "precious"
    target.write_text("keep")
    duckdb_lock_path(str(tmp_path / "a.duckdb"), "ds").symlink_to(target)
    with (
        pytest.raises(UsageError, match="lock file"),
        _duckdb_lock(str(tmp_path / "a.duckdb"), "ds", wait=0),
    ):
        pass
    assert target.read_text() == "keep"


def _dataset_pipeline(tmp_path: Path, destination: str, dataset: str, name: str) -> Any:
    from tfy_audit._core.options import DestinationOptions
    from tfy_audit._warehouse.destination import make_pipeline

    target = DestinationOptions(
        destination=destination,
        db=str(tmp_path / "audit.duckdb"),
        dataset=dataset,
        pipeline_name=name,
        pipelines_dir=str(tmp_path / name),
    )
    return make_pipeline(target), target


@pytest.mark.parametrize(
    "destination", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_lock_is_keyed_on_the_dataset_as_the_destination_stores_it(
    destination: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`--dataset LOCKX` and `--dataset lockx` load the same schema (dlt folds the name), so
    they take one lock: the second refuses while the first holds it, and takes it after."""
    from tfy_audit._core.errors import SyncAlreadyRunningError
    from tfy_audit._engine.lock import destination_lock

    if destination == "postgres":
        base = request.getfixturevalue("postgres_dataset")
    else:
        base = "tfy_lock_case"
    shouted = base.replace("tfy_", "TFY_").replace("_test_", "_TEST_").replace("_lock_", "_LOCK_")
    assert shouted != base
    upper, upper_target = _dataset_pipeline(tmp_path, destination, shouted, "upper")
    lower, lower_target = _dataset_pipeline(tmp_path, destination, base, "lower")
    with destination_lock(upper, upper_target, wait=0) as how:
        assert how != "none"
        with (
            pytest.raises(SyncAlreadyRunningError, match=f"dataset '{base}'"),
            destination_lock(lower, lower_target, wait=0),
        ):
            pass
    with destination_lock(lower, lower_target, wait=0):
        pass
