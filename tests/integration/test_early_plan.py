"""A run whose range does not depend on the sync state is planned while dlt is imported
(early.py): taken when it is the run's plan, planned again when it is not, and its failures
are the sync's own."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipelines.simulator import SimulatorServer, format_ts
from pipelines.truefoundry_audit.early import EarlyPlan, guess_range
from pipelines.truefoundry_audit.options import DestinationOptions, SyncOptions
from pipelines.truefoundry_audit.settings import HISTORY_START
from tests.conftest import (
    NOW,
    Workspace,
    assert_warehouse_matches,
    events_between,
    free_port,
    make_simulator,
    run_cli,
    run_cli_process,
)

END = NOW - timedelta(hours=1)


@pytest.fixture
def takes(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each sync took its early plan; no entry where no early plan was made."""
    taken: list[bool] = []
    real_take = EarlyPlan.take

    def take(self: EarlyPlan, *args: Any, **kwargs: Any) -> Any:
        result = real_take(self, *args, **kwargs)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(EarlyPlan, "take", take)
    return taken


def _sync(workspace: Workspace, url: str, *extra: str) -> None:
    args = ("--max-offset", "500", "--page-size", "250")
    assert run_cli(*workspace.sync_args(url, *args, *extra)) == 0


def test_a_first_run_takes_the_plan_made_while_dlt_was_imported(
    tmp_path: Path, takes: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    early, late = (Workspace(tmp_path / f"{n}.duckdb", tmp_path / n) for n in ("early", "late"))
    sims = [make_simulator(3_000), make_simulator(3_000)]
    with SimulatorServer(sims[0]) as srv:
        _sync(early, srv.url, "--end", format_ts(END))
    assert takes == [True]
    assert_warehouse_matches(early, events_between(sims[0], HISTORY_START, END))

    # the same run planned after dlt is imported makes the same requests: none twice
    monkeypatch.setattr(EarlyPlan, "start", classmethod(lambda cls, options, now: None))
    with SimulatorServer(sims[1]) as srv:
        _sync(late, srv.url, "--end", format_ts(END))
    assert takes == [True]
    assert sims[0].stats.by_metric == sims[1].stats.by_metric
    assert sims[0].stats.by_metric["count"] > 1
    assert _list_requests(sims[0]) == _list_requests(sims[1])


def _list_requests(sim: Any) -> Counter[tuple[str, str, str]]:
    return Counter(
        (r.params["start"], r.params["end"], r.params["offset"])
        for r in sim.request_log
        if r.metric == "list"
    )


def test_a_range_across_the_mark_is_planned_again(workspace: Workspace, takes: list[bool]) -> None:
    sim = make_simulator(3_000)
    mark = NOW - timedelta(days=4)
    with SimulatorServer(sim) as srv:
        _sync(workspace, srv.url, "--end", format_ts(mark))
        # planned on each side of the mark, so not the plan made early
        _sync(workspace, srv.url, "--start", format_ts(mark - timedelta(days=2)))
        # a scheduled run's range starts at the mark, known only from the state: no early plan
        _sync(workspace, srv.url)
    assert takes == [True, False]
    assert_warehouse_matches(workspace, sim.events())


def test_an_early_plan_that_fails_fails_the_sync_with_its_own_message(
    workspace: Workspace, server: SimulatorServer
) -> None:
    proc = run_cli_process(*workspace.sync_args(server.url), env={"TFY_API_KEY": "wrong"})
    assert proc.returncode == 1, proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("tfy-audit: error")]
    assert "rejected the API key (HTTP 401)" in error

    proc = run_cli_process(*workspace.sync_args(f"http://127.0.0.1:{free_port()}"))
    assert proc.returncode == 1, proc.stderr
    (error,) = [line for line in proc.stderr.splitlines() if line.startswith("tfy-audit: error")]
    assert "cannot connect to http://127.0.0.1:" in error


def test_the_range_is_guessed_only_where_the_state_cannot_change_it(tmp_path: Path) -> None:
    now = datetime(2026, 6, 1, 12, 0, 0, 123_456, tzinfo=UTC)
    fresh = DestinationOptions(db=str(tmp_path / "none-yet.duckdb"))
    first = guess_range(SyncOptions(target=fresh), now)
    assert first is not None
    assert (first.start, first.end) == (HISTORY_START, now.replace(microsecond=123_000))

    start = now - timedelta(days=1)
    explicit = guess_range(SyncOptions(target=fresh, start=start), now)
    assert explicit is not None and (explicit.start, explicit.end)[0] == start

    existing = tmp_path / "there.duckdb"
    existing.touch()
    assert guess_range(SyncOptions(target=DestinationOptions(db=str(existing))), now) is None
    postgres = DestinationOptions(destination="postgres")
    assert guess_range(SyncOptions(target=postgres), now) is None
    assert guess_range(SyncOptions(target=postgres, start=start), now) is not None
    # a range the sync refuses is left to the sync to refuse, with its own message
    assert guess_range(SyncOptions(target=fresh, start=now + timedelta(days=1)), now) is None
