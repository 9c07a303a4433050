"""Rule files: the pack parses; each broken file is one line naming the file and its fault;
`tfy-audit rules validate` exits 1 on any."""

from __future__ import annotations

from pathlib import Path

import pytest
from tfy_audit._detect.rules import builtin_rules, read_folder

from tests.conftest import run_cli_captured

GOOD = """id: my-rule
title: t
description: d
severity: high
attack: [T1098]
tables: [audit_logs]
dedup: [subject_id]
query: |
  SELECT id AS event_id, created_at, subject__subject_id AS subject_id
  FROM {dataset}.audit_logs WHERE created_at >= {start} AND created_at < {end}
"""


def test_the_pack_parses() -> None:
    assert len(builtin_rules()) >= 15


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("id: [", "not valid YAML at line 1"),
        (GOOD.replace("severity: high", "severity: urgent"), "severity 'urgent' is not one of"),
        (GOOD.replace("AND created_at < {end}", ""), "query lacks the placeholder {end}"),
        (GOOD.replace("{end}", "{end} {oops}"), "unknown placeholder(s) {oops}"),
        (GOOD.replace("AS subject_id", "AS sid"), "does not return column(s) subject_id"),
        (GOOD.replace("SELECT id", "SELEKT id"), "query does not parse"),
        (GOOD.replace("{end}\n", "{end} AND action = 'X\n"), "query does not parse"),
        (GOOD.replace("[T1098]", "[X1]"), "attack has 'X1'"),
        (GOOD + "window: soon\n", "window 'soon' is not a duration"),
        (GOOD + "threshold: 0\n", "threshold must be a whole number"),
        (GOOD + "color: red\n", "unknown field(s) color"),
    ],
)
def test_a_broken_rule_is_one_line_naming_file_and_fault(
    tmp_path: Path, text: str, fault: str
) -> None:
    (tmp_path / "ok.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(text)
    rules, problems = read_folder(tmp_path)
    assert [r.id for r in rules] == ["my-rule"]
    assert len(problems) == 1
    line = problems[0].line()
    assert line.startswith(f"{tmp_path / 'bad.yaml'}: ") and fault in line and "\n" not in line


def test_a_duplicate_id_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    rules, problems = read_folder(tmp_path)
    assert [r.origin for r in rules] == [str(tmp_path / "a.yaml")]
    assert [p.fault for p in problems] == [f"id 'my-rule' is also used by {tmp_path / 'a.yaml'}"]


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ok.yaml").write_text(GOOD)
    done = run_cli_captured(capsys, "rules", "validate", str(tmp_path))
    assert done.returncode == 0 and "1 rule(s) valid, 0 broken" in done.stdout
    (tmp_path / "bad.yaml").write_text("id: x\n")
    done = run_cli_captured(capsys, "rules", "validate", str(tmp_path))
    assert done.returncode == 1
    assert f"broken  {tmp_path / 'bad.yaml'}: missing field(s) title" in done.stdout
    missing = run_cli_captured(capsys, "rules", "validate", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_webhook_urls_query_never_reaches_a_message() -> None:
    """Teams and Logic Apps workflows sign in the query: the signature is a secret like
    Slack's path, in messages and in --debug's httpx lines."""
    from tfy_audit._core.redact import redact
    from tfy_audit._detect.delivery import check_url

    url = (
        "https://prod.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke"
        "?api-version=2016-06-01&sig=Zm9vYmFyLXNpZ25hdHVyZS0xMjM"
    )
    check_url(url, "--alert-webhook")
    shown = redact(f"HTTP Request: POST {url}")
    assert "Zm9vYmFyLXNpZ25hdHVyZS0xMjM" not in shown
    assert "api-version=2016-06-01" not in shown  # the whole query goes, with its signature
