"""`tfy-audit sync` against hostile servers on loopback (tests/hostile.py): every run ends, in
bounded time and memory, with one line that names the cause, echoes no secret and no terminal
control, and leaves what was committed before."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from tfy_audit._engine.lock import pipeline_lock
from tfy_audit.simulator import Simulator, SimulatorServer

from tests.conftest import (
    API_KEY,
    DATASET,
    REPO,
    WALL_CLOCK,
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli,
    run_cli_captured,
    run_cli_process,
)
from tests.hostile import hostile_server


def one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tfy-audit: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def sync_measured(
    ws: Workspace, url: str, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float, int]:
    """A sync in its own process under a fresh parent: (result, seconds, peak RSS in MiB)."""
    measure = (
        "import resource, subprocess, sys\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            measure,
            sys.executable,
            "-m",
            "tfy_audit._cli.main",
            *ws.sync_args(url, *extra),
        ],
        cwd=REPO,
        env={**os.environ, "TFY_API_KEY": API_KEY, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    seconds = time.monotonic() - t0
    lines = proc.stderr.splitlines()
    rss = int(lines[-1].split()[1]) // 1024
    proc.stderr = "\n".join(lines[:-1])
    return proc, seconds, rss


def lock_is_free(ws: Workspace) -> bool:
    with pipeline_lock(str(ws.pipelines_dir), "tfy_audit"):
        return True


def audit_rows(ws: Workspace) -> int:
    if not ws.db.exists():
        return 0
    con = duckdb.connect(str(ws.db), read_only=True)
    try:
        listed = con.execute("select table_name from information_schema.tables").fetchall()
        tables = {r[0] for r in listed}
        if "audit_logs" not in tables:
            return 0
        return int(con.execute(f"select count(*) from {DATASET}.audit_logs").fetchone()[0])  # type: ignore[index]
    finally:
        con.close()


# -- item 1: deadlines -------------------------------------------------------------------


@WALL_CLOCK
@pytest.mark.parametrize("mode", ["trickle", "slow-headers"])
def test_a_trickling_server_cannot_hold_a_request_past_its_timeout(
    mode: str, workspace: Workspace
) -> None:
    with hostile_server(mode) as (url, _):
        proc, seconds, _ = sync_measured(workspace, url, "--timeout", "2", "--retries", "1")
    one_line_error(proc, 1, "did not complete within 2s", "--timeout")
    assert seconds < 15
    assert lock_is_free(workspace)


@WALL_CLOCK
def test_max_duration_stops_a_run_keeping_its_committed_chunks(workspace: Workspace) -> None:
    sim = make_simulator(3_000, days=10)
    chunks_loaded = threading.Event()
    release = threading.Event()
    lists = [0]

    def hang_once_a_chunk_is_loaded(s: Simulator, params: dict[str, str]) -> None:
        if params.get("metric") == "list":
            lists[0] += 1
            if lists[0] > 4:  # the first chunks' pages pass; then the service hangs
                chunks_loaded.set()
                release.wait(timeout=60)

    sim.on_request = hang_once_a_chunk_is_loaded
    with SimulatorServer(sim) as srv:
        args = workspace.sync_args(
            srv.url, "--max-offset", "1000", "--page-size", "500", "--chunk-events", "500"
        )
        t0 = time.monotonic()
        try:
            proc = run_cli_process(*args, "--concurrency", "1", "--max-duration", "6")
        finally:
            release.set()
        seconds = time.monotonic() - t0
        one_line_error(proc, 1, "--max-duration")
        assert seconds < 40
        assert lock_is_free(workspace)
        kept = workspace.ids()
        assert kept, "the chunks committed before the deadline are kept"
        assert kept <= {e["id"] for e in sim.events()}
        workspace.assert_unique()
        sim.on_request = None
        assert run_cli(*workspace.sync_args(srv.url)) == 0
    assert_warehouse_matches(workspace, sim.events())


# -- item 2: bounded bodies ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["big-json", "gzip-bomb"])
def test_a_huge_body_is_refused_in_bounded_memory(mode: str, workspace: Workspace) -> None:
    with hostile_server(mode) as (url, _):
        proc, _, rss = sync_measured(workspace, url, "--workers", "0")
    one_line_error(proc, 1, "metric=list", "larger than 32.25 MB", "--max-response-mb")
    assert rss < 400, f"peak RSS {rss} MiB"
    assert audit_rows(workspace) == 0  # nothing of the body was loaded


def test_max_response_mb_sets_the_cap(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    with hostile_server("gzip-bomb") as (url, _):
        proc = run_cli_captured(capfd, *workspace.sync_args(url, "--max-response-mb", "2"))
    one_line_error(proc, 1, "larger than 2 MB", "(--max-response-mb)")


# -- item 3: counts ------------------------------------------------------------------------


@WALL_CLOCK
def test_an_impossible_count_ends_the_run_at_once(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    with hostile_server("huge-count") as (url, seen):
        t0 = time.monotonic()
        proc = run_cli_captured(capfd, *workspace.sync_args(url))
        seconds = time.monotonic() - t0
    one_line_error(proc, 1, "pagination.total = 1000000000000", "metric=count")
    assert len(seen.requests) == 1
    assert seconds < 30


# -- items 4 and 5: what is printed --------------------------------------------------------

SECRET = "tfy-Secret-Key-0123456789"


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_api_key_is_never_echoed(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    """A server that quotes the Authorization header back: not in the output, the pipelines
    dir (dlt's trace.pickle included) or the warehouse."""
    with hostile_server("echo-auth") as (url, seen):
        proc = run_cli_captured(capfd, *workspace.sync_args(url), env={"TFY_API_KEY": SECRET})
    assert seen.requests and seen.requests[0]["authorization"] == f"Bearer {SECRET}"
    one_line_error(proc, 1, "invalid token: Bearer [redacted]")
    for text in (proc.stdout, proc.stderr):
        assert SECRET not in text
    assert list(workspace.pipelines_dir.rglob("trace.pickle")), "dlt kept no trace"
    assert not _files_holding(workspace.pipelines_dir, SECRET.encode())
    if workspace.db.exists():
        assert SECRET.encode() not in workspace.db.read_bytes()


def test_a_key_with_a_trailing_carriage_return_is_stripped(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    sim = make_simulator(500)
    with SimulatorServer(sim) as srv:
        proc = run_cli_captured(
            capfd, *workspace.sync_args(srv.url), env={"TFY_API_KEY": API_KEY + "\r"}
        )
    assert proc.returncode == 0, proc.stderr
    assert_warehouse_matches(workspace, sim.events())


def test_a_key_a_header_cannot_carry_is_refused_before_any_request(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "tfy-Secret\n-Key-0123456789"
    with hostile_server("echo-auth") as (url, seen):
        proc = run_cli_captured(capsys, *workspace.sync_args(url), env={"TFY_API_KEY": key})
    line = one_line_error(proc, 2, "at position 11 of 26")
    assert not seen.requests
    assert "tfy-Secret" not in proc.stdout + proc.stderr and "Key-0123" not in line


def test_service_text_is_cleaned_and_cut(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    with hostile_server("escapes") as (url, _):
        proc = run_cli_captured(capfd, *workspace.sync_args(url))
    line = one_line_error(proc, 1, "rejected with HTTP 400: bad request xxx")
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "pwned" not in proc.stderr
    assert len(proc.stderr) < 1_000 and len(line) < 700


# -- item 7: hosts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "needles"),
    [
        ("localhost:8765", ["no scheme", "https://localhost:8765", "http://localhost:8765"]),
        ("example.truefoundry.cloud", ["no scheme", "https://example.truefoundry.cloud"]),
        ("http://example.test", ["unencrypted", "--allow-insecure-http"]),
        ("https://admin:hunter2@example.test", ["user name or password"]),
    ],
)
def test_a_bad_host_fails_before_anything_is_touched(
    host: str, needles: list[str], workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = run_cli_captured(capsys, *workspace.sync_args(host))
    one_line_error(proc, 2, *needles)
    assert "hunter2" not in proc.stderr
    assert not workspace.pipelines_dir.exists() and not workspace.db.exists()


# -- item 6: files -------------------------------------------------------------------------


def test_a_pipeline_name_with_a_path_creates_nothing(
    tmp_path: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    pipelines = tmp_path / "a" / "b"
    proc = run_cli_captured(
        capsys,
        *workspace.sync_args("http://127.0.0.1:9"),
        "--pipelines-dir",
        str(pipelines),
        "--pipeline-name",
        "../../x",
    )
    one_line_error(proc, 2, "--pipeline-name '../../x' is not a valid pipeline name")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_lock_never_follows_a_symlink(
    tmp_path: Path, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "victim"
    target.write_text("precious")
    workspace.pipelines_dir.mkdir(mode=0o700)
    (workspace.pipelines_dir / ".tfy_audit.tfy-audit.lock").symlink_to(target)
    proc = run_cli_captured(capsys, *workspace.sync_args("http://127.0.0.1:9"))
    one_line_error(proc, 2, "is a symbolic link")
    assert target.read_text() == "precious"


# -- item 10: dlt configuration ------------------------------------------------------------


def test_a_postgres_url_without_password_is_one_line(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = run_cli_captured(
        capsys,
        *workspace.sync_args("http://127.0.0.1:9", "--destination", "postgres"),
        env={"DESTINATION__POSTGRES__CREDENTIALS": "postgresql://postgres@127.0.0.1:5432/test"},
    )
    one_line_error(
        proc,
        2,
        "`password`",
        "DESTINATION__POSTGRES__CREDENTIALS__PASSWORD",
        "destination.postgres.credentials.password in .dlt/secrets.toml",
    )


@WALL_CLOCK
def test_retry_after_999999_ends_at_max_duration_with_one_line(workspace: Workspace) -> None:
    sim = make_simulator(200, days=1, rate_429=1.0, retry_after="999999")
    with SimulatorServer(sim) as srv:
        t0 = time.monotonic()
        proc = run_cli_process(*workspace.sync_args(srv.url, "--max-duration", "5"))
        seconds = time.monotonic() - t0
    line = one_line_error(proc, 1, "--max-duration", "Retry-After: 999999", "rate limited")
    assert "999999 s" not in line  # the wait it would have taken is the capped one, 300 s
    assert seconds < 60  # not 300 s (one capped wait), let alone 40 minutes
    assert sim.stats.by_status == {429: 1}  # it failed at once: waiting could not help
    assert lock_is_free(workspace)
