"""`sync --publish PATH`: a read-only snapshot of the DuckDB dataset for dashboards, swapped in
by rename after each successful sync. A reader of the old snapshot (another process, as a BI
tool is) keeps reading it and never blocks a sync; a new connection sees the new data; a sync
killed while publishing leaves the previous snapshot whole. And `--wait` queues behind a
process that holds the database itself open."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from tfy_audit.simulator import Simulator, SimulatorServer
from tfy_audit.simulator.history import make_event

from tests.conftest import (
    API_KEY,
    DATASET,
    REPO,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
    run_cli_captured,
    run_crashing_cli,
)

# A dashboard's connection: opens the file read-only, starts a query and keeps its result
# open; on "ids" it reads the rest of that result and asks again on the same connection; on
# "close" it closes. Every answer is one line on stdout.
READER = f"""
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET enable_progress_bar = false")  # its bar would write on stdout
result = con.execute("select id from {DATASET}.audit_logs")
first = result.fetchmany(7)
print("open", flush=True)
for line in sys.stdin:
    if line.strip() == "ids":
        rest = result.fetchall()
        again = con.execute("select id from {DATASET}.audit_logs").fetchall()
        print(json.dumps({{"cursor": [r[0] for r in first + rest],
                          "again": [r[0] for r in again]}}), flush=True)
    elif line.strip() == "close":
        con.close()
        print("closed", flush=True)
        break
"""


class Reader:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:  # it died: say why
            _out, err = self.proc.communicate(timeout=60)
            raise AssertionError(f"the reader ended ({self.proc.returncode}): {err}")
        return answer


@contextmanager
def reader(path: Path) -> Iterator[Reader]:
    proc = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        opened = proc.stdout.readline().strip()
        assert opened == "open", proc.stderr.read() if proc.stderr else opened
        yield Reader(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def snapshot_ids(path: Path) -> set[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return {r[0] for r in con.execute(f"select id from {DATASET}.audit_logs").fetchall()}
    finally:
        con.close()


def add_recent(sim: Simulator, n: int, seed: int) -> None:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    sim.add_events(make_event(rng, now - timedelta(seconds=60 - i)) for i in range(n))


def pointer(workspace: Workspace) -> dict[str, str]:
    data: dict[str, str] = json.loads(
        (workspace.db.with_name(f".{workspace.db.name}.published.json")).read_text()
    )
    return data


def leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def test_publish_never_blocks_on_a_reader_and_swaps_in_the_new_data(
    workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(3_000, seed=41)
    snap = tmp_path / "dash" / "audit_snapshot.duckdb"
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--publish", str(snap))) == 0
        first_ids = sim.ids()
        assert snapshot_ids(snap) == first_ids
        first_pointer = pointer(workspace)
        assert first_pointer["path"] == str(snap.resolve())
        capsys.readouterr()
        with reader(snap) as dashboard:
            # two syncs publish while the dashboard holds the old snapshot open, mid-query
            for seed in (1, 2):
                add_recent(sim, 25, seed)
                code = run_cli(*workspace.sync_args(srv.url, "--publish", str(snap), "--json"))
                assert code == 0, capsys.readouterr().err
                out = capsys.readouterr().out
                document = json.loads(out)
                published = document["published"]
                assert published["path"] == str(snap.resolve())
                assert published["bytes"] == snap.stat().st_size
                assert published["seconds"] >= 0
                # a new connection sees the new data at once
                assert snapshot_ids(snap) == sim.ids()
            seen = json.loads(dashboard.ask("ids"))
            assert set(seen["cursor"]) == first_ids and len(seen["cursor"]) == len(first_ids)
            assert set(seen["again"]) == first_ids
            assert dashboard.ask("close") == "closed"
    assert len(sim.ids()) == len(first_ids) + 50
    assert_warehouse_matches(workspace, sim.events())
    # the snapshot is the dataset whole: its views and its run history; nothing left beside it
    con = duckdb.connect(str(snap), read_only=True)
    try:
        ((events,),) = con.execute(f"select sum(events) from {DATASET}.daily_activity").fetchall()
        runs = con.execute(f"select status from {DATASET}.sync_runs").fetchall()
    finally:
        con.close()
    assert events == len(sim.ids())
    assert sorted(runs) == [("ok",)] * 3
    assert not os.access(snap, os.W_OK) or os.geteuid() == 0
    assert oct(snap.stat().st_mode & 0o222) == oct(0)
    assert leftovers(snap) == []
    last = pointer(workspace)
    assert last["path"] == str(snap.resolve())
    assert datetime.fromisoformat(last["published_at"]) > datetime.fromisoformat(
        first_pointer["published_at"]
    )


def test_a_sync_killed_while_publishing_leaves_the_previous_snapshot(
    workspace: Workspace, tmp_path: Path
) -> None:
    sim = make_simulator(3_000, seed=42)
    snap = tmp_path / "snapshot.duckdb"
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--publish", str(snap))) == 0
        old = sim.ids()
        add_recent(sim, 30, 3)
        killed = run_crashing_cli(workspace.sync_args(srv.url, "--publish", str(snap)), "publish:1")
        assert killed.returncode == -9, killed.stderr
        # the data was loaded before the kill; the snapshot is still the previous one, whole
        assert workspace.ids() == sim.ids()
        assert snapshot_ids(snap) == old
        # killed after the copy, before the rename: the copy lies beside it, never at its path
        (left,) = leftovers(snap)
        assert left.startswith(f".{snap.name}.publishing-"), left
        # the next sync publishes, and clears what the killed one left beside the snapshot
        assert run_cli(*workspace.sync_args(srv.url, "--publish", str(snap))) == 0
    assert snapshot_ids(snap) == sim.ids()
    assert leftovers(snap) == []


def test_a_failed_sync_leaves_the_previous_snapshot(
    workspace: Workspace, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(3_000, seed=43)
    snap = tmp_path / "snapshot.duckdb"
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--publish", str(snap))) == 0
        old, before = sim.ids(), snap.stat()
        add_recent(sim, 10, 4)
        failed = run_cli_captured(
            capfd,
            *workspace.sync_args(srv.url, "--publish", str(snap)),
            env={"TFY_API_KEY": "wrong"},
        )
    assert failed.returncode == 1, failed.stderr
    after = snap.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert snapshot_ids(snap) == old
    assert leftovers(snap) == []


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--destination", "filesystem"], "--publish needs the duckdb destination"),
        (["--publish-same-as-db"], "is the --db itself"),
    ],
)
def test_publish_usage_errors_before_any_request(
    extra: list[str],
    needle: str,
    workspace: Workspace,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sim = make_simulator(300, seed=44)
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(srv.url)
        if extra == ["--publish-same-as-db"]:
            args += ["--publish", str(workspace.db)]
        else:
            args += [*extra, "--publish", str(tmp_path / "snap.duckdb")]
        proc = run_cli_captured(capfd, *args)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("tfy-audit: error: "), proc.stderr
    assert needle in lines[0], lines[0]
    assert sim.stats.total == 0
    assert not (tmp_path / "snap.duckdb").exists()


def test_wait_queues_behind_a_reader_of_the_database(workspace: Workspace) -> None:
    sim = make_simulator(3_000, seed=45)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        add_recent(sim, 20, 5)
        with reader(workspace.db) as notebook:
            args = [*workspace.sync_args(srv.url), "--wait", "30"]
            sync = subprocess.Popen(
                [sys.executable, "-m", "tfy_audit", *args],
                cwd=REPO,
                env={**os.environ, "TFY_API_KEY": API_KEY},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            waiting, said = threading.Event(), threading.Event()
            lines: list[str] = []

            def follow() -> None:
                assert sync.stderr is not None
                for line in sync.stderr:
                    lines.append(line)
                    if "waiting up to 30s" in line and "open in another process" in line:
                        waiting.set()
                        said.set()
                said.set()  # the sync ended without saying it waits

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            try:
                assert said.wait(timeout=120) and waiting.is_set(), "".join(lines)
                assert sync.poll() is None  # queued behind the reader, not failed
                assert notebook.ask("close") == "closed"
                assert sync.wait(timeout=120) == 0, "".join(lines)
            finally:
                if sync.poll() is None:
                    sync.kill()
                    sync.wait(timeout=60)
            follower.join(timeout=60)
    assert_warehouse_matches(workspace, sim.events())


def test_a_database_with_a_write_ahead_log_is_published_whole(tmp_path: Path) -> None:
    """A database that was not checkpointed is copied by DuckDB, its log included: its bytes
    alone would lack the last writes."""
    from tfy_audit._engine.publish import pointer_path, publish

    db = tmp_path / "wal.duckdb"
    con = duckdb.connect(str(db))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")
    con.execute("SET checkpoint_threshold = '1GB'")
    con.execute(f"CREATE SCHEMA {DATASET}")
    con.execute(f"CREATE TABLE {DATASET}.audit_logs (id TEXT)")
    con.execute(f"INSERT INTO {DATASET}.audit_logs VALUES (?), (?), (?)", ["a", "b\u00fc", "d"])
    con.close()
    assert db.with_name("wal.duckdb.wal").exists()
    snap = tmp_path / "out" / "snap.duckdb"
    published = publish(str(db), str(snap))
    assert snapshot_ids(snap) == {"a", "b\u00fc", "d"}
    assert published.bytes == snap.stat().st_size
    assert leftovers(snap) == []
    assert json.loads(pointer_path(str(db)).read_text())["path"] == str(snap.resolve())


def test_a_publish_that_fails_keeps_the_load_and_says_so_in_one_line(
    workspace: Workspace, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(500, seed=46)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the snapshot's folder should be")
    with SimulatorServer(sim) as srv:
        proc = run_cli_captured(
            capfd, *workspace.sync_args(srv.url, "--publish", f"{blocker}/s.duckdb")
        )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tfy-audit: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "the sync loaded its data, but publishing the snapshot" in lines[0], lines[0]
    assert "the previous snapshot is unchanged" in lines[0], lines[0]
    assert_warehouse_matches(workspace, sim.events())  # the load stands
    ((status, error),) = workspace.query(f"select status, error from {DATASET}.sync_runs")
    assert status == "failed" and "publishing the snapshot" in error
    assert blocker.read_text().startswith("a file")
