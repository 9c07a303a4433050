"""`TFY_AUDIT_LOG_FORMAT=json` / `--log-format json`: what a scheduler's log shipper reads. Every
stderr line of a real run parses as one JSON object with the common keys; progress and the
summary carry their figures as keys (the summary's equal to `--json`'s document); a failure is
one ERROR record; the API key never appears."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from typing import Any

import pytest
from tfy_audit.simulator import SimulatorServer

from tests.conftest import (
    Workspace,
    assert_warehouse_matches,
    make_simulator,
    run_cli_captured,
    run_cli_process,
)
from tests.hostile import hostile_server

COMMON = {"time", "level", "logger", "message", "run_id"}
SECRET = "tfy-json-log-secret-7f3a9c"


def records(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """Every stderr line as a JSON object with the common keys, all of one run."""
    lines = proc.stderr.splitlines()
    assert lines, "no log lines"
    parsed = []
    for line in lines:
        record = json.loads(line)  # every line, none skipped
        assert isinstance(record, dict) and record.keys() >= COMMON, line
        offset = datetime.fromisoformat(record["time"]).utcoffset()
        assert offset is not None and offset.total_seconds() == 0, line
        parsed.append(record)
    assert len({r["run_id"] for r in parsed}) == 1, proc.stderr
    assert "\r" not in proc.stderr and "[#" not in proc.stderr  # no progress bar
    return parsed


def test_a_sync_logs_json_lines_with_progress_and_the_summary(workspace: Workspace) -> None:
    sim = make_simulator(3_000)
    with SimulatorServer(sim) as srv:
        # --no-progress is not given: JSON logs alone must keep the bar away
        args = [a for a in workspace.sync_args(srv.url, "--json") if a != "--no-progress"]
        proc = run_cli_process(*args, env={"TFY_AUDIT_LOG_FORMAT": "json"})
    assert proc.returncode == 0, proc.stderr
    assert_warehouse_matches(workspace, sim.events())
    logged = records(proc)
    assert {r["level"] for r in logged} <= {"DEBUG", "INFO", "WARNING"}

    (plan,) = [r for r in logged if r.get("event") == "plan"]
    assert plan["events_total"] == 3_000 and plan["windows_total"] >= 1 and plan["chunks"] >= 1
    assert plan["logger"] == "tfy_audit._cli.progress"
    progress = [r for r in logged if r.get("event") == "progress"]
    assert progress, proc.stderr
    for record in progress:
        assert record["events_total"] == 3_000 and 0 < record["events_done"] <= 3_000
        assert 0 <= record["windows_done"] <= record["windows_total"] == plan["windows_total"]
        for key in ("events_per_second", "elapsed_seconds"):
            assert isinstance(record[key], (int, float)) and record[key] >= 0
        assert record["eta_seconds"] is None or record["eta_seconds"] >= 0
        assert record["message"].startswith("progress: windows ")

    (summary,) = [r for r in logged if r.get("event") == "summary"]
    document = json.loads(proc.stdout)  # one line under JSON logs, still one document
    assert len(proc.stdout.strip().splitlines()) == 1
    assert (summary["status"], summary["exit_code"]) == ("ok", 0)
    for key in ("command", "error"):
        document.pop(key)
    assert {k: summary[k] for k in document} == document
    assert summary["events_new"] == 3_000 and summary["rows"]["audit_logs"] == 3_000
    assert summary["message"].startswith("synced ")


def test_a_failing_run_is_one_error_record_and_never_shows_the_key(
    workspace: Workspace,
) -> None:
    """The server quotes the Authorization header back; the flag form, before the command."""
    with hostile_server("echo-auth") as (url, seen):
        proc = run_cli_process(
            "--log-format", "json", *workspace.sync_args(url), env={"TFY_API_KEY": SECRET}
        )
    assert seen.requests and seen.requests[0]["authorization"] == f"Bearer {SECRET}"
    assert proc.returncode == 1, proc.stderr
    assert SECRET not in proc.stderr + proc.stdout
    logged = records(proc)
    errors = [r for r in logged if r["level"] == "ERROR"]
    assert len(errors) == 1, proc.stderr
    (error,) = errors
    assert error["logger"] == "tfy_audit" and error["event"] == "exit"
    assert (error["status"], error["exit_code"]) == ("failed", 1)
    assert "invalid token: Bearer [redacted]" in error["message"]
    assert not error["message"].startswith("tfy-audit:")
    assert proc.stdout == ""


# The four tests below check what the command says before it does anything: in-process, with
# its output captured as a process's (run_cli_captured); a process of its own adds only imports.


def test_a_line_that_does_not_parse_is_refused_as_a_json_record(
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = run_cli_captured(capsys, "sync", "--no-such-flag", env={"TFY_AUDIT_LOG_FORMAT": "json"})
    assert proc.returncode == 2
    (error,) = records(proc)
    assert (error["level"], error["status"], error["exit_code"]) == ("ERROR", "usage_error", 2)
    assert "--no-such-flag" in error["message"]


def test_a_bad_format_in_the_environment_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = run_cli_captured(capsys, "sync", env={"TFY_AUDIT_LOG_FORMAT": "xml"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "tfy-audit: error: TFY_AUDIT_LOG_FORMAT='xml' is not one of text, json "
        "(see tfy-audit --help)"
    ]


def test_the_flag_wins_over_the_environment(capsys: pytest.CaptureFixture[str]) -> None:
    proc = run_cli_captured(
        capsys,
        *("--log-format", "text", "sync", "--no-such-flag"),
        env={"TFY_AUDIT_LOG_FORMAT": "json"},
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: ") or proc.stderr.startswith("tfy-audit: error:")
    assert "{" not in proc.stderr


def test_help_shows_the_log_formats_default_and_its_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    proc = run_cli_captured(capsys, "--help")
    assert proc.returncode == 0
    body = " ".join(proc.stdout.split())
    assert "--log-format {text,json}" in body
    assert "(default: text, or $TFY_AUDIT_LOG_FORMAT)" in body
