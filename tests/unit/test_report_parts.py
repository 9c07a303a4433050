"""The report's parts alone: its options (as the command line and a library caller give them),
its SQL files, and the template environment (escaping, undefined names, compaction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import resources

import jinja2
import pytest
from tfy_audit._cli.commands.report import report_options
from tfy_audit._cli.main import build_parser
from tfy_audit._core.errors import UsageError
from tfy_audit._report import REPORT_FLAGS, ReportOptions, options_from_text
from tfy_audit._report.filters import code, text, who
from tfy_audit._report.queries import query
from tfy_audit._report.render import _environment

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def test_since_is_a_start_as_for_sync() -> None:
    parser = build_parser()
    # a duration counts back from now, whatever --end says (not a length back from --end)
    args = parser.parse_args(["report", "--since", "7d", "--end", "2026-03-01"])
    options = report_options(args, now=NOW)
    assert (options.start, options.end) == (
        NOW - timedelta(days=7),
        datetime(2026, 3, 1, tzinfo=UTC),
    )
    # and a date is a start, as `sync --since 2026-02-01` is
    options = report_options(parser.parse_args(["report", "--since", "2026-02-01"]), now=NOW)
    assert (options.start, options.end) == (datetime(2026, 2, 1, tzinfo=UTC), None)
    assert options.range(NOW) == (datetime(2026, 2, 1, tzinfo=UTC), NOW)


def test_since_refuses_a_bare_number_as_sync_does() -> None:
    with pytest.raises(UsageError, match="--since '90' has no unit"):
        options_from_text({"since": "90"}, now=NOW)


def test_defaults_are_declared_once() -> None:
    options = ReportOptions()
    assert (options.start, options.end, options.timezone) == (None, None, "UTC")
    assert options.work_hours == (8, 19) and options.severity_rules == ()
    assert options.range(NOW) == (NOW - timedelta(days=30), NOW)
    assert options_from_text({}, now=NOW) == options
    helps = {flag.flag: flag.help_text() for flag in REPORT_FLAGS}
    assert helps["--timezone"].endswith("(default: UTC)")
    assert helps["--work-hours"].endswith("(default: 08-19)")
    assert helps["--severity-rules"].endswith("(default: none)")
    assert helps["--start"].endswith("(default: 30 days before --end)")
    assert helps["--end"].endswith("(default: now)")
    assert {flag.dest for flag in REPORT_FLAGS} == {
        "since",
        "start",
        "end",
        "timezone",
        "work_hours",
        "severity_rules",
    }


def test_options_are_checked_when_made() -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        ReportOptions(timezone="Europe/Atlantis")
    with pytest.raises(UsageError, match="working hours 19-08"):
        ReportOptions(work_hours=(19, 8))
    with pytest.raises(UsageError, match="not before its end"):
        ReportOptions(start=NOW, end=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        ReportOptions(end=datetime(2026, 3, 3))


def test_every_sql_file_fills_in_and_a_missing_value_is_an_error() -> None:
    names = sorted(
        entry.name.removesuffix(".sql")
        for entry in resources.files("tfy_audit._report.sql").iterdir()
        if entry.name.endswith(".sql")
    )
    assert "top_subjects" in names and "coverage" in names
    with pytest.raises(KeyError, match="within"):
        query("latest", logs="t", limit=1)
    sql = query("latest", logs='"d"."audit_logs"', within="1 = 1", limit=50)
    assert sql.splitlines()[-1] == "LIMIT 50" and "$" not in sql


def test_templates_escape_and_refuse_undefined_names() -> None:
    env = _environment()
    assert env.autoescape is True
    page = env.from_string("<p>{{ value }}</p>{{ value|text }}").render(value="<b>'x'</b>")
    assert page == "<p>&lt;b&gt;&#39;x&#39;&lt;/b&gt;</p>&lt;b&gt;&#x27;x&#x27;&lt;/b&gt;"
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()


def test_templates_are_compacted_as_they_load() -> None:
    source, _, _ = _environment().loader.get_source(_environment(), "macros.html.j2")  # type: ignore[union-attr]
    assert "\n" not in source and "  <" not in source


def test_cell_helpers_escape_service_text() -> None:
    assert text(None) == "—" and text("") == "—"
    assert code("DELETE_<x>") == "<code>DELETE_<wbr>&lt;x&gt;</code>"
    assert who("<s>", "Name & co", "user", 'pat"1') == (
        '&lt;s&gt;<div class="small">Name &amp; co · user · PAT pat&quot;1</div>'
    )
