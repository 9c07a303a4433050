"""`tfy-audit sync` against the simulator over loopback HTTP, into a temporary DuckDB."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._core.options import DestinationOptions
from tfy_audit._engine import loader
from tfy_audit._warehouse.destination import make_pipeline
from tfy_audit._warehouse.readback import read_subjects
from tfy_audit.simulator import Simulator, SimulatorServer, odd_events

from tests.conftest import (
    API_KEY,
    DATASET,
    NOW,
    REPO,
    Workspace,
    assert_warehouse_matches,
    expected_subjects,
    make_simulator,
    run_cli,
    sync_with_quick_retries,
    ts,
)


def test_first_sync_loads_every_event_with_every_field(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    assert run_cli(*workspace.sync_args(server.url)) == 0
    assert_warehouse_matches(workspace, simulator.events())


def test_second_sync_adds_nothing_and_is_cheap(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    assert run_cli(*workspace.sync_args(server.url)) == 0
    simulator.reset_stats()
    assert run_cli(*workspace.sync_args(server.url)) == 0
    assert simulator.stats.total <= 5
    assert_warehouse_matches(workspace, simulator.events())


def test_sync_with_faults_loads_every_event_exactly_once(workspace: Workspace) -> None:
    sim = make_simulator(
        4_000,
        order="shuffled",
        max_offset=1_000,
        latency_ms=2,
        rate_429=0.1,
        retry_after="0",
        rate_503=0.05,
        rate_reset=0.03,
        rate_truncate=0.03,
        rate_nonjson=0.03,
        fault_seed=5,
    )
    with SimulatorServer(sim) as srv:
        summary = sync_with_quick_retries(workspace, srv.url, page_size=200, max_offset=1000)
    assert sim.stats.faults_injected > 0 and summary.retries > 0
    assert not summary.incomplete_windows
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize("order", ["asc", "desc", "shuffled"])
def test_any_result_order(order: str, workspace: Workspace) -> None:
    sim = make_simulator(1_500, order=order, max_offset=400)
    with SimulatorServer(sim) as srv:
        assert (
            run_cli(*workspace.sync_args(srv.url, "--page-size", "100", "--max-offset", "400")) == 0
        )
    assert_warehouse_matches(workspace, sim.events())


@pytest.mark.parametrize(("start_inclusive", "end_inclusive"), [(False, False), (True, False)])
def test_any_reading_of_start_and_end(
    start_inclusive: bool, end_inclusive: bool, workspace: Workspace
) -> None:
    sim = make_simulator(2_000, start_inclusive=start_inclusive, end_inclusive=end_inclusive)
    with SimulatorServer(sim) as srv:
        assert (
            run_cli(*workspace.sync_args(srv.url, "--max-offset", "300", "--page-size", "100")) == 0
        )
    assert_warehouse_matches(workspace, sim.events())


def test_filters_load_exactly_the_matching_events_and_keep_their_own_mark(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    events = simulator.events()
    by_type: dict[str, int] = defaultdict(int)
    for e in events:
        by_type[e["resourceType"]] += 1
    resource_type = max(by_type, key=lambda k: by_type[k])
    slugs = sorted(
        {e["subject"]["subjectSlug"] for e in events if e["subject"].get("subjectSlug")}
    )[:2]
    args = ("--resource-type", resource_type, "--subject-slug", ",".join(slugs))
    assert run_cli(*workspace.sync_args(server.url, *args)) == 0
    expected = [
        e
        for e in events
        if e["resourceType"] == resource_type and e["subject"].get("subjectSlug") in slugs
    ]
    assert expected, "the filter should match something"
    assert_warehouse_matches(workspace, expected)

    # the filtered run's mark does not stop an unfiltered sync from loading the whole history
    assert run_cli(*workspace.sync_args(server.url)) == 0
    assert_warehouse_matches(workspace, events)
    marks = workspace.query("select count(*) from truefoundry_audit._dlt_pipeline_state")
    assert marks[0][0] >= 2


def test_a_filter_value_holding_key_characters_keeps_its_own_mark(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    """`--action 'A&resource_type=R'` (matches nothing) and `--action A --resource-type R` are
    two filter sets: the second's first run reads the whole history of what it matches."""
    events = simulator.events()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        counts[(e["action"], e["resourceType"])] += 1
    action, resource_type = max(counts, key=lambda k: counts[k])
    joined = f"{action}&resource_type={resource_type}"
    assert run_cli(*workspace.sync_args(server.url, "--action", joined)) == 0
    args = ("--action", action, "--resource-type", resource_type)
    assert run_cli(*workspace.sync_args(server.url, *args)) == 0
    expected = [e for e in events if (e["action"], e["resourceType"]) == (action, resource_type)]
    assert len(expected) == counts[(action, resource_type)] > 0
    assert_warehouse_matches(workspace, expected)


def test_awkward_events_load_unchanged(workspace: Workspace) -> None:
    sim = make_simulator(500)
    odd = odd_events(NOW - timedelta(hours=3))
    sim.add_events(odd)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
    assert_warehouse_matches(workspace, sim.events())
    # unknown enum values are kept verbatim
    odd_actions = {e["action"] for e in odd}
    loaded = {r[0] for r in workspace.query(f"select distinct action from {DATASET}.audit_logs")}
    assert odd_actions <= loaded
    # every event's metaData can be rebuilt from its leaves in audit_log_metadata
    leaves: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for audit_log_id, path, value in workspace.query(
        f"select audit_log_id, path, value from {DATASET}.audit_log_metadata"
    ):
        leaves[audit_log_id].append((path, value))
    for event in sim.events():
        meta = event.get("metaData")
        if meta in ({}, None):
            assert event["id"] not in leaves
            continue
        assert rebuild(leaves[event["id"]]) == meta, event["id"]


def test_subjects_table_holds_latest_attributes_and_first_last_seen(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    assert run_cli(*workspace.sync_args(server.url)) == 0
    expected: dict[str, dict[str, Any]] = {}
    for e in sorted(simulator.events(), key=lambda e: (ts(e["createdAt"]), e["id"])):
        s = e["subject"]
        at = ts(e["createdAt"])
        row = expected.setdefault(s["subjectId"], {"first": at})
        row.update(last=at, type=s.get("subjectType"), slug=s.get("subjectSlug"))
    rows = workspace.query(
        f"select subject_id, subject_type, subject_slug, first_seen_at, last_seen_at "
        f"from {DATASET}.subjects"
    )
    actual = {r[0]: {"type": r[1], "slug": r[2], "first": r[3], "last": r[4]} for r in rows}
    assert actual == expected


def test_the_next_sync_starts_from_the_subjects_the_warehouse_holds(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    """What a sync reads back of the subjects (their attributes and first/last seen, in UTC)
    before it folds in new events."""
    assert run_cli(*workspace.sync_args(server.url)) == 0
    pipeline = make_pipeline(
        DestinationOptions(db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir))
    )
    subjects = read_subjects(pipeline)
    assert subjects == expected_subjects(simulator.events())
    assert {s.first_seen_at.tzinfo for s in subjects.values() if s.first_seen_at} == {UTC}
    assert {s.last_seen_at.tzinfo for s in subjects.values() if s.last_seen_at} == {UTC}


def test_sync_windows_cover_the_run(
    simulator: Simulator, server: SimulatorServer, workspace: Workspace
) -> None:
    assert (
        run_cli(*workspace.sync_args(server.url, "--max-offset", "500", "--page-size", "250")) == 0
    )
    rows = workspace.query(
        f"select window_start, window_end, planned_count, rows_read, complete "
        f"from {DATASET}.sync_windows order by window_start"
    )
    assert len(rows) >= len(simulator.events()) // 500
    assert all(r[4] for r in rows)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(rows))
    covered = sum(
        1 for e in simulator.events() if any(r[0] <= ts(e["createdAt"]) < r[1] for r in rows)
    )
    assert covered == len(simulator.events())


def rebuild(leaves: list[tuple[str, str]]) -> Any:
    """Rebuild a JSON document from (JSONPath, JSON value) leaves, independently of the loader."""
    root: Any = None
    for path, value in leaves:
        tokens = parse_path(path)
        parsed = json.loads(value)
        if not tokens:
            return parsed
        if root is None:
            root = [] if isinstance(tokens[0], int) else {}
        node = root
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            nxt: Any = parsed if last else ([] if isinstance(tokens[i + 1], int) else {})
            if isinstance(token, int):
                while len(node) <= token:
                    node.append(None)
                if last or node[token] is None:
                    node[token] = nxt
                node = node[token]
            else:
                if last or token not in node:
                    node[token] = nxt
                node = node[token]
    return root


def parse_path(path: str) -> list[str | int]:
    assert path.startswith("$")
    tokens: list[str | int] = []
    i = 1
    while i < len(path):
        if path[i] == ".":
            j = i + 1
            while j < len(path) and (path[j].isalnum() or path[j] == "_"):
                j += 1
            tokens.append(path[i + 1 : j])
            i = j
        elif path.startswith('["', i):
            decoder = json.JSONDecoder()
            key, end = decoder.raw_decode(path, i + 1)
            tokens.append(key)
            assert path[end] == "]"
            i = end + 1
        else:
            assert path[i] == "["
            j = path.index("]", i)
            tokens.append(int(path[i + 1 : j]))
            i = j + 1
    return tokens


def test_worker_processes_decode_pages_exactly_with_faults(workspace: Workspace) -> None:
    """The path large runs take: pages parsed and normalized in spawned worker processes,
    with garbled bodies (raised in a worker) retried like any other."""
    from tfy_audit._core.options import DestinationOptions, SyncOptions
    from tfy_audit._engine.sync import run_sync
    from tfy_audit._service.client import RetryPolicy

    sim = make_simulator(3_000, order="shuffled", rate_truncate=0.05, rate_nonjson=0.05)
    sim.inject("nonjson", "html200")
    with SimulatorServer(sim) as srv:
        options = SyncOptions(
            target=DestinationOptions(
                db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir)
            ),
            host=srv.url,
            api_key=API_KEY,
            page_size=200,
            workers=2,
            workers_from_events=1,
            retry=RetryPolicy(backoff_initial=0.01),
        )
        summary = run_sync(options)
    assert summary.retries > 0
    assert_warehouse_matches(workspace, sim.events())


def test_the_command_decodes_in_processes_it_forked_exactly_with_faults(
    workspace: Workspace,
) -> None:
    """The command's own process forks its decoders before it imports dlt (forked.py): a run
    large enough to use them decodes there, a garbled body raised in one is read again, and no
    process of the command outlives it."""
    import contextlib
    import os
    import re
    import signal

    sim = make_simulator(24_000, days=20, order="shuffled", latency_ms=1)
    lists = 0

    def garble_pages(s: Simulator, params: dict[str, Any]) -> None:
        # once reading has begun (planning is over), the next two answers are garbled pages
        nonlocal lists
        if params.get("metric") == "list":
            lists += 1
            if lists == 2:
                s.inject("truncate", "nonjson")

    sim.on_request = garble_pages
    with SimulatorServer(sim) as srv:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfy_audit",
                "--debug",
                *workspace.sync_args(srv.url, "--workers", "2"),
            ],
            cwd=REPO,
            env={**os.environ, "TFY_API_KEY": API_KEY},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # only if it hung: the test fails then
    assert proc.returncode == 0, err[-3000:]
    assert "decoding pages in 2 forked process(es)" in err, err[-3000:]
    assert dict(sim.stats.faults) == {"truncate": 1, "nonjson": 1}
    # every page answered whole was decoded by them, the two garbled ones by none
    decoded = re.search(r"the forked decoders decoded (\d+) page\(s\)", err)
    assert decoded is not None, err[-3000:]
    assert int(decoded.group(1)) == sim.stats.by_metric["list"] - 2
    assert_warehouse_matches(workspace, sim.events())
    deadline = time.monotonic() + 30
    while True:  # the session's processes all end with the command
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a process of the command outlived it"
        time.sleep(0.02)


def test_full_re_merge_fits_the_destination_memory_limit(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-reading everything already loaded (an explicit --start at the beginning) merges one
    big chunk; it must fit DuckDB's memory limit, and leave every row exactly once."""
    monkeypatch.setattr("tfy_audit._warehouse.duckdb_file.DUCKDB_MEMORY_LIMIT", "32MB")
    monkeypatch.setenv("TFY_AUDIT_DUCKDB_MEMORY_LIMIT", "32MB")  # a retried job's limit too
    sim = make_simulator(20_000, days=5, seed=3)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        again = workspace.sync_args(srv.url, "--start", "2015-01-01", "--json")
        assert run_cli(*again) == 0
    assert_warehouse_matches(workspace, sim.events())


def test_pages_are_read_ahead_of_dlt_extract(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first chunk's pages are requested before dlt's extract asks for them; every event
    still lands exactly once, one load per chunk."""
    from dlt.pipeline.pipeline import Pipeline

    sim = make_simulator(3_000, days=3, seed=5)
    original_extract = Pipeline.extract
    listed_before_extract: list[bool] = []
    extracts: list[int] = []

    def extract(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        extracts.append(1)
        if not listed_before_extract:  # the first chunk: wait for a page to be requested
            deadline = time.monotonic() + 30
            while sim.stats.by_metric["list"] == 0 and time.monotonic() < deadline:
                time.sleep(0.005)
            listed_before_extract.append(sim.stats.by_metric["list"] > 0)
        return original_extract(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "extract", extract)
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(
            srv.url, "--chunk-events", "1000", "--max-offset", "500", "--page-size", "250"
        )
        assert run_cli(*args) == 0
    assert listed_before_extract == [True]
    assert_warehouse_matches(workspace, sim.events())
    assert len(extracts) >= 3  # as many chunks
    loads = workspace.query(f"select count(*) from {DATASET}._dlt_loads")
    assert loads[0][0] == len(extracts)  # one load per chunk


def test_the_next_chunk_is_read_while_a_chunk_loads_and_waits_on_disk(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a chunk is extracted, the next chunk's pages are requested and decoded while the
    chunk loads; what is read past the memory bound waits in the spill file until dlt's extract
    takes it. Every event still lands exactly once, one load per chunk."""
    from dlt.pipeline.pipeline import Pipeline
    from tfy_audit._service import prefetch

    sim = make_simulator(3_000, days=3, seed=11)
    monkeypatch.setattr(loader, "READ_AHEAD_BYTES", 1)  # every item past the first spills
    spilled: list[int] = []
    original_put = prefetch._SpillFile.put

    def put(self: prefetch._SpillFile, item: object) -> Any:
        spilled.append(1)
        return original_put(self, item)

    monkeypatch.setattr(prefetch._SpillFile, "put", put)
    # where reading stood when the last extract ended, and whether the next chunk's reading
    # started after it
    at_extract_end: dict[str, int] = {}
    next_started: list[bool] = [False]
    original_extract, original_read_ahead = Pipeline.extract, loader.ChunkLoader._read_ahead

    def extract(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        info = original_extract(self, *args, **kwargs)
        at_extract_end.update(listed=sim.stats.by_metric["list"], spilled=len(spilled))
        next_started[0] = False
        return info

    def read_ahead(self: loader.ChunkLoader, chunk: Any) -> Any:
        next_started[0] = bool(at_extract_end)  # not the first chunk's, read before any extract
        return original_read_ahead(self, chunk)

    original_load = Pipeline.load
    read_during_load: list[bool | None] = []

    def load(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        if not next_started[0]:  # the last chunk: nothing comes after it
            read_during_load.append(None)
        else:  # the load is held until the next chunk's reading has spilled a page (bounded)
            deadline = time.monotonic() + 30
            while len(spilled) == at_extract_end["spilled"] and time.monotonic() < deadline:
                time.sleep(0.005)
            read_during_load.append(
                sim.stats.by_metric["list"] > at_extract_end["listed"]
                and len(spilled) > at_extract_end["spilled"]
            )
        return original_load(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "extract", extract)
    monkeypatch.setattr(loader.ChunkLoader, "_read_ahead", read_ahead)
    monkeypatch.setattr(Pipeline, "load", load)
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(
            srv.url, "--chunk-events", "1000", "--max-offset", "500", "--page-size", "250"
        )
        assert run_cli(*args) == 0
    chunks = len(read_during_load)
    assert chunks >= 3
    assert read_during_load == [True] * (chunks - 1) + [None]
    assert_warehouse_matches(workspace, sim.events())
    loads = workspace.query(f"select count(*) from {DATASET}._dlt_loads")
    assert loads[0][0] == chunks  # one load per chunk


def _opens_from_another_process(db: Path) -> bool:
    probe = "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True).close()"
    done = subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True, timeout=60)
    return done.returncode == 0


@pytest.mark.parametrize("long_read", [True, False])
def test_the_database_is_let_go_while_a_long_chunk_is_extracted(
    long_read: bool, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync keeps its DuckDB database open across its steps (their connections join it), but
    lets it go while dlt extracts a chunk of LET_GO_FROM_EVENTS or more, most of which is
    reading: another process can open the file then. It takes it back for each load. A small
    chunk keeps it throughout (DuckDB locks the file against other processes)."""
    from dlt.pipeline.pipeline import Pipeline

    monkeypatch.setattr(loader, "LET_GO_FROM_EVENTS", 1 if long_read else 10**9)
    opened: dict[str, list[bool]] = {"extract": [], "load": []}
    for step in opened:
        original = getattr(Pipeline, step)

        def probed(self: Pipeline, *args: Any, _step: str = step, _original: Any = original,
                   **kwargs: Any) -> Any:  # fmt: skip
            opened[_step].append(_opens_from_another_process(workspace.db))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Pipeline, step, probed)
    sim = make_simulator(2_000, days=3, seed=9)
    with SimulatorServer(sim) as srv:
        args = ("--max-offset", "500", "--page-size", "250", "--chunk-events", "700")
        assert run_cli(*workspace.sync_args(srv.url, *args)) == 0
    chunks = len(opened["extract"])
    assert chunks >= 3
    assert opened == {"extract": [long_read] * chunks, "load": [False] * chunks}
    assert_warehouse_matches(workspace, sim.events())


def test_a_sync_waits_to_take_its_database_back_from_another_process(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process that opened the file while a chunk was read is waited for (bounded), and
    the chunk is loaded once it lets go."""
    from dlt.pipeline.pipeline import Pipeline

    monkeypatch.setattr(loader, "LET_GO_FROM_EVENTS", 1)
    original_extract = Pipeline.extract
    holders: list[subprocess.Popen[bytes]] = []

    def extract(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        result = original_extract(self, *args, **kwargs)
        if not holders:  # another program opens the file as the first read ends, for ~1.5 s
            hold = (
                "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print(1, flush=True);"
                " time.sleep(1.5)"
            )
            proc = subprocess.Popen(
                [sys.executable, "-c", hold, str(workspace.db)], stdout=subprocess.PIPE
            )
            holders.append(proc)
            assert proc.stdout is not None and proc.stdout.readline() == b"1\n"
        return result

    monkeypatch.setattr(Pipeline, "extract", extract)
    sim = make_simulator(1_000, days=3, seed=4)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
    assert holders and holders[0].wait(timeout=30) == 0
    assert_warehouse_matches(workspace, sim.events())
