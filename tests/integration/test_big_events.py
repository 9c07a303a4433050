"""Large events: an 8 MB string, a page of 16 KB manifests, and an event of 16 MB load with the
defaults (DuckDB's memory limit follows the process's memory, with a floor that holds the
largest row the body cap admits)."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, make_event
from tfy_audit.simulator.history import generate_history
from tfy_audit.simulator.odd import _manifest_yaml

from tests.conftest import API_KEY, DATASET, NOW, Workspace, assert_warehouse_matches, run_cli

MB = 1024 * 1024


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
