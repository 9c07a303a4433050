"""The first steps a new user takes: every default works, every read-only command creates
nothing, every mistake is one line naming the fix, and the README's Python API runs as written."""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer, generate_history
from tfy_audit.simulator.history import make_event

from tests.conftest import (
    API_KEY,
    DATASET,
    NOW,
    REPO,
    Workspace,
    assert_warehouse_matches,
    events_between,
    make_simulator,
    run_cli_as_user,
    ts,
)

TFY_AUDIT = str(Path(sys.executable).parent / "tfy-audit")


def user_env(home: Path, host: str | None = None) -> dict[str, str]:
    """What a new user's shell holds: a PATH, a HOME, the host and the key; nothing else."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TFY_API_KEY": API_KEY}
    if "PYTHONPATH" in os.environ:  # the code under test, when the suite is pointed elsewhere
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    if host:
        env["TFY_HOST"] = host
    return env


def tfy(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TFY_AUDIT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tfy_here(capfd: pytest.CaptureFixture[str]) -> Run:
    """`tfy` in-process (`run_cli_as_user`: the same working directory, exactly the same
    environment, the output of the file descriptors): for what a command does and says. The
    installed script itself is run by the tests of a user's first steps (no flags from an
    empty folder, the demo, the cron line, help and version, dlt's log records) and by one
    success and two failures of the JSON test."""

    def run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli_as_user(capfd, cwd, env, *args)

    return run


def one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_every_command_works_with_no_flags_from_an_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    sim = make_simulator(2_500, days=8)
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        first = tfy(folder, env, "sync")
        assert first.returncode == 0, first.stderr
        assert "first sync: read the whole history" in first.stdout
        assert "new events: 2,500" in first.stdout
        second = tfy(folder, env, "sync")
        assert second.returncode == 0, second.stderr
        assert "new events: 0" in second.stdout
        verify = tfy(folder, env, "verify")
        assert verify.returncode == 0, verify.stderr + verify.stdout
        views = tfy(folder, env, "views")
        assert views.returncode == 0, views.stderr
        assert "sensitive_actions" in views.stdout
        report = tfy(folder, env, "report")
        assert report.returncode == 0, report.stderr
        assert "Ambiguous" not in first.stderr + second.stderr + verify.stderr
    assert sorted(p.name for p in folder.iterdir()) == [
        ".tfy_audit.duckdb.pipelines",
        # the dataset's lock, beside the file every writer opens (lock.py)
        ".tfy_audit.duckdb.truefoundry_audit.tfy-audit.lock",
        "report.html",
        "tfy_audit.duckdb",
    ]
    workspace = Workspace(folder / "tfy_audit.duckdb", folder / ".tfy_audit.duckdb.pipelines")
    assert_warehouse_matches(workspace, sim.events())


def test_a_database_named_like_the_dataset_is_refused_with_the_fix(
    tmp_path: Path, tfy_here: Run
) -> None:
    """The default file of earlier versions: its catalog is the dataset's name."""
    old = tmp_path / "truefoundry_audit.duckdb"
    duckdb.connect(str(old)).close()
    sim = make_simulator(500, days=3)
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        for command in ("sync", "verify", "views", "report"):
            line = one_line(tfy_here(tmp_path, env, command, "--db", old.name), 2)
            assert f"mv {old.name} tfy_audit.duckdb" in line, line
        # the fix, as named, works
        os.rename(old, tmp_path / "tfy_audit.duckdb")
        assert tfy_here(tmp_path, env, "sync").returncode == 0
    ws = Workspace(tmp_path / "tfy_audit.duckdb", tmp_path / ".tfy_audit.duckdb.pipelines")
    assert_warehouse_matches(ws, sim.events())


@pytest.mark.parametrize("command", ["verify", "views", "report"])
def test_read_only_commands_refuse_a_missing_database_and_create_nothing(
    command: str, tmp_path: Path, tfy_here: Run
) -> None:
    with SimulatorServer(make_simulator(100, days=1)) as srv:
        proc = tfy_here(tmp_path, user_env(tmp_path, srv.url), command)
    one_line(proc, 2, "tfy_audit.duckdb does not exist", "tfy-audit sync")
    assert list(tmp_path.iterdir()) == []


def test_db_a_directory_or_empty_is_one_line_with_the_fix(tmp_path: Path, tfy_here: Run) -> None:
    (tmp_path / "data").mkdir()
    env = user_env(tmp_path, "http://127.0.0.1:9")
    one_line(tfy_here(tmp_path, env, "sync", "--db", "data"), 2, "is a directory", "data/tfy_audit")
    one_line(tfy_here(tmp_path, env, "sync", "--db", ""), 2, "--db is empty")
    one_line(tfy_here(tmp_path, env, "verify", "--db", "data"), 2, "is a directory")
    assert [p.name for p in tmp_path.iterdir()] == ["data"]


def test_since_sets_the_first_runs_depth_and_the_summary_says_so(
    tmp_path: Path, tfy_here: Run
) -> None:
    sim = make_simulator(3_000, days=40)
    ws = Workspace(tmp_path / "a.duckdb", tmp_path / "p")
    args = ["sync", "--db", str(ws.db), "--pipelines-dir", str(ws.pipelines_dir)]
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        # 10d before the sync, by the clock around it (NOW is when the worker started)
        before = datetime.now(UTC).replace(microsecond=0)
        first = tfy_here(tmp_path, env, *args, "--since", "10d", "--json")
        after = datetime.now(UTC)
        assert first.returncode == 0, first.stderr
        summary = json.loads(first.stdout)
        since = ts(summary["first_run_start"])
        assert before - timedelta(days=10) <= since <= after - timedelta(days=10)
        assert summary["start"] == summary["first_run_start"]
        assert_warehouse_matches(ws, events_between(sim, since, ts(summary["end"])))
        # a plain sync continues from the mark, never back to 2015
        sim.reset_stats()
        again = tfy_here(tmp_path, env, *args, "--json")
        assert json.loads(again.stdout)["start"] > summary["start"]
        text = tfy_here(tmp_path, env, *args)
        assert "first sync" not in text.stdout
        # the config key does the same for a new pipeline
        ws2 = Workspace(tmp_path / "b.duckdb", tmp_path / "q")
        env2 = {**env, "SOURCES__TRUEFOUNDRY_AUDIT__SINCE": "5d"}
        args2 = ["sync", "--db", str(ws2.db), "--pipelines-dir", str(ws2.pipelines_dir)]
        plain = tfy_here(tmp_path, env2, *args2)
        assert plain.returncode == 0, plain.stderr
        assert "(--since); events before it are not read" in plain.stdout
        # and verify checks from there: no false alarm for the unread history
        verify = tfy_here(tmp_path, env2, "verify", *args2[1:])
        assert verify.returncode == 0, verify.stderr
    first_ids = ws2.ids()
    assert first_ids and all(
        ts(e["createdAt"]) >= NOW - timedelta(days=5, minutes=5)
        for e in sim.events()
        if e["id"] in first_ids
    )


def test_a_one_off_start_says_what_it_left_unread(tmp_path: Path, tfy_here: Run) -> None:
    sim = make_simulator(1_000, days=20)
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        proc = tfy_here(tmp_path, env, "sync", "--start", "3d", "--end", "1d")
    assert proc.returncode == 0, proc.stderr
    assert "one-off range: history before" in proc.stdout
    assert "no high-water mark is set; a plain `tfy-audit sync` reads the whole history" in (
        proc.stdout
    )


def test_a_second_sync_counts_re_read_events_apart_from_new_ones(
    tmp_path: Path, tfy_here: Run
) -> None:
    sim = make_simulator(800, days=2)
    ws = Workspace(tmp_path / "a.duckdb", tmp_path / "p")
    args = ["sync", "--db", str(ws.db), "--pipelines-dir", str(ws.pipelines_dir), "--json"]
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        assert tfy_here(tmp_path, env, *args).returncode == 0
        # a lookback wide enough to re-read what is there, plus three new events
        sim.add_events([dict(e, id=f"new-{i}") for i, e in enumerate(sim.events()[-3:])])
        second = json.loads(tfy_here(tmp_path, env, *args, "--lookback", "3d").stdout)
    assert second["events_new"] == 3
    assert second["events_reread"] == second["events_read"] - 3 > 0
    assert_warehouse_matches(ws, sim.events())


NO_OP_SENTENCE = (
    "A scheduled run that finds nothing new makes 2 requests (two counts), plus one page per "
    "1,000 events of the last `--lookback` (10 minutes), which it reads again."
)


@pytest.mark.parametrize("quiet_minutes", [120, 0], ids=["lookback-empty", "lookback-holds-events"])
def test_a_no_op_sync_makes_the_requests_the_readme_says(
    quiet_minutes: int, tmp_path: Path, tfy_here: Run
) -> None:
    """Counted on the simulator's request log: the count of the re-read range, the count after
    the mark, and the re-read range's pages, one per 1,000 events in it."""
    now = datetime.now(UTC)  # not the session's start: the lookback counts back from the run
    end = now - timedelta(minutes=quiet_minutes)
    sim = Simulator(SimulatorConfig(api_key=API_KEY), generate_history(1_500, days=3, end=end))
    if not quiet_minutes:
        # The history follows working hours, so its last minutes may hold no event (at night
        # they did not): these three are stamped in the lookback whatever the hour.
        rng = random.Random(4)
        sim.add_events([make_event(rng, now - timedelta(minutes=m)) for m in (1, 2, 3)])
    in_lookback = [e for e in sim.events() if ts(e["createdAt"]) >= now - timedelta(minutes=15)]
    assert bool(in_lookback) == (quiet_minutes == 0) and len(in_lookback) < 1_000
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        assert tfy_here(tmp_path, env, "sync").returncode == 0
        sim.reset_stats()
        again = tfy_here(tmp_path, env, "sync", "--json")
    assert json.loads(again.stdout)["events_new"] == 0
    metrics = sorted(str(r.metric) for r in sim.request_log)
    expected = ["count", "count"] + (["list"] if in_lookback else [])
    assert metrics == expected
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    assert readme.count(NO_OP_SENTENCE) == 1, "the README states it once, as measured here"
    assert "nothing new makes 3 requests" not in readme


def test_the_demo_and_the_plain_script_leave_nothing_for_git_to_track(tmp_path: Path) -> None:
    """`make demo` in a clone, and the README's plain dlt script run in `pipelines/`: what
    they leave (database, working dirs, lock files) is ignored by the repository's .gitignore."""
    clone = tmp_path / "clone"
    (clone / "pipelines").mkdir(parents=True)
    (clone / ".gitignore").write_bytes((REPO / ".gitignore").read_bytes())
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(clone)], check=True, timeout=30)
    env = user_env(tmp_path)
    demo = tfy(clone, env, "demo", "--events", "400", "--days", "2")
    assert demo.returncode == 0, demo.stderr
    assert "Top actions" in demo.stdout
    # the query it suggests next runs as printed, and answers from the demo's data
    suggested = demo.stdout.split("Try next:")[1].replace("\\\n", " ")
    (sql_line,) = [x for x in suggested.splitlines() if "tfy-audit sql" in x]
    sql = tfy(clone, env, *shlex.split(sql_line)[1:])
    assert sql.returncode == 0, sql.stderr
    con = duckdb.connect(str(clone / "tfy_audit_demo.duckdb"), read_only=True)
    try:
        newest = con.execute(
            "select created_at, action, resource_name from truefoundry_audit.deletions "
            "order by created_at desc limit 10"
        ).fetchall()
    finally:
        con.close()
    assert newest
    header, rule, *rows = sql.stdout.splitlines()
    # columns by the rule under the header: `----  ----` (a value may hold spaces)
    spans = [m.span() for m in re.finditer("-+", rule)]
    cells = [
        [r[a:b].strip() if i < 2 else r[a:].strip() for i, (a, b) in enumerate(spans)] for r in rows
    ]
    assert header.split() == ["created_at", "action", "resource_name"]
    assert [c[1:] for c in cells] == [[a, n or "NULL"] for _, a, n in newest], sql.stdout
    with SimulatorServer(make_simulator(300, days=1)) as srv:
        script = subprocess.run(
            [sys.executable, str(REPO / "pipelines" / "truefoundry_audit_pipeline.py")],
            cwd=clone / "pipelines",
            env={**user_env(tmp_path, srv.url), "RUNTIME__LOG_LEVEL": "WARNING"},
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert script.returncode == 0, script.stderr[-2000:]
    left = sorted(p.name for p in clone.iterdir()) + sorted(
        p.name for p in (clone / "pipelines").iterdir()
    )
    assert ".tfy_audit_demo.duckdb.truefoundry_audit.tfy-audit.lock" in left, left
    assert ".truefoundry_audit_pipeline" in left, left
    status = subprocess.run(
        [*git, "-C", str(clone), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert status.stdout.splitlines() == ["?? .gitignore"], status.stdout


# -- help and output -----------------------------------------------------------------------


def test_bare_command_prints_help_and_version_works(tmp_path: Path) -> None:
    env = user_env(tmp_path)
    bare = tfy(tmp_path, env)
    assert bare.returncode == 0 and bare.stderr == ""
    assert "usage: tfy-audit" in bare.stdout and "sync" in bare.stdout
    version = tfy(tmp_path, env, "--version")
    assert re.fullmatch(r"tfy-audit \d+\.\d+\.\d+\S*\n", version.stdout)


@pytest.mark.parametrize(
    "command", ["sync", "verify", "views", "report", "sql", "simulate", "demo"]
)
def test_every_option_has_help_and_shows_its_default(command: str, tmp_path: Path) -> None:
    import argparse

    from tfy_audit._cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sub.choices is not None
    options = [a for a in sub.choices[command]._actions if a.option_strings]
    for action in options:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, action.option_strings
        if action.nargs != 0:  # takes a value: its default is shown, its metavar readable
            assert "(default:" in action.help, action.option_strings
            assert not str(action.metavar or "").startswith("F_"), action.option_strings
    text = tfy(tmp_path, user_env(tmp_path), command, "--help").stdout
    body = " ".join(text.split())
    if command in ("sync", "verify"):
        assert "--action ACTION" in body and "--timeout TIMEOUT" in body
        assert "seconds one request may take, all told (default: 60.0)" in body
    if command == "sync":
        assert "seconds to wait for a running sync of this pipeline (default: 0.0)" in body


def _help_of(command: str) -> str:
    from tfy_audit._cli.main import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert sub.choices is not None
    return " ".join(sub.choices[command].format_help().split())


def test_the_help_of_start_and_end_says_what_each_command_reads() -> None:
    """verify checks from where a first sync started up to the mark; sync continues from the
    mark. Each command's help says its own default."""
    verify = _help_of("verify")
    assert (
        "--start START start of the range to check (ISO 8601, or a duration back such as 7d) "
        "(default: where a first sync starts: --since, else the whole history from "
        "2015-01-01)" in verify
    ), verify
    assert "--end END end of the range (ISO 8601 or 7d) (default: the high-water mark)" in verify
    assert "the high-water mark minus --lookback" not in verify
    sync = _help_of("sync")
    assert "(default: the high-water mark minus --lookback)" in sync
    assert "(default: now, fixed at start)" in sync


@pytest.mark.parametrize("command", ["sync", "verify", "status", "views", "report"])
def test_the_help_says_where_the_working_dir_is(command: str) -> None:
    assert (
        "--pipelines-dir PIPELINES_DIR dlt's working dir (local state; the destination keeps "
        "the truth) (default: .<db>.pipelines beside a DuckDB file, else "
        "./.tfy-audit/pipelines/<destination>-<dataset>)" in _help_of(command)
    )


def json_doc(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(proc.stdout)
    assert {"command", "status", "exit_code", "error"} <= parsed.keys()
    assert parsed["exit_code"] == proc.returncode
    return parsed


def test_every_command_prints_one_json_document_also_on_failure(
    tmp_path: Path, tfy_here: Run
) -> None:
    """The installed script for one refusal, one failed and one good sync (stdout is the one
    document, nothing else reaches it); the other commands in-process (`tfy_here`)."""
    sim = make_simulator(300, days=2)
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        # failures first: nothing synced, and an unreachable host
        for command, run in (("verify", tfy), ("views", tfy_here), ("report", tfy_here)):
            doc = json_doc(run(tmp_path, env, command, "--json"))
            assert (doc["command"], doc["status"]) == (command, "usage_error")
            assert "does not exist" in doc["error"]
        query = "select count(*) as n from audit_logs"
        doc = json_doc(tfy_here(tmp_path, env, "sql", query, "--json"))
        assert (doc["command"], doc["status"]) == ("sql", "usage_error")
        assert "does not exist" in doc["error"]
        down = json_doc(tfy(tmp_path, user_env(tmp_path, "http://127.0.0.1:9"), "sync", "--json"))
        assert down["status"] == "failed" and "cannot connect" in down["error"]
        ok = json_doc(tfy(tmp_path, env, "sync", "--json"))
        assert (ok["status"], ok["error"], ok["events_new"]) == ("ok", None, 300)
        verified = json_doc(tfy_here(tmp_path, env, "verify", "--json"))
        assert verified["status"] == "ok" and verified["result"]["differing"] == []
        assert json_doc(tfy_here(tmp_path, env, "views", "--json"))["views"]
        assert json_doc(tfy_here(tmp_path, env, "report", "--json"))["events"] == 300
        answer = json_doc(tfy_here(tmp_path, env, "sql", query, "--json"))
        assert (answer["columns"], answer["rows"]) == (["n"], [[300]])
        table = tfy_here(tmp_path, env, "sql", query)
        assert (table.returncode, table.stdout, table.stderr) == (0, "  n\n---\n300\n", "")


def test_dlt_log_records_come_out_in_our_format(tmp_path: Path) -> None:
    """dlt warns (here: a pipeline state it cannot find in the destination) through our handler."""
    sim = make_simulator(200, days=1)
    with SimulatorServer(sim) as srv:
        env = user_env(tmp_path, srv.url)
        proc = tfy(tmp_path, {**env, "RUNTIME__LOG_LEVEL": "INFO"}, "sync", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    records = [line for line in proc.stderr.splitlines() if line.strip()]
    assert any(" dlt" in line for line in records), proc.stderr
    ours = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+: ")
    assert all(ours.match(line) for line in records), proc.stderr
    assert "|[" not in proc.stderr


# -- the examples, with their own defaults --------------------------------------------------


def test_the_cron_line_runs_as_written(tmp_path: Path) -> None:
    text = (REPO / "examples" / "cron" / "tfy-audit.cron").read_text(encoding="utf-8")
    (line,) = [ln for ln in text.splitlines() if ln.startswith("*/10")]
    command = line.split(None, 5)[5]
    # the paths of a real install, moved under tmp_path; the command itself unchanged
    var = tmp_path / "var"
    for folder in ("lib/tfy-audit", "log/tfy-audit"):
        (var / folder).mkdir(parents=True)
    etc = tmp_path / "etc" / "tfy-audit"
    etc.mkdir(parents=True)
    sim = make_simulator(1_500, days=5)
    with SimulatorServer(sim) as srv:
        (etc / "tfy-audit.env").write_text(f"TFY_HOST={srv.url}\nTFY_API_KEY={API_KEY}\n")
        moved = (
            command.replace("/opt/tfy-audit", shlex.quote(str(REPO)))
            .replace("/etc/tfy-audit", str(etc))
            .replace("/var/", f"{var}/")
        )
        for _ in range(2):
            done = subprocess.run(
                ["/bin/sh", "-c", moved],
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path)},
                timeout=180,
            )
            assert done.returncode == 0, (var / "log/tfy-audit/sync.log").read_text()
    log = (var / "log/tfy-audit/sync.log").read_text()
    docs = [json.loads(d) for d in re.findall(r"^\{.*?^\}", log, re.M | re.S)]
    assert [d["status"] for d in docs] == ["ok", "ok"]
    ws = Workspace(var / "lib/tfy-audit/tfy_audit.duckdb", var / "lib/tfy-audit/.x")
    assert_warehouse_matches(ws, sim.events())


@pytest.mark.timeout(240)
def test_the_dagster_example_runs_with_its_own_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its module-level definitions, as `dagster dev -f` loads them: the default DuckDB file in
    the working directory, the backfill start from the environment."""
    import dagster as dg

    from tests.integration.test_scheduling import load_example

    first_day = (NOW - timedelta(days=2)).date()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFY_AUDIT_BACKFILL_START", first_day.isoformat())
    sim = make_simulator(900, days=6)
    with SimulatorServer(sim) as srv:
        monkeypatch.setenv("TFY_HOST", srv.url)
        example = load_example("dagster/tfy_audit_dagster.py")
        defs = example.defs
        days = defs.resolve_assets_def("truefoundry_audit_days")
        assert dg.materialize([days], partition_key=first_day.isoformat()).success
        assert defs.resolve_job_def("tfy_audit_incremental").execute_in_process().success
    ws = Workspace(tmp_path / "tfy_audit.duckdb", tmp_path / ".tfy_audit.duckdb.pipelines")
    assert_warehouse_matches(ws, sim.events())


# -- the README's Python API ----------------------------------------------------------------


def readme_python_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_python_api_runs_as_written(tmp_path: Path) -> None:
    blocks = readme_python_blocks()
    assert len(blocks) == 2
    sim = make_simulator(1_200, days=100)
    home = tmp_path / "home"
    home.mkdir()
    with SimulatorServer(sim) as srv:
        env = user_env(home, srv.url)
        before = datetime.now(UTC)
        for i, block in enumerate(blocks):
            script = tmp_path / f"block{i}.py"
            script.write_text(block, encoding="utf-8")
            done = subprocess.run(
                [sys.executable, str(script)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            assert done.returncode == 0, done.stderr
        after = datetime.now(UTC)
    # nothing in dlt's global working dir: each example keeps its own
    assert not (home / ".dlt").exists()
    con = duckdb.connect(str(tmp_path / "secrets_audit.duckdb"), read_only=True)
    try:
        rows = con.execute(f"select id from {DATASET}.audit_logs").fetchall()
    finally:
        con.close()
    secrets = {e["id"] for e in sim.events() if e.get("resourceType") == "secret"}
    assert secrets and {r[0] for r in rows} == secrets
    # run_sync with since=90 days: from 90 days before the moment it ran
    since = timedelta(days=90)
    surely = {e["id"] for e in sim.events() if ts(e["createdAt"]) >= after - since}
    maybe = {e["id"] for e in sim.events() if ts(e["createdAt"]) >= before - since}
    loaded = Workspace(tmp_path / "audit.duckdb", tmp_path / ".dlt-pipelines").ids()
    assert surely <= loaded <= maybe
    assert len(maybe) < len(sim.events())


def test_verify_of_an_empty_database_refuses_instead_of_a_false_alarm(
    tmp_path: Path, tfy_here: Run
) -> None:
    duckdb.connect(str(tmp_path / "tfy_audit.duckdb")).close()
    with SimulatorServer(make_simulator(300, days=2)) as srv:
        proc = tfy_here(tmp_path, user_env(tmp_path, srv.url), "verify")
    one_line(proc, 2, "nothing was synced into dataset 'truefoundry_audit'", "tfy-audit sync")


def test_sql_after_a_sync_refused_for_its_key_names_the_fix(tmp_path: Path, tfy_here: Run) -> None:
    """A sync refused for its key leaves a database holding its run record only: a query of
    the events says nothing was synced and how to fix it, and the run record can be read."""
    with SimulatorServer(make_simulator(300, days=2)) as srv:
        env = dict(user_env(tmp_path, srv.url), TFY_API_KEY="not-the-key")
        refused = tfy_here(tmp_path, env, "sync")
        assert refused.returncode != 0 and "rejected the API key" in refused.stderr
        events = tfy_here(tmp_path, env, "sql", "select count(*) from audit_logs")
        runs = tfy_here(tmp_path, env, "sql", "select status from sync_runs")
    one_line(
        events,
        2,
        "nothing was synced into dataset 'truefoundry_audit'",
        "audit_logs does not exist",
        "run `tfy-audit sync` first",
    )
    assert runs.returncode == 0, runs.stderr
    assert runs.stdout.split() == ["status", "------", "failed"]


def test_a_command_line_that_does_not_parse_still_gets_its_json(
    tmp_path: Path, tfy_here: Run
) -> None:
    proc = tfy_here(tmp_path, user_env(tmp_path), "sync", "--json", "--concurrency", "many")
    doc = json_doc(proc)
    assert (doc["command"], doc["status"]) == ("sync", "usage_error")
    assert "--concurrency" in doc["error"]
    one_line(proc, 2, "--concurrency")
