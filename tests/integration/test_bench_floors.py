"""The benchmark's yardsticks read every event the simulator holds: a floor that missed pages
would flatter nothing but make every ratio against it a lie."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
from tfy_audit._service.leaves import jsonpath_leaves
from tfy_audit.simulator import SimulatorServer

from bench.raw_floor import run_floor
from bench.run import Contender, evaluate
from bench.store_floor import run_store_floor
from tests.conftest import API_KEY, make_simulator


def test_the_floors_read_and_store_every_event_of_the_simulator(tmp_path: Path) -> None:
    sim = make_simulator(2_500, days=3, max_offset=None)
    events = sim.events()
    expected_ids = {e["id"] for e in events}
    expected_leaves = _leaf_keys(events)
    with SimulatorServer(sim) as server:
        raw = run_floor(server.url, API_KEY, concurrency=4)
        db = tmp_path / "floor.duckdb"
        stored = run_store_floor(server.url, API_KEY, 4, str(db))

    assert (raw["total"], raw["pages"], raw["requests"]) == (2_500, 3, 4)
    assert stored["total"] == stored["rows"] == 2_500
    with duckdb.connect(str(db), read_only=True) as con:
        ids = {r[0] for r in con.execute("select id from audit_logs").fetchall()}
        leaves = con.execute("select audit_log_id, path from audit_log_metadata").fetchall()
    assert ids == expected_ids
    assert set(leaves) == expected_leaves
    assert len(leaves) == stored["leaves"] == len(expected_leaves)


def _leaf_keys(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(event id, path) of every metadata leaf, as tfy-audit's own tables hold them (the leaf
    walker has its own tests in test_rows.py)."""
    return {
        (e["id"], path)
        for e in events
        if e.get("metaData") is not None
        for path, _, _ in jsonpath_leaves(e["metaData"])
    }


def _contender(key: str, seconds: float, rows: int = 100) -> Contender:
    c = Contender(key, key, seconds=seconds, rows=rows, cpu_seconds=seconds)
    c.rss = {"max_rss_single_process_mib": 100.0}
    return c


def test_the_store_floor_ratios_are_reported_beside_the_targets() -> None:
    contenders = {
        "a": _contender("a", 6.0),
        "a2": _contender("a2", 1.0, rows=0),
        "b": _contender("b", 120.0),
        "c": _contender("c", 1.0),
        "d": _contender("d", 4.0),
    }
    contenders["a2"].detail["requests"] = 3
    contenders["a"].detail.update(distinct_ids_after_rerun=100, table_rows_after_rerun=100)
    contenders["b"].detail["distinct_ids"] = 100
    targets, warnings, ratios = evaluate(contenders, 100, cpus=2)
    assert ratios["time_d_over_c"] == 4.0
    assert ratios["time_a_over_d"] == 1.5
    assert {t.name: t.verdict for t in targets}["time_a_over_c"] == "MISS"
    assert warnings == []

    contenders["d"].ok = False
    _, warnings, ratios = evaluate(contenders, 100, cpus=2)
    assert ratios["time_d_over_c"] is None and ratios["time_a_over_d"] is None
    assert warnings == ["d FAILED"]


def test_every_target_the_bench_sets_has_a_line() -> None:
    """`make bench` prints each target it sets; one without a label crashed the whole run."""
    from bench.run import (
        TARGET_HISTORY_100K_SECONDS,
        Target,
        _target_lines,
        detection_target,
        evaluate,
    )

    contenders = {k: _contender(k, 1.0) for k in ("a", "a2", "b", "c", "d")}
    targets, _, _ = evaluate(contenders, 100, cpus=2)
    targets.append(Target("simulator_history_100k_s", 1.5, TARGET_HISTORY_100K_SECONDS, "<="))
    # a pass over 20,000 events in 0.5s is 2.5s per 100,000; a failed pass has no figure
    targets.append(detection_target({"seconds": 0.5, "rules": 17, "alerts": 3}, 20_000))
    assert detection_target({"error": "no database"}, 20_000).verdict == "SKIP"
    lines = _target_lines(targets)
    assert any("simulator history of 100,000 events: 1.50s" in line for line in lines), lines
    detection = "PASS  all detection rules, one pass per 100,000 events: 2.50s (target <= 5s)"
    assert detection in lines, lines
    assert len([line for line in lines if line.startswith(("PASS", "MISS", "SKIP"))]) == len(
        targets
    )
