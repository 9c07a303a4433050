"""One dataset, one identity: a sync under another pipeline name, or with its working dir lost,
continues from what the dataset holds, and never appends an event the dataset already has.

Each destination is loaded four times: by the default pipeline (twice), by `--pipeline-name
other`, and by a third name with every working dir deleted first; new events arrive between the
runs. After each run every table holds each key once, and the ids are exactly the service's."""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tfy_audit.simulator import Simulator, SimulatorServer, make_event

from tests.conftest import (
    DATASET,
    SERVICE_CLOCK_AHEAD,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
)
from tests.integration import test_destinations
from tests.integration.test_destinations import UNIQUE_KEYS, cli_json, parquet, postgres, query

postgres_dataset = test_destinations.postgres_dataset  # the fixture, shared


@dataclass
class Target:
    args: tuple[str, ...]
    pipelines_dir: Path
    ids: Callable[[], set[str]]
    keys: Callable[[str, tuple[str, ...]], tuple[int, int]]  # rows and distinct keys of a table


def _duckdb(tmp_path: Path) -> Target:
    ws = Workspace(tmp_path / "audit.duckdb", tmp_path / "pipelines")

    def keys(table: str, key: tuple[str, ...]) -> tuple[int, int]:
        cols = ", ".join(key)
        ((total, distinct),) = ws.query(
            f"select count(*), count(distinct ({cols})) from {DATASET}.{table}"
        )
        return int(total), int(distinct)

    return Target(("--db", str(ws.db)), ws.pipelines_dir, ws.ids, keys)


def _postgres(tmp_path: Path, dataset: str) -> Target:
    def ids() -> set[str]:
        with postgres() as cur:
            cur.execute(f'SELECT id FROM "{dataset}".audit_logs')
            return {r[0] for r in cur.fetchall()}

    def keys(table: str, key: tuple[str, ...]) -> tuple[int, int]:
        with postgres() as cur:
            cur.execute(
                f'SELECT count(*), count(DISTINCT ({", ".join(key)})) FROM "{dataset}".{table}'
            )
            total, distinct = cur.fetchone()
        return int(total), int(distinct)

    args = ("--destination", "postgres", "--dataset", dataset)
    return Target(args, tmp_path / "pipelines", ids, keys)


def _filesystem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Target:
    bucket, dataset = tmp_path / "bucket", "tfy_identity"
    monkeypatch.setenv("DESTINATION__FILESYSTEM__BUCKET_URL", str(bucket))

    def ids() -> set[str]:
        return {r[0] for r in query(f"SELECT id FROM {parquet(bucket, dataset, 'audit_logs')}")}

    def keys(table: str, key: tuple[str, ...]) -> tuple[int, int]:
        # every file, as written: an append-only dataset never holds an event twice; a
        # subject's row is appended by each run that sees it (the newest is read), so its
        # key is the subject and the load
        if table == "subjects":
            key = (*key, "filename")
        ((total, distinct),) = query(
            f"SELECT count(*), count(DISTINCT ({', '.join(key)})) "
            f"FROM {parquet(bucket, dataset, table)}"
        )
        return int(total), int(distinct)

    args = ("--destination", "filesystem", "--dataset", dataset)
    return Target(args, tmp_path / "pipelines", ids, keys)


@pytest.fixture(
    params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres), "filesystem"]
)
def target(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Target:
    if request.param == "postgres":
        return _postgres(tmp_path, request.getfixturevalue("postgres_dataset"))
    if request.param == "filesystem":
        monkeypatch.setenv("RUNTIME__LOG_LEVEL", "ERROR")  # dlt warns about the append fallback
        return _filesystem(tmp_path, monkeypatch)
    return _duckdb(tmp_path)


def _arrive(sim: Simulator, n: int, seed: str) -> set[str]:
    """`n` events created just now, after every earlier run's end, and read by the next: the
    simulator's clock is ahead of ours (SERVICE_CLOCK_AHEAD), so a run ends at our `now`."""
    at = datetime.now(UTC)
    return set(sim.add_events(make_event(random.Random(f"{seed}{i}"), at) for i in range(n)))


def _assert_each_key_once(target: Target, sim: Simulator) -> None:
    for table, key in UNIQUE_KEYS.items():
        total, distinct = target.keys(table, key)
        assert total == distinct, f"{table} holds duplicates: {total} rows, {distinct} keys"
    assert target.ids() == sim.ids()


def test_another_pipeline_name_or_a_lost_working_dir_continues_the_dataset(
    target: Target,
) -> None:
    sim = make_simulator(2_000, days=5, seed=31, clock_offset_seconds=SERVICE_CLOCK_AHEAD)
    with SimulatorServer(sim) as srv:

        def sync(*extra: str) -> dict[str, Any]:
            return cli_json(
                "sync", "--host", srv.url, *target.args,
                "--pipelines-dir", str(target.pipelines_dir), "--no-progress", *extra,
            )  # fmt: skip

        first = sync()
        assert first["continued_from"] is None and first["events_new"] == 2_000
        assert sync()["events_new"] == 0
        _assert_each_key_once(target, sim)

        _arrive(sim, 3, "a")
        other = sync("--pipeline-name", "other")
        assert other["continued_from"] == "tfy_audit"
        assert other["events_new"] == 3
        # it starts from the mark the dataset holds, not from the start of history
        assert datetime.fromisoformat(other["start"]) > datetime.now(UTC) - timedelta(hours=1)
        _assert_each_key_once(target, sim)

        # a scheduler's working dir lost, the job re-created under yet another name
        shutil.rmtree(target.pipelines_dir)
        _arrive(sim, 2, "b")
        third = sync("--pipeline-name", "third")
        assert third["continued_from"] == "other"
        assert third["events_new"] == 2
        _assert_each_key_once(target, sim)

        # the working dir lost again, the default name: dlt restores its own state
        shutil.rmtree(target.pipelines_dir)
        again = sync()
        assert again["events_new"] == 0
        # the first pipeline name, after the others: its older state must not append again
        _arrive(sim, 2, "c")
        assert sync()["events_new"] == 2
        _assert_each_key_once(target, sim)


def test_the_summary_says_whose_mark_it_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import run_cli

    sim = make_simulator(300, days=2, seed=32)
    ws = Workspace(tmp_path / "audit.duckdb", tmp_path / "pipelines")
    with SimulatorServer(sim) as srv:
        assert run_cli(*ws.sync_args(srv.url)) == 0
        capsys.readouterr()
        assert run_cli(*ws.sync_args(srv.url, "--pipeline-name", "other")) == 0
    out = capsys.readouterr().out
    assert "  continuing the dataset's mark from pipeline 'tfy_audit'" in out.splitlines()
    assert "  new events: 0" in out
    assert_warehouse_matches(ws, sim.events())
    ws.assert_unique()
