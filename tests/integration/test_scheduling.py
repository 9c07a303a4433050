"""The scheduling recipes in `examples/`.

The Dagster definitions run in-process against the simulator into a temporary DuckDB. Airflow is
not installed, so the Airflow DAG's data path (the source called with each month's `start` and
`end`, in order, as `PipelineTasksGroup` would) runs through dlt alone. The crontab and the
GitHub Actions workflow are checked for shape, and every `tfy-audit` command line in them is
parsed by the real argument parser.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import re
import shlex
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import dlt
import pytest
import yaml
from tfy_audit._cli.main import build_parser
from tfy_audit._core.settings import DEFAULT_LOOKBACK, HISTORY_START
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._source.state import covered_until, stream_state
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import (
    DATASET,
    NOW,
    REPO,
    Workspace,
    assert_warehouse_matches,
    events_between,
    make_simulator,
)

EXAMPLES = REPO / "examples"
DAY = timedelta(days=1)


def load_example(relative: str) -> ModuleType:
    path = EXAMPLES / relative
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dagster_example() -> ModuleType:
    return load_example("dagster/tfy_audit_dagster.py")


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def events_before(sim: Simulator, end: datetime) -> list[dict[str, Any]]:
    return events_between(sim, HISTORY_START, end)


# -- Dagster ---------------------------------------------------------------------------------


def _dagster_setup(
    example: ModuleType, workspace: Workspace, url: str, first_day: date
) -> tuple[Any, Any, Any]:
    resource = example.TfyAuditResource(
        host=url, db=str(workspace.db), pipelines_dir=str(workspace.pipelines_dir)
    )
    defs = example.build_definitions(first_day, resource)
    return (
        defs,
        defs.resolve_assets_def("truefoundry_audit_days"),
        defs.resolve_job_def("tfy_audit_incremental"),
    )


def _materialize_day(asset: Any, day: date) -> dict[str, Any]:
    import dagster as dg

    result = dg.materialize([asset], partition_key=day.isoformat())
    assert result.success
    (materialization,) = result.asset_materializations_for_node("truefoundry_audit_days")
    return {k: v.value for k, v in materialization.metadata.items()}


def _incremental(job: Any) -> dict[str, Any]:
    result = job.execute_in_process()
    assert result.success
    (output,) = [e for e in result.all_events if e.is_successful_output]
    return {k: v.value for k, v in output.step_output_data.metadata.items()}


@pytest.mark.timeout(120)
def test_dagster_day_partitions_load_exactly_their_days_then_the_job_loads_the_rest(
    dagster_example: ModuleType, workspace: Workspace
) -> None:
    sim = make_simulator(1_500, days=10)
    first_day = (NOW - timedelta(days=12)).date()  # before every event
    day_a, day_b = (NOW - timedelta(days=6)).date(), (NOW - timedelta(days=3)).date()
    with SimulatorServer(sim) as srv:
        _, days, incremental = _dagster_setup(dagster_example, workspace, srv.url, first_day)

        meta = _materialize_day(days, day_a)
        expected = events_between(sim, midnight(day_a), midnight(day_a) + DAY)
        assert expected, "the day should hold events"
        assert_warehouse_matches(workspace, expected)
        assert meta["events_read"] == len(expected)
        # a day after a gap loads its rows but vouches for nothing before it
        assert meta["covered_until"] == ""

        _materialize_day(days, day_b)
        expected += events_between(sim, midnight(day_b), midnight(day_b) + DAY)
        assert_warehouse_matches(workspace, expected)

        # re-running a day is harmless: merged on the event id
        _materialize_day(days, day_a)
        assert_warehouse_matches(workspace, expected)

        meta = _incremental(incremental)
        assert_warehouse_matches(workspace, sim.events())
        # with no mark yet, the incremental job read from the start of history
        assert meta["range"].startswith(HISTORY_START.isoformat())
        assert meta["covered_until"]


@pytest.mark.timeout(120)
def test_dagster_partitions_in_order_carry_the_mark_to_the_incremental_job(
    dagster_example: ModuleType, workspace: Workspace
) -> None:
    sim = make_simulator(600, days=4)
    first_day = (NOW - timedelta(days=3)).date()  # events exist before it too
    with SimulatorServer(sim) as srv:
        _, days, incremental = _dagster_setup(dagster_example, workspace, srv.url, first_day)

        # the first partition reaches back to the start of history and sets the mark
        meta = _materialize_day(days, first_day)
        assert_warehouse_matches(workspace, events_before(sim, midnight(first_day) + DAY))
        assert meta["range"].startswith(HISTORY_START.isoformat())
        assert meta["covered_until"] == (midnight(first_day) + DAY).isoformat()

        second = first_day + DAY
        meta = _materialize_day(days, second)
        assert_warehouse_matches(workspace, events_before(sim, midnight(second) + DAY))
        assert meta["covered_until"] == (midnight(second) + DAY).isoformat()

        # so the incremental job starts where the backfill ended, not at the start of history
        meta = _incremental(incremental)
        assert_warehouse_matches(workspace, sim.events())
        start = midnight(second) + DAY - DEFAULT_LOOKBACK
        assert meta["range"].startswith(start.isoformat())


def test_dagster_definitions_load_with_a_ten_minute_schedule(
    dagster_example: ModuleType,
) -> None:
    import dagster as dg

    defs = dagster_example.defs
    dg.Definitions.validate_loadable(defs)
    schedule = defs.resolve_schedule_def("tfy_audit_every_10_minutes")
    assert schedule.cron_schedule == "*/10 * * * *"
    assert schedule.job_name == "tfy_audit_incremental"
    assert schedule.execution_timezone == "UTC"
    partitions = defs.resolve_assets_def("truefoundry_audit_days").partitions_def
    assert isinstance(partitions, dg.DailyPartitionsDefinition)
    assert partitions.timezone == "UTC"


# -- Airflow (without Airflow) ---------------------------------------------------------------


def test_airflow_example_imports_without_airflow_and_plans_contiguous_months() -> None:
    example = load_example("airflow/tfy_audit_dag.py")
    assert importlib.util.find_spec("airflow") is None
    assert not hasattr(example, "incremental_dag")  # no DAG without Airflow, and no error

    ranges = example.month_ranges(
        datetime(2024, 11, 1, tzinfo=UTC), datetime(2025, 2, 10, tzinfo=UTC)
    )
    assert [label for label, _, _ in ranges] == ["2024_11", "2024_12", "2025_01", "2025_02"]
    bounds = [(datetime.fromisoformat(lo), datetime.fromisoformat(hi)) for _, lo, hi in ranges]
    assert bounds[0][0] == HISTORY_START
    assert bounds[-1][1] == datetime(2025, 2, 10, tzinfo=UTC)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))


@pytest.mark.timeout(120)
def test_airflow_backfill_months_in_order_then_incremental_load_exactly_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What each `PipelineTasksGroup` task does: `pipeline.run(data())` with a fresh pipeline
    object of the same name, the state restored from the destination."""
    example = load_example("airflow/tfy_audit_dag.py")
    from tfy_audit import truefoundry_audit

    sim = make_simulator(1_200, days=45)
    workspace = Workspace(tmp_path / "audit.duckdb", tmp_path / "pipelines")
    ranges = example.month_ranges(NOW - timedelta(days=40), NOW + timedelta(seconds=1))
    assert len(ranges) >= 2

    def run(data: Any) -> dict[str, Any]:
        pipeline = dlt.pipeline(
            pipeline_name=example.PIPELINE_NAME,
            destination=dlt.destinations.duckdb(str(workspace.db)),
            dataset_name=DATASET,
            pipelines_dir=str(workspace.pipelines_dir / "fresh" / str(len(seen_runs))),
        )
        pipeline.run(data(), loader_file_format="parquet")
        seen_runs.append(pipeline.pipeline_name)
        return stream_state(dict(pipeline.state["sources"]["truefoundry_audit"]), AuditLogFilters())

    seen_runs: list[str] = []
    with SimulatorServer(sim) as srv:
        monkeypatch.setenv("TFY_HOST", srv.url)
        for _, lower, upper in ranges:
            entry = run(functools.partial(truefoundry_audit, start=lower, end=upper))
            assert covered_until(entry) == datetime.fromisoformat(upper)
            assert_warehouse_matches(workspace, events_before(sim, datetime.fromisoformat(upper)))
        sim.reset_stats()
        run(truefoundry_audit)
    assert_warehouse_matches(workspace, sim.events())
    assert sim.stats.total <= 5  # the incremental run read only the tail after the backfill


# -- crontab and GitHub Actions --------------------------------------------------------------

CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\d+(-\d+)?)(/\d+)?)*$")


def assert_cron_expression(expr: str) -> None:
    fields = expr.split()
    assert len(fields) == 5, f"{expr!r} is not five cron fields"
    for field in fields:
        assert CRON_FIELD.match(field), f"{field!r} in {expr!r} is not a cron field"


def tfy_audit_commands(text: str) -> list[list[str]]:
    """Every `tfy-audit ...` invocation in a shell command line, as argv after `tfy-audit`."""
    commands: list[list[str]] = []
    for part in re.split(r"&&|\|\||;", text):
        words = shlex.split(part, comments=False)
        for i, word in enumerate(words):
            if word == "tfy-audit" or word.endswith("bin/tfy-audit"):
                argv = []
                for arg in words[i + 1 :]:
                    if arg.startswith((">", "2>", "<", "|")):
                        break
                    argv.append(arg)
                commands.append(argv)
    return commands


def parses(argv: list[str]) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's way to say no
        pytest.fail(f"tfy-audit {' '.join(argv)} does not parse (exit {exc.code})")


def test_crontab_runs_sync_every_ten_minutes_with_its_own_lock() -> None:
    text = (EXAMPLES / "cron" / "tfy-audit.cron").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    env = [ln for ln in lines if re.match(r"^[A-Z_]+=", ln)]
    jobs = [ln for ln in lines if ln not in env]
    assert len(jobs) == 1
    fields = jobs[0].split(None, 5)
    assert_cron_expression(" ".join(fields[:5]))
    assert fields[:5] == ["*/10", "*", "*", "*", "*"]
    command = fields[5]
    assert "%" not in command, "cron turns % into a newline"
    assert "flock" not in command
    assert re.search(r"\. \S+\.env", command), "the secrets come from an env file"
    assert re.search(r">> ?\S+\.log 2>&1", command), "output goes to a log file"
    (argv,) = tfy_audit_commands(command)
    args = parses(argv)
    assert args.command == "sync"
    assert args.json and args.no_progress and args.wait > 0


def test_github_workflow_is_valid_and_runs_sync_verify_report() -> None:
    path = EXAMPLES / "github-actions" / "tfy-audit.yml"
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 (PyYAML) reads the key `on` as True
    triggers = workflow.get("on", workflow.get(True))
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    (cron,) = [entry["cron"] for entry in triggers["schedule"]]
    assert_cron_expression(cron)
    assert cron.split()[1:] == ["*", "*", "*", "*"], "hourly"
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["concurrency"]["group"]

    (job,) = workflow["jobs"].values()
    for secret in ("TFY_HOST", "TFY_API_KEY", "DESTINATION__POSTGRES__CREDENTIALS"):
        assert job["env"][secret] == f"${{{{ secrets.{secret} }}}}"
    steps = job["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/checkout", "astral-sh/setup-uv", "actions/upload-artifact"]
    runs = [s["run"] for s in steps if "run" in s]
    assert any(r.startswith("uv sync --frozen") for r in runs)

    commands = [parses(argv) for r in runs for argv in tfy_audit_commands(r)]
    assert [c.command for c in commands] == ["sync", "verify", "report"]
    assert all(c.destination == "postgres" for c in commands)
    assert len({(c.dataset, c.pipelines_dir) for c in commands}) == 1
    report = commands[-1]
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["with"]["path"] == report.out
