"""Whatever a kill can leave in dlt's working dir, the next run heals: package folders gone
(dlt's own wipe of its working dir interrupted), an empty `normalize/`, stray temp files, a
package folder cut short. Each case: a good sync, the damage, new events, another sync that
succeeds with exactly the service's ids, each once."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tfy_audit.simulator import SimulatorServer, make_event

from tests.conftest import (
    SERVICE_CLOCK_AHEAD,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
)


def _rm(*parts: str) -> Callable[[Path], None]:
    def damage(working: Path) -> None:
        shutil.rmtree(working.joinpath(*parts))

    return damage


def _empty_normalize(working: Path) -> None:
    shutil.rmtree(working / "normalize")
    (working / "normalize").mkdir()


def _stray(*parts: str) -> Callable[[Path], None]:
    def damage(working: Path) -> None:
        folder = working.joinpath(*parts)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tmpa8f3k2.tmp").write_bytes(b"\x00partial")

    return damage


def _cut_package(*parts: str) -> Callable[[Path], None]:
    """A package folder with no schema: its files never written, or half deleted."""

    def damage(working: Path) -> None:
        package = working.joinpath(*parts, "1796000000.123456")
        (package / "new_jobs").mkdir(parents=True)
        (package / "new_jobs" / "audit_logs.0a1b2c.0.parquet").write_bytes(b"PAR")

    return damage


DAMAGE = {
    "no load/normalized": _rm("load", "normalized"),
    "no load/new": _rm("load", "new"),
    "no load/loaded": _rm("load", "loaded"),
    "no load": _rm("load"),
    "empty normalize/": _empty_normalize,
    "no normalize/extracted": _rm("normalize", "extracted"),
    "stray file in load/normalized": _stray("load", "normalized"),
    "stray file in normalize/extracted": _stray("normalize", "extracted"),
    # dlt writes its state and schemas atomically: a kill leaves the temporary file
    "stray file in the working dir": _stray(),
    "stray file in schemas/": _stray("schemas"),
    "package cut short in normalize/extracted": _cut_package("normalize", "extracted"),
    "package cut short in load/normalized": _cut_package("load", "normalized"),
    "package cut short in load/new": _cut_package("load", "new"),
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_the_next_run_heals_the_working_dir(
    damage: str, workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    # the service's clock ahead: the second sync reads the events stamped before it starts
    sim = make_simulator(300, days=2, seed=41, clock_offset_seconds=SERVICE_CLOCK_AHEAD)
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        DAMAGE[damage](workspace.pipelines_dir / "tfy_audit")
        at = datetime.now(UTC)  # after the first sync's end: our clock when it started
        sim.add_events(make_event(random.Random(f"late{i}"), at) for i in range(3))
        capfd.readouterr()
        assert run_cli(*workspace.sync_args(srv.url)) == 0
        logged = capfd.readouterr().err
    assert_warehouse_matches(workspace, sim.events())
    workspace.assert_unique()
    if damage.startswith("package cut short"):
        # set aside with its working dir, never deleted, and said so
        kept = list((workspace.pipelines_dir / ".tfy_audit.set_aside").rglob("*.parquet"))
        assert [p.name for p in kept] == ["audit_logs.0a1b2c.0.parquet"]
        (line,) = [line for line in logged.splitlines() if "1796000000.123456" in line]
        assert "WARNING" in line and "set aside in" in line, line
