"""A service that serves one id twice in a window (and counts it twice): confirmed by a re-read,
recorded once as an anomaly, loaded once; the mark moves on; only the run that found it exits
3; `verify` lists it."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta

import pytest
from tfy_audit.simulator import SimulatorServer, dense_burst
from tfy_audit.simulator.history import make_event

from tests.conftest import DATASET, NOW, Workspace, make_simulator, run_cli, run_cli_captured


def test_an_id_served_twice_is_confirmed_recorded_and_passed(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(3_000, days=10)
    # a recent event, so every later run's lookback reads its window again
    (twin,) = sim.add_events(
        [make_event(random.Random(4), datetime.now(UTC) - timedelta(minutes=3))]
    )
    sim.serve_twice(twin)
    history = sim.ids()
    assert twin in history and len(history) == 3_001
    with SimulatorServer(sim) as srv:
        runs = []
        for _ in range(3):
            sim.reset_stats()
            proc = run_cli_captured(capfd, *workspace.sync_args(srv.url, "--json"))
            runs.append((proc, json.loads(proc.stdout), sim.stats.rows_served))
        verify = run_cli_captured(
            capfd, "verify", "--host", srv.url, "--db", str(workspace.db),
            "--pipelines-dir", str(workspace.pipelines_dir), "--json",
        )  # fmt: skip
        verify_text = run_cli_captured(
            capfd, "verify", "--host", srv.url, "--db", str(workspace.db),
            "--pipelines-dir", str(workspace.pipelines_dir),
        )  # fmt: skip

    (first, doc1, _), (second, doc2, served2), (third, doc3, served3) = runs
    assert [first.returncode, second.returncode, third.returncode] == [3, 0, 0], [
        r[0].stderr for r in runs
    ]
    # the run that found it says so in one line, naming the id and where it is recorded
    lines = [line for line in first.stderr.splitlines() if line.startswith("tfy-audit:")]
    assert len(lines) == 1, first.stderr
    assert twin in lines[0] and "twice" in lines[0] and "event_anomalies" in lines[0]
    assert "`tfy-audit verify` lists them" in lines[0]
    assert doc1["repeated_ids"] == [twin]
    assert doc1["incomplete_windows"] == []
    assert "will show the gap" not in first.stderr
    # later runs are quiet about it (no error, no line of the command's own; the decoder's
    # note of a page holding an id twice is another module's), and read the lookback only
    for later in (second, third):
        assert [line for line in later.stderr.splitlines() if line.startswith("tfy-audit:")] == []
        assert " ERROR " not in later.stderr, later.stderr
    assert doc2["repeated_ids"] == [] and doc3["repeated_ids"] == []
    assert served2 < 100 and served3 < 100
    # the mark moved on each run: to each run's end
    for doc in (doc1, doc2, doc3):
        assert doc["covered_until"] == doc["end"]

    assert workspace.ids() == history
    workspace.assert_unique()
    rows = workspace.query(
        f"select kind, action, event_id, field_path from {DATASET}.event_anomalies"
    )
    assert rows == [("repeated_id", "accepted", twin, "$.id")]

    assert verify.returncode == 0, verify.stderr + verify.stdout
    result = json.loads(verify.stdout)["result"]
    # the day holding it matches: the service's count of it less the recorded second copy
    assert result["differing"] == []
    assert result["repeated_ids"] == [twin]
    assert verify_text.returncode == 0, verify_text.stderr
    assert (
        f"  ids the service serves twice (recorded in event_anomalies, loaded once): {twin}"
        in verify_text.stdout.splitlines()
    ), verify_text.stdout


def test_an_incomplete_window_names_a_verify_that_covers_it(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The advice of a run that could not read a window names a `verify` whose range holds
    the window: a plain `verify` stops at the mark, which stays before the window."""
    sim = make_simulator(3_000, days=10, max_offset=1_000)
    burst_at = NOW - timedelta(days=9)
    sim.add_events(dense_burst(burst_at, 1_500, seed=9))
    with SimulatorServer(sim) as srv:
        assert run_cli(*workspace.sync_args(srv.url, "--max-offset", "1000")) == 3
        err = capsys.readouterr().err
        (line,) = [x for x in err.splitlines() if x.startswith("tfy-audit:")]
        assert "will show the gap" not in err
        advice = re.search(r"`tfy-audit verify --end (\S+)` compares their days$", line)
        assert advice is not None, line
        verify = ["verify", "--host", srv.url, "--db", str(workspace.db)]
        verify += ["--pipelines-dir", str(workspace.pipelines_dir), "--json"]
        assert run_cli(*verify, "--end", advice[1]) == 3
        doc = json.loads(capsys.readouterr().out)
    differing = [d["day"] for d in doc["result"]["differing"]]
    assert differing == [burst_at.date().isoformat()]
