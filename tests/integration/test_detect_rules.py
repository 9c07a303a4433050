"""The rule pack over a planted history: one sync of a quiet simulated history with every
rule's pattern planted (simulator/plants.py) into DuckDB, one detection pass, then one test per
rule asserting its exact alerts (dedup key, event ids); the same history without the plants
gives none; the pack gives the same alerts on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit._core.options import DestinationOptions
from tfy_audit._detect.rules import builtin_rules
from tfy_audit._detect.runner import detect
from tfy_audit._warehouse.destination import make_pipeline
from tfy_audit._warehouse.view_params import ViewParams
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer
from tfy_audit.simulator.plants import Plant, plant_patterns, quiet_history

from tests.conftest import API_KEY, isolate_env, run_cli

pytestmark = pytest.mark.xdist_group("test_detect_rules")

# A fixed past week, so the quiet history and the plants are the same on every run.
END = datetime(2026, 11, 5, tzinfo=UTC)  # a Thursday
DAY = END - timedelta(days=1)  # the plants' day, a Wednesday
START = END - timedelta(days=4)
PARAMS = ViewParams(timezone="Europe/Berlin", work_start=8, work_end=19)
PLANTS = plant_patterns(DAY)
RULE_IDS = sorted(r.id for r in builtin_rules())


def _quiet() -> list[dict[str, Any]]:
    return quiet_history(3000, days=3, end=END, seed=5)


def _sync(tmp: Path, events: list[dict[str, Any]], **target: Any) -> DestinationOptions:
    sim = Simulator(SimulatorConfig(api_key=API_KEY), events)
    options = DestinationOptions(
        db=str(tmp / "audit.duckdb"), pipelines_dir=str(tmp / "pipelines"), **target
    )
    with SimulatorServer(sim) as server:
        since = (START - timedelta(days=30)).isoformat()
        args = ["sync", "--host", server.url, "--no-progress", "--since", since,
                "--pipelines-dir", options.pipelines_dir or "", "--workers", "0"]  # fmt: skip
        if options.destination == "duckdb":
            args += ["--db", options.db]
        else:
            args += ["--destination", options.destination, "--dataset", options.dataset]
        assert run_cli(*args) == 0
    return options


def _alerts(options: DestinationOptions) -> dict[str, set[tuple[str, tuple[str, ...]]]]:
    """Each rule's alerts, found by a detection pass, as read back from the alerts table."""
    pipeline = make_pipeline(options)
    summary = detect(pipeline, builtin_rules(), START, END, params=PARAMS)
    assert summary.problems == [] and summary.rules_run == len(RULE_IDS)
    out: dict[str, set[tuple[str, tuple[str, ...]]]] = {r: set() for r in RULE_IDS}
    with pipeline.sql_client() as client:
        rows = client.execute_sql(
            "select rule_id, dedup_key, event_ids from "
            f"{client.make_qualified_table_name('alerts')}"
        )
    for rule_id, key, ids in rows:
        out[rule_id].add((key, tuple(json.loads(ids))))
    return out


def _expected(plant: Plant) -> tuple[str, tuple[str, ...]]:
    return json.dumps(plant.dedup_key, sort_keys=True), tuple(sorted(plant.alert_event_ids))


@pytest.fixture(scope="module")
def planted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, set[tuple[str, tuple[str, ...]]]]]:
    with pytest.MonkeyPatch.context() as mp:
        isolate_env(mp, tmp_path_factory)
        events = _quiet() + [e for p in PLANTS for e in p.events]
        yield _alerts(_sync(tmp_path_factory.mktemp("planted"), events))


def test_every_rule_has_a_plant() -> None:
    assert sorted(p.rule_id for p in PLANTS) == RULE_IDS
    assert len(RULE_IDS) >= 15


@pytest.mark.parametrize("plant", PLANTS, ids=[p.rule_id for p in PLANTS])
def test_rule_finds_exactly_its_plant(
    planted: dict[str, set[tuple[str, tuple[str, ...]]]], plant: Plant
) -> None:
    assert planted[plant.rule_id] == {_expected(plant)}


def test_quiet_history_gives_no_alerts(tmp_path: Path) -> None:
    found = _alerts(_sync(tmp_path, _quiet()))
    assert {rule: alerts for rule, alerts in found.items() if alerts} == {}


def test_sync_detect_resumes_where_the_last_pass_ended(tmp_path: Path) -> None:
    """Runs that loaded events without judging them (a failed or killed run, or one without
    --detect) leave them to the next `sync --detect`: its pass starts where the last one
    ended, not at its own start, and finds the plants those runs loaded."""
    from tfy_audit._detect.runner import judged_from

    events = _quiet() + [e for p in PLANTS for e in p.events]
    pipeline = make_pipeline(_sync(tmp_path, events))
    own_start = END - timedelta(hours=1)
    assert judged_from(pipeline, own_start) == own_start  # no pass yet: the run's own range
    first = detect(pipeline, builtin_rules(), START, DAY, params=PARAMS, after_sync=True)
    assert first.found == []  # the plants are all on DAY
    # the runs after it loaded DAY's plants, then a pass ran with its own range only
    resumed = judged_from(pipeline, own_start)
    assert resumed == DAY
    second = detect(pipeline, builtin_rules(), resumed, END, params=PARAMS, after_sync=True)
    found = {(a["rule_id"], json.dumps(a["dedup_key"], sort_keys=True)) for a in second.found}
    assert found == {(p.rule_id, _expected(p)[0]) for p in PLANTS}
    assert judged_from(pipeline, own_start) == own_start  # judged up to END now


def test_a_short_trail_calls_no_subject_new(tmp_path: Path) -> None:
    """A first sync of a few days' history: every subject is first seen in it, so the
    first-seen rule needs 7 days of trail before an event (the plant's stranger alone, with
    the quiet days before it, is not enough) and stays silent rather than flag them all."""
    (stranger,) = [p for p in PLANTS if p.rule_id == "tfy-new-subject-off-hours"]
    found = _alerts(_sync(tmp_path, _quiet() + stranger.events))
    assert found["tfy-new-subject-off-hours"] == set()


@pytest.mark.postgres
def test_the_pack_finds_the_same_alerts_on_postgres(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    planted: dict[str, set[tuple[str, tuple[str, ...]]]],
) -> None:
    import psycopg2

    dataset = f"detect_{uuid.uuid4().hex[:10]}"
    url = "postgresql://postgres:x@127.0.0.1:5432/test"
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
    try:
        events = _quiet() + [e for p in PLANTS for e in p.events]
        found = _alerts(_sync(tmp_path, events, destination="postgres", dataset=dataset))
        assert found == planted
        assert found == {r: {_expected(p) for p in PLANTS if p.rule_id == r} for r in RULE_IDS}
    finally:
        with psycopg2.connect(url) as con, con.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
