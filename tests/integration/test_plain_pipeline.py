"""`pipelines/truefoundry_audit_pipeline.py`, the plain dlt script, run as a user runs it: from
its folder, configured through `.dlt/` or TFY_HOST/TFY_API_KEY, beside a `tfy-audit sync`."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tfy_audit.simulator import SimulatorServer, make_event

from tests.conftest import (
    API_KEY,
    REPO,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
)

SCRIPT = REPO / "pipelines" / "truefoundry_audit_pipeline.py"


def run_script(folder: Path, **env: str) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("TFY_HOST", "TFY_API_KEY")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=folder,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_plain_script_loads_every_event_exactly_and_keeps_its_own_state(
    tmp_path: Path,
) -> None:
    sim = make_simulator(1_500, days=5, seed=21)
    script = Workspace(
        tmp_path / "truefoundry_audit_pipeline.duckdb", tmp_path / ".truefoundry_audit_pipeline"
    )
    with SimulatorServer(sim) as srv:
        # host and key from dlt's config files in the folder it runs from
        (tmp_path / ".dlt").mkdir()
        (tmp_path / ".dlt" / "config.toml").write_text(
            f'[sources.truefoundry_audit]\nhost = "{srv.url}"\n'
        )
        (tmp_path / ".dlt" / "secrets.toml").write_text(
            f'[sources.truefoundry_audit]\napi_key = "{API_KEY}"\n'
        )
        run_script(tmp_path)
        assert_warehouse_matches(script, sim.events())
        assert (script.pipelines_dir / "truefoundry_audit_pipeline").is_dir()

        # then from TrueFoundry's own variables, continuing from its high-water mark
        for name in ("config.toml", "secrets.toml"):
            (tmp_path / ".dlt" / name).unlink()
        rng = random.Random(5)
        sim.add_events(
            make_event(rng, datetime.now(UTC) - timedelta(seconds=30 - i)) for i in range(20)
        )
        sim.reset_stats()
        run_script(tmp_path, TFY_HOST=srv.url, TFY_API_KEY=API_KEY)
        assert_warehouse_matches(script, sim.events())
        assert sim.stats.total <= 5  # counted and read the tail only

        # `tfy-audit sync` beside it: its own pipeline, working directory and database
        cli = Workspace(tmp_path / "audit.duckdb", tmp_path / ".audit.duckdb.pipelines")
        args = ["sync", "--host", srv.url, "--db", str(cli.db), "--no-progress"]
        assert run_cli(*args) == 0
    assert_warehouse_matches(cli, sim.events())
    assert (cli.pipelines_dir / "tfy_audit").is_dir()
    assert not (script.pipelines_dir / "tfy_audit").exists()
    assert_warehouse_matches(script, sim.events())


def test_the_plain_script_loses_no_event_of_a_service_clock_15_minutes_behind(
    tmp_path: Path,
) -> None:
    from tfy_audit.simulator import Simulator, SimulatorConfig, generate_history

    behind = -900
    service_now = datetime.now(UTC) + timedelta(seconds=behind)
    sim = Simulator(
        SimulatorConfig(api_key=API_KEY, clock_offset_seconds=behind),
        generate_history(300, days=2, seed=8, end=service_now - timedelta(minutes=2)),
    )
    script = Workspace(
        tmp_path / "truefoundry_audit_pipeline.duckdb", tmp_path / ".truefoundry_audit_pipeline"
    )
    with SimulatorServer(sim) as srv:
        run_script(tmp_path, TFY_HOST=srv.url, TFY_API_KEY=API_KEY)
        history = sim.ids()
        assert script.ids() == history
        rng = random.Random(9)
        # stamped three seconds before the run by the service's clock (a run reads to a second
        # before its `Date`: these are in it whatever the timing)
        stamped = sim.now() - timedelta(seconds=3)
        new = sim.add_events(make_event(rng, stamped) for _ in range(3))
        run_script(tmp_path, TFY_HOST=srv.url, TFY_API_KEY=API_KEY)
    assert script.ids() == history | set(new)
    assert_warehouse_matches(script, sim.events())
