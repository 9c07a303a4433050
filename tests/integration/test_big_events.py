"""Large events: an 8 MB string, a page of 16 KB manifests, and an event of 16 MB load with the
defaults (DuckDB's memory limit follows the process's memory, with a floor that holds the
largest row the body cap admits)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._core.settings import MEMORY_LIMIT_ENV
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, make_event
from tfy_audit.simulator.history import generate_history
from tfy_audit.simulator.odd import _manifest_yaml

from tests.conftest import (
    API_KEY,
    DATASET,
    NOW,
    REPO,
    Workspace,
    assert_warehouse_matches,
    run_cli,
)
from tests.integration.test_destinations import (
    TEXT_COLUMNS,
    assert_rows_match,
    cli_output,
    postgres,
    postgres_dataset,  # noqa: F401 (a fixture)
)

MB = 1024 * 1024
# the environment that tells a sync it runs in a container of 1 GiB: DuckDB's limit and the
# reading's memory gate follow from it (memory.py), as they would from the container's cgroup
IN_A_1_GIB_CONTAINER = {MEMORY_LIMIT_ENV: "1GiB"}


def big_simulator(extra: list[dict[str, Any]], **config: Any) -> Simulator:
    events = generate_history(40, days=2, end=NOW - timedelta(days=1), seed=5)
    return Simulator(SimulatorConfig(api_key=API_KEY, **config), events + extra)


def manifests(count: int, size: int, *, prefix: str, seed: int = 1) -> list[dict[str, Any]]:
    """`count` APPLY-style events, one millisecond apart, each with a `size`-byte manifest."""
    rng = random.Random(seed)
    at = NOW - timedelta(hours=5)
    return [
        make_event(
            rng,
            at + timedelta(milliseconds=i),
            id=f"{prefix}{i:05d}",
            action="APPLY_APPLICATION",
            metaData={"manifest": _manifest_yaml(size - 7) + f"#{i:06d}", "n": i},
        )
        for i in range(count)
    ]


def leaf(ws: Workspace, event_id: str, path: str) -> Any:
    """The metadata leaf's value (stored as JSON text), parsed."""
    ((value,),) = ws.query(
        f"select value from {DATASET}.audit_log_metadata where audit_log_id = ? and path = ?",
        [event_id, path],
    )
    return json.loads(value)


def test_an_8mb_string_loads_with_the_defaults(workspace: Workspace) -> None:
    big = manifests(1, 8 * MB, prefix="big")
    sim = big_simulator(big)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
    assert_warehouse_matches(workspace, sim.events())
    assert leaf(workspace, "big00000", "$.manifest") == big[0]["metaData"]["manifest"]


def test_a_page_of_1000_manifests_of_16kb_loads_at_any_page_size(workspace: Workspace) -> None:
    many = manifests(1000, 16 * 1024, prefix="m")
    sim = big_simulator(many)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        assert_warehouse_matches(workspace, sim.events())
        # everything again, merged, in pages of 100
        again = workspace.sync_args(srv.url, "--start", "2015-01-01", "--page-size", "100")
        assert run_cli(*again) == 0
    assert_warehouse_matches(workspace, sim.events())
    assert leaf(workspace, "m00999", "$.manifest") == many[999]["metaData"]["manifest"]


@pytest.mark.parametrize("page_size", ["1000", "100"])
def test_a_16mb_event_loads_whatever_the_page_size(workspace: Workspace, page_size: str) -> None:
    big = manifests(1, 16 * MB, prefix="huge")
    sim = big_simulator(big)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--page-size", page_size)) == 0
    assert_warehouse_matches(workspace, sim.events())
    assert leaf(workspace, "huge00000", "$.manifest") == big[0]["metaData"]["manifest"]


def list_requests(sim: Simulator) -> list[tuple[int, int]]:
    """(offset, limit) of every page asked for, in order."""
    return [
        (int(r.params["offset"]), int(r.params["limit"]))
        for r in sim.request_log
        if r.metric == "list"
    ]


def test_a_page_over_the_cap_is_read_again_in_smaller_pages(workspace: Workspace) -> None:
    """40 events of 1 MB (the newest, first in the service's order) make a page of 1,000
    larger than its 32.25 MB cap, and any page of more than 8 of them larger than the 8 MB a
    page of several events may be decoded from (fetch.PAGE_BYTES): read again in halves until
    each half fits, then in pages sized by the answers (as many events as fit in 6 MB), every
    event loads, nothing is set aside."""
    heavy = manifests(40, 1 * MB, prefix="h")
    sim = big_simulator(heavy)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--concurrency", "1")) == 0
    assert_warehouse_matches(workspace, sim.events())
    requests = list_requests(sim)
    # halved while every page holds more than 8 of the large events; from the first half
    # given up on, later pages are sized by the answers that arrived, in whichever order
    assert requests[:6] == [(0, 1000), (0, 500), (500, 500), (0, 250), (250, 250), (0, 125)]
    # One window, newest first: the large events are offsets 0-39. A page of 8 or more of
    # them passes 8 MB and is given up; the pages answered cover the offsets planned (one
    # page of 1,000) exactly once
    answered = sorted((o, o + n) for o, n in requests if len(range(o, min(o + n, 40))) < 8)
    assert answered[0][0] == 0 and answered[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(answered))
    assert len(requests) <= 40
    # nothing set aside: no record was ever written
    tables = workspace.query("select table_name from information_schema.tables")
    assert ("event_anomalies",) not in tables
    assert workspace.query(f"select count(*) from {DATASET}.sync_windows where not complete") == [
        (0,)
    ]


def test_an_event_larger_than_the_cap_is_set_aside_and_recorded(workspace: Workspace) -> None:
    """With a 2 MB cap, a 3 MB event cannot be read: it is set aside with a record of where it
    was (window, offset, id), the rest of its window loads, the run succeeds and the high-water
    mark moves past it."""
    events = manifests(10, 2 * 1024, prefix="s")
    events[4]["metaData"]["manifest"] = _manifest_yaml(3 * MB)  # s00004
    sim = big_simulator(events, order="asc")
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(srv.url, "--max-response-mb", "2", "--concurrency", "1")
        assert run_cli(*args) == 0
        requests = list_requests(sim)
        # a second run finds nothing new: the mark moved past the window
        sim.reset_stats()
        assert run_cli(*args) == 0
        assert sim.stats.by_metric.get("list", 0) == 0
        # verify sees the event the warehouse lacks: its day differs by one
        code, out = cli_output(
            "verify", "--host", srv.url, "--db", str(workspace.db),
            "--pipelines-dir", str(workspace.pipelines_dir),
        )  # fmt: skip
        day = events[4]["createdAt"][:10]
        served = sum(1 for e in sim.events() if e["createdAt"][:10] == day)
        assert code == 3
        row = f"  {day:<10}  {served:>9,}  {served - 1:>9,}  {1:>8,}"
        assert row in out.splitlines(), out
    loaded = [e for e in sim.events() if e["id"] != "s00004"]
    assert_warehouse_matches(workspace, loaded)
    # the 50 events in one window, oldest first: s00004 is the 45th (offset 44). The pages
    # holding it are halved down to a page of one; how the rest is cut depends on which
    # answers arrived first (later pages are sized by them), so it is checked as a whole: the
    # pages that do not hold it, and its page of one, cover the offsets planned exactly once
    assert requests[:6] == [(0, 1000), (0, 500), (500, 500), (0, 250), (250, 250), (0, 125)]
    assert (44, 1) in requests
    pieces = sorted([(o, o + n) for o, n in requests if not o <= 44 < o + n] + [(44, 45)])
    assert pieces[0][0] == 0 and pieces[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    rows = workspace.query(
        "select kind, action, event_id, field_path, page_offset, detail, window_start is not null,"
        f" window_end is not null from {DATASET}.event_anomalies"
    )
    detail = "one event's response is larger than 2 MB decompressed (--max-response-mb)"
    assert rows == [("event_too_large", "not_loaded", "s00004", "$", 44, detail, True, True)]
    # the window counts 50, read 49 and the one set aside: complete
    assert workspace.query(
        f"select service_total, rows_read, complete from {DATASET}.sync_windows"
    ) == [(50, 49, True)]


def test_verify_names_the_event_set_aside_and_repair_loads_it(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """An event larger than the cap is set aside (event_anomalies); verify shows its day
    differing by one and says why, in text and --json, exiting 3; `verify --repair` with a
    larger --max-response-mb loads it, and verify then finds every day matching."""
    events = manifests(10, 2 * 1024, prefix="s")
    events[4]["metaData"]["manifest"] = _manifest_yaml(3 * MB)  # s00004
    sim = big_simulator(events, order="asc")
    day = events[4]["createdAt"][:10]
    served = sum(1 for e in sim.events() if e["createdAt"][:10] == day)
    where = (
        "--host",
        "",
        "--db",
        str(workspace.db),
        "--pipelines-dir",
        str(workspace.pipelines_dir),
    )
    with SimulatorServer(sim) as srv:
        on = (*where[:1], srv.url, *where[2:])
        args = workspace.sync_args(srv.url, "--max-response-mb", "2", "--concurrency", "1")
        assert run_cli(*args) == 0
        code, out = cli_output("verify", *on)
        assert code == 3
        lines = out.splitlines()
        assert f"  {day:<10}  {served:>9,}  {served - 1:>9,}  {1:>8,}" in lines, out
        assert f"  {day}: 1 event set aside as too large (event_anomalies)" in lines, out
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"tfy-audit: 1 day(s) differ: {day}; run `tfy-audit verify --repair` to re-sync them"
            " (with a --max-response-mb above the one the events set aside exceeded)"
        )
        code, out = cli_output("verify", *on, "--json")
        assert code == 3
        assert json.loads(out)["result"]["differing"] == [
            {"day": day, "service": served, "warehouse": served - 1, "set_aside_too_large": 1}
        ]
        # a larger cap loads it: the day is re-synced and matches
        code, out = cli_output("verify", *on, "--repair", "--max-response-mb", "8", "--json")
        assert code == 0, out
        repaired = json.loads(out)
        assert repaired["repaired_days"] == [day]
        assert repaired["after_repair"]["differing"] == []
    assert_warehouse_matches(workspace, sim.events())
    assert leaf(workspace, "s00004", "$.manifest") == events[4]["metaData"]["manifest"]


def test_the_largest_event_and_page_load_in_under_1_gib(workspace: Workspace) -> None:
    """The worst case the body cap admits, in one run of the command in its own process, with
    the DuckDB limit a container of 1 GiB gets: a 16 MB event and a 15 MB page (1,000 events of
    15 KB manifests). With `--workers 0` the process is the whole tree (DuckDB runs in it)."""
    huge = manifests(1, 16 * MB, prefix="huge")
    page = manifests(1000, 15 * 1024, prefix="p", seed=2)
    sim = big_simulator(huge + page)
    with SimulatorServer(sim) as srv:
        code, err, peak = sync_tree_peak(
            workspace, srv.url, "--workers", "0", env=IN_A_1_GIB_CONTAINER
        )
    assert code == 0, err[-2000:]
    assert peak < 1024, f"peak RSS {peak} MiB"
    assert_warehouse_matches(workspace, sim.events())


def tree_rss_mib(pid: int) -> int:
    """RSS of `pid` and all its descendants, from /proc, in MiB (0 once it is gone)."""
    pids, total = [pid], 0
    for each in pids:
        try:
            for task in os.listdir(f"/proc/{each}/task"):
                with open(f"/proc/{each}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
            with open(f"/proc/{each}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            continue  # exited while being read
    return total // 1024


def sync_tree_peak(
    ws: Workspace, url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str, int]:
    """`tfy-audit sync` in its own process, with `env` added to the environment: (exit code,
    stderr, peak RSS of its process tree in MiB, its decoding workers included), the tree
    sampled from /proc until it exits."""
    err = ws.db.with_suffix(".err")
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tfy_audit", *ws.sync_args(url, *extra)],
            cwd=REPO,
            env={**os.environ, "TFY_API_KEY": API_KEY, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        peak = 0
        try:
            while proc.poll() is None:
                peak = max(peak, tree_rss_mib(proc.pid))
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.02)  # the sampling interval, not a wait for an outcome
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, err.read_text(), peak


def test_fifteen_20mb_pages_sync_in_a_1_gib_container(workspace: Workspace) -> None:
    """Fifteen pages of 1,000 events with 20 KB manifests (20 MB bodies) in a row, with the
    DuckDB limit a container of 1 GiB gets, keep the whole process tree (decoding workers
    included) under 1 GiB and load every event. The bodies read and the pages decoded but not
    yet handed on share a byte budget (budget.py), and the memory a large page's decoding freed
    is given back at once. The chunk's load file was cut at 32 MB on disk, compressed: about
    300 MB of manifests in one job, which DuckDB held in one transaction and could not copy
    under 256 MiB, failing every run; a DuckDB file's load files are written uncompressed, so
    the cap bounds each job."""
    pages = manifests(15_000, 20 * 1024, prefix="p", seed=2)
    sim = big_simulator(pages)
    with SimulatorServer(sim) as srv:
        code, err, peak = sync_tree_peak(workspace, srv.url, env=IN_A_1_GIB_CONTAINER)
    assert code == 0, err[-2000:]
    assert peak < 1024, f"peak RSS of the process tree {peak} MiB"
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize("chunks", [(), ("--chunk-events", "2000")], ids=["one-chunk", "chunks"])
def test_six_pages_of_31kb_manifests_load_in_a_1_gib_container(
    chunks: tuple[str, ...], workspace: Workspace
) -> None:
    """Pages at the body cap in a row: six pages of 1,000 events with 31 KB manifests (31 MB
    bodies, under the 32.25 MB cap), with the DuckDB limit a container of 1 GiB gets. Each
    body is as large as a response may be: the pages read and decoded but not handed on share
    a byte budget (budget.py), and the load jobs (cut at 32 MB uncompressed, loaded one at a
    time) keep the process tree under 1 GiB; every event loads exactly. (Ten such
    pages once made one load file too large for DuckDB to copy at any limit; the fifteen
    20 MB pages test above covers that cut, more strictly.) In chunks, the next chunk's pages
    are read and decoded while a chunk loads (loader.py), within the same bound."""
    pages = manifests(6_000, 31 * 1024, prefix="q", seed=3)
    sim = big_simulator(pages)
    keep_files = {"LOAD__DELETE_COMPLETED_JOBS": "false"}
    with SimulatorServer(sim) as srv:
        code, err, peak = sync_tree_peak(
            workspace, srv.url, *chunks, env={**IN_A_1_GIB_CONTAINER, **keep_files}
        )
    assert code == 0, err[-2000:]
    assert peak < 1024, f"peak RSS of the process tree {peak} MiB"
    assert_warehouse_matches(workspace, sim.events())
    workspace.assert_unique()
    # the load files were cut at about 16 MB (a cut at 16 MB plus one slice of 8 MB at most),
    # not joined into files of 32 MB and more by a buffer of rows
    sizes = [f.stat().st_size for f in workspace.pipelines_dir.rglob("audit_log*.parquet")]
    assert len(sizes) >= 12 and max(sizes) < 25 * MB, sorted(sizes)


@pytest.mark.postgres
def test_a_16mb_value_round_trips_on_postgres(
    postgres_dataset: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The largest value the body cap admits needs no truncation: PostgreSQL's text (and
    jsonb) hold up to 1 GB, so a 16 MB manifest is stored whole, in `meta_data` and its leaf."""
    ds = postgres_dataset
    big = manifests(1, 16 * MB, prefix="huge")
    sim = big_simulator(big)
    with SimulatorServer(sim) as srv:
        args = (
            "sync", "--host", srv.url, "--destination", "postgres", "--dataset", ds,
            "--pipeline-name", f"pg_{ds}", "--pipelines-dir", str(tmp_path / "p"), "--no-progress",
        )  # fmt: skip
        assert run_cli(*args) == 0
    with postgres() as cur:
        cur.execute(f'SELECT {TEXT_COLUMNS} FROM "{ds}".audit_logs')
        assert_rows_match(list(cur.fetchall()), sim.events())
        cur.execute(
            f'SELECT value FROM "{ds}".audit_log_metadata WHERE audit_log_id = %s AND path = %s',
            ("huge00000", "$.manifest"),
        )
        ((value,),) = cur.fetchall()
    assert json.loads(value) == big[0]["metaData"]["manifest"]
