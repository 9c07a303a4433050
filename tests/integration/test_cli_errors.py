"""Errors a user can act on: non-zero exit, one line naming cause and fix, no traceback, and
the data already loaded left untouched."""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import (
    Workspace,
    assert_warehouse_matches,
    free_port,
    isolate_env,
    make_simulator,
    run_cli,
    run_cli_captured,
    run_cli_process,
)

# one worker syncs the module's warehouse once
pytestmark = pytest.mark.xdist_group("cli_errors")


@pytest.fixture(scope="module")
def synced_once(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The `simulator` fixture's history synced once for the module, checked event by event.
    The tests that need a loaded warehouse (to prove an error leaves it untouched) start from a
    copy of it: a sync of their own was most of each one's time."""
    root = tmp_path_factory.mktemp("synced_once")
    template = Workspace(root / "audit.duckdb", root / "pipelines")
    sim = make_simulator()
    with pytest.MonkeyPatch.context() as mp, SimulatorServer(sim) as srv:
        isolate_env(mp, tmp_path_factory)
        assert run_cli(*template.sync_args(srv.url)) == 0
    assert_warehouse_matches(template, sim.events())
    return template


@pytest.fixture
def loaded(synced_once: Workspace, simulator: Simulator, workspace: Workspace) -> set[str]:
    """The test's workspace holding every event its `server` serves, as a sync left it (the
    database and dlt's working dir)."""
    ids = synced_once.ids()
    assert simulator.ids() == ids  # the same history as the test's own server
    shutil.copyfile(synced_once.db, workspace.db)
    shutil.copytree(synced_once.pipelines_dir, workspace.pipelines_dir, symlinks=True)
    assert workspace.ids() == ids
    return ids


@pytest.fixture
def html_site() -> Iterator[str]:
    """A web server that is not a TrueFoundry control plane."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html><body>Welcome</body></html>"
            status = 200 if self.path == "/" else 404
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def one_line_error(proc: object, code: int, *needles: str) -> None:
    stderr: str = proc.stderr  # type: ignore[attr-defined]
    assert proc.returncode == code, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("tfy-audit: error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.mark.parametrize(
    ("extra", "code", "needles"),
    [
        (["--start", "yesterday-ish"], 2, ["--start", "ISO 8601"]),
        (["--start", "2026-11-02", "--end", "2026-11-01"], 2, ["--end", "not after --start"]),
        (["--page-size", "1001"], 2, ["--page-size 1001", "1..1000"]),
        (["--page-size", "0"], 2, ["--page-size 0"]),
        (["--destination", "nosuchdb"], 2, ["unknown destination 'nosuchdb'", "postgres"]),
        (["--lookback", "soon"], 2, ["--lookback", "duration"]),
    ],
    ids=[
        "bad-start",
        "end-before-start",
        "page-size-1001",
        "page-size-0",
        "destination",
        "lookback",
    ],
)
def test_usage_errors(
    extra: list[str],
    code: int,
    needles: list[str],
    server: SimulatorServer,
    workspace: Workspace,
    loaded: set[str],
    simulator: Simulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = run_cli_captured(capsys, *workspace.sync_args(server.url, *extra))
    one_line_error(proc, code, *needles)
    assert workspace.ids() == loaded
    assert simulator.stats.total == 0  # refused before any request


def test_wrong_api_key(
    server: SimulatorServer,
    workspace: Workspace,
    loaded: set[str],
    capfd: pytest.CaptureFixture[str],
) -> None:
    proc = run_cli_captured(capfd, *workspace.sync_args(server.url), env={"TFY_API_KEY": "wrong"})
    one_line_error(proc, 1, "rejected the API key (HTTP 401)", "TFY_API_KEY")
    assert workspace.ids() == loaded


def test_missing_api_key(
    server: SimulatorServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = run_cli_captured(capsys, *workspace.sync_args(server.url), env={"TFY_API_KEY": ""})
    one_line_error(proc, 2, "no TrueFoundry API key", "TFY_API_KEY")
    assert not workspace.db.exists()


def test_missing_host(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    args = workspace.sync_args("x")
    del args[1:3]
    proc = run_cli_captured(capsys, *args, env={"TFY_HOST": ""})
    one_line_error(proc, 2, "no TrueFoundry host", "TFY_HOST")


def test_unreachable_host(
    workspace: Workspace, loaded: set[str], capfd: pytest.CaptureFixture[str]
) -> None:
    proc = run_cli_captured(capfd, *workspace.sync_args(f"http://127.0.0.1:{free_port()}"))
    one_line_error(proc, 1, "cannot connect to http://127.0.0.1:", "--host")
    assert workspace.ids() == loaded


def test_not_a_control_plane(
    html_site: str, workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    proc = run_cli_captured(capfd, *workspace.sync_args(html_site))
    one_line_error(proc, 1, "no audit-logs endpoint (HTTP 404", "TrueFoundry control plane")


def test_debug_shows_the_traceback(workspace: Workspace, capfd: pytest.CaptureFixture[str]) -> None:
    proc = run_cli_captured(
        capfd, "--debug", *workspace.sync_args(f"http://127.0.0.1:{free_port()}")
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr


@pytest.mark.parametrize("command", ["sync", "views", "report", "verify"])
def test_a_duckdb_file_open_in_another_process(
    command: str, server: SimulatorServer, workspace: Workspace, loaded: set[str], tmp_path: Path
) -> None:
    args = {
        "sync": workspace.sync_args(server.url),
        "views": ["views"],
        "report": ["report", "--out", str(tmp_path / "report.html")],
        "verify": ["verify", "--host", server.url],
    }[command]
    if command != "sync":
        args += ["--db", str(workspace.db), "--pipelines-dir", str(workspace.pipelines_dir)]
    con = duckdb.connect(str(workspace.db))  # this process holds DuckDB's write lock
    try:
        proc = run_cli_process(*args)
    finally:
        con.close()
    one_line_error(
        proc, 1, f"the DuckDB file {workspace.db} is open in another process", f"PID {os.getpid()}"
    )
    assert workspace.ids() == loaded


def test_unwritable_db_path(server: SimulatorServer, capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_cli_captured(
        capsys, "sync", "--host", server.url, "--db", "/proc/no/such/dir/a.duckdb"
    )
    one_line_error(proc, 2, "cannot create", "writable")


@pytest.mark.parametrize("command", ["views", "report", "verify"])
def test_an_unreachable_destination_is_one_line(
    command: str, workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    args = [command, "--destination", "postgres", "--dataset", "nowhere"]
    args += ["--pipelines-dir", str(workspace.pipelines_dir)]  # not in the repository's folder
    if command == "verify":
        args += ["--host", f"http://127.0.0.1:{free_port()}"]
    proc = run_cli_captured(
        capfd,
        *args,
        env={"DESTINATION__POSTGRES__CREDENTIALS": f"postgresql://u:p@127.0.0.1:{free_port()}/x"},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len([x for x in proc.stderr.splitlines() if x.startswith("tfy-audit: error:")]) == 1


def test_retries_must_be_at_least_one(
    server: SimulatorServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = run_cli_captured(capsys, *workspace.sync_args(server.url, "--retries", "0"))
    one_line_error(proc, 2, "--retries")
    assert not workspace.db.exists()


@pytest.mark.parametrize(("preset", "expected"), [(None, "false"), ("true", "true")])
def test_dlt_telemetry_is_off_unless_asked_for(
    preset: str | None, expected: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dlt would report usage to dlthub over the internet on every run; the CLI opts out,
    and a user's explicit opt-in wins."""
    if preset is None:
        monkeypatch.delenv("RUNTIME__DLTHUB_TELEMETRY", raising=False)
    else:
        monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", preset)
    run_cli(*workspace.sync_args("http://127.0.0.1:9", "--retries", "1", "--timeout", "1"))
    assert os.environ["RUNTIME__DLTHUB_TELEMETRY"] == expected


@pytest.mark.parametrize(("preset", "kept"), [(None, False), ("false", True)])
def test_loaded_parquet_files_are_not_kept_unless_asked_for(
    preset: str | None,
    kept: bool,
    simulator: Simulator,
    server: SimulatorServer,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """dlt would keep each loaded file in its working dir: a second copy of the audit trail."""
    if preset is None:
        monkeypatch.delenv("LOAD__DELETE_COMPLETED_JOBS", raising=False)
    else:
        monkeypatch.setenv("LOAD__DELETE_COMPLETED_JOBS", preset)
    assert run_cli(*workspace.sync_args(server.url)) == 0
    loaded = list(workspace.pipelines_dir.glob("*/load/loaded/*"))
    files = list(workspace.pipelines_dir.glob("*/load/loaded/*/completed_jobs/*.parquet"))
    assert loaded  # the packages and their metadata stay
    assert bool(files) is kept
    assert_warehouse_matches(workspace, simulator.events())


@pytest.mark.parametrize("own_process", [True, False])
def test_the_command_tunes_its_own_process_only(
    own_process: bool,
    server: SimulatorServer,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the `tfy-audit` process (entry() set it up: `_own_process`, `begin_imports`), a sync
    freezes the collector and caps glibc's arenas before its threads start; `main()` called by
    a library leaves both to its caller."""
    import gc

    import tfy_audit._cli.main
    import tfy_audit._core.memory
    from tfy_audit._cli import process

    calls: list[str] = []
    monkeypatch.setattr(tfy_audit._cli.main, "_own_process", own_process)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(
        tfy_audit._core.memory,
        "limit_malloc_arenas",
        lambda arenas: calls.append(f"arenas={arenas}") or True,
    )
    if own_process:
        process.begin_imports()
    try:
        assert run_cli(*workspace.sync_args(server.url)) == 0
    finally:
        process.end_imports()  # the collector runs again whatever happened (a no-op if it does)
    assert gc.isenabled()
    assert calls == (["freeze", "arenas=3"] if own_process else [])


@pytest.mark.parametrize(
    ("command", "extra", "needles"),
    [
        ("sync", ["--since", "90"], ["--since '90' has no unit", "--since 90d"]),
        ("sync", ["--start", "7"], ["--start '7' has no unit", "--start 7d"]),
        ("sync", ["--start", "2026-01-01", "--end", "1200"], ["--end '1200' has no unit"]),
        (
            "sync",
            ["--lookback", "600"],
            ["--lookback '600' has no unit", "--lookback 600s (seconds), 600m"],
        ),
        ("verify", ["--since", "1990"], ["--since 1990d", "--since 1990-01-01 if a year"]),
        ("verify", ["--start", "30"], ["--start '30' has no unit", "--start 30d"]),
        ("report", ["--since", "90"], ["--since '90' has no unit", "--since 90d"]),
        ("report", ["--start", "7"], ["--start '7' has no unit"]),
        ("report", ["--end", "1"], ["--end '1' has no unit", "--end 1d"]),
        (
            "status",
            ["--max-lag", "7200"],
            ["--max-lag '7200' has no unit", "--max-lag 7200s (seconds)"],
        ),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else str(v),
)
def test_a_number_without_a_unit_is_refused_everywhere(
    command: str,
    extra: list[str],
    needles: list[str],
    simulator: Simulator,
    server: SimulatorServer,
    workspace: Workspace,
    loaded: set[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--since 90` once read from 1990-12-07 and `report --since 90` wrote 0 events."""
    requests = simulator.stats.requests
    args = [command, "--db", str(workspace.db), "--pipelines-dir", str(workspace.pipelines_dir)]
    if command in ("sync", "verify"):
        args += ["--host", server.url]
    if command == "report":
        args += ["--out", str(tmp_path / "r.html")]
    capsys.readouterr()
    assert run_cli(*args, *extra) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1, err
    assert errors[0].startswith("tfy-audit: error: "), err
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not (tmp_path / "r.html").exists()
    assert simulator.stats.requests == requests  # refused before asking the service
    assert workspace.ids() == loaded


def test_a_since_without_a_unit_in_config_is_refused(
    server: SimulatorServer,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SOURCES__TRUEFOUNDRY_AUDIT__SINCE", "90")
    assert run_cli(*workspace.sync_args(server.url)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "tfy-audit: error: --since (sources.truefoundry_audit.since) '90' has no unit; "
        "write e.g. 90d for 90 days back"
    ), err
    assert not workspace.db.exists()


@pytest.mark.parametrize("command", ["sync", "verify", "status"])
@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "TFY_HOST",
            "audit.example.com",
            "TFY_HOST 'audit.example.com' has no scheme; set TFY_HOST=https://audit.example.com",
        ),
        (
            "TFY_HOST",
            "http://10.0.0.1",
            "TFY_HOST http://10.0.0.1 would send the API key unencrypted; use https://10.0.0.1, "
            "or pass --allow-insecure-http if this network is trusted",
        ),
        (
            "SOURCES__TRUEFOUNDRY_AUDIT__HOST",
            "ftp://x.example",
            "sources.truefoundry_audit.host 'ftp://x.example' is not a control plane URL; "
            'set sources.truefoundry_audit.host = "https://your-org.truefoundry.cloud"',
        ),
    ],
    ids=["tfy-host-no-scheme", "tfy-host-http", "config-host-ftp"],
)
def test_a_bad_host_names_where_it_came_from(
    command: str,
    variable: str,
    value: str,
    expected: str,
    workspace: Workspace,
    loaded: set[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A host from TFY_HOST or dlt config is named as such, never as `--host`."""
    monkeypatch.setenv(variable, value)
    args = [command, "--db", str(workspace.db), "--pipelines-dir", str(workspace.pipelines_dir)]
    if command == "status":
        args.append("--check-service")
    capsys.readouterr()
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [f"tfy-audit: error: {expected}"], err
    assert "--host" not in err
    assert workspace.ids() == loaded


def test_a_bad_host_flag_is_still_named_as_the_flag(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TFY_HOST", "https://fine.example")
    assert run_cli(*workspace.sync_args("audit.example.com")) == 2
    assert capsys.readouterr().err.strip() == (
        "tfy-audit: error: --host 'audit.example.com' has no scheme; pass https://audit.example.com"
    )
