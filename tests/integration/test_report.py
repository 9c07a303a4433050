"""The offline HTML report: its figures, its escaping, that it loads nothing, how it renders."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import dlt
import pytest
from tfy_audit._cli.commands.report import report_options
from tfy_audit._cli.main import build_parser
from tfy_audit._core.errors import UsageError
from tfy_audit._core.options import DestinationOptions
from tfy_audit._detect import store
from tfy_audit._detect.rules import builtin_rules
from tfy_audit._detect.runner import detect
from tfy_audit._report import ReportOptions, ReportSummary, write_report
from tfy_audit._warehouse.destination import make_pipeline
from tfy_audit._warehouse.severity import TIERS
from tfy_audit._warehouse.view_params import ViewParams
from tfy_audit.simulator import Simulator, SimulatorConfig, SimulatorServer
from tfy_audit.simulator.plants import plant_patterns

from tests.conftest import (
    API_KEY,
    Workspace,
    isolate_env,
    make_simulator,
    run_cli,
    run_cli_captured,
)
from tests.conftest import NOW as CONFTEST_NOW
from tests.integration.test_verify import verify_args
from tests.integration.test_views import (
    SCRIPT_MESSAGE,
    drop_dataset,
    duckdb_pipeline,
    load_fixture,
    postgres_pipeline_or_skip,
)

NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class _Text(HTMLParser):
    """The page's visible text, whitespace collapsed (style contents left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    return " ".join(" ".join(parser.parts).split())


@pytest.fixture(scope="module")
def duckdb_loaded(tmp_path_factory: pytest.TempPathFactory) -> dlt.Pipeline:
    pipeline = duckdb_pipeline(tmp_path_factory.mktemp("report_duckdb"), "report_test")
    load_fixture(pipeline)
    return pipeline


@pytest.fixture(scope="module")
def report(
    duckdb_loaded: dlt.Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ReportSummary, str]:
    out = tmp_path_factory.mktemp("report") / "report.html"
    summary = write_report(duckdb_loaded, out, now=NOW)
    return summary, out.read_text(encoding="utf-8")


def test_summary_figures(report: tuple[ReportSummary, str]) -> None:
    summary, _ = report
    assert (summary.events, summary.subjects, summary.days, summary.sensitive) == (12, 4, 2, 9)
    assert summary.first_event_at == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert summary.last_event_at == datetime(2026, 3, 2, 11, 0, tzinfo=UTC)
    assert summary.last_sync_at == datetime(2026, 3, 2, 12, 0, 5, tzinfo=UTC)
    assert (summary.windows, summary.incomplete_windows) == (2, 1)
    assert summary.path.is_file()
    assert summary.as_dict()["events"] == 12


def test_key_figures_appear(report: tuple[ReportSummary, str]) -> None:
    _, page = report
    text = visible_text(page)
    for phrase in (
        "Events 12",
        "Subjects 4",
        "Active days 2",
        "Date range (UTC) 2026-03-01 → 2026-03-02",
        "Sensitive actions 9",
        "Last sync (UTC) 2026-03-02 12:00:05 23 hours ago",
        "Incomplete windows 1",
        "Windows loaded 2 1 incomplete",
        "generated 2026-03-03 12:00:00 UTC",
    ):
        assert phrase in text, phrase
    # the unknown action on a secret is listed among the sensitive actions, by category
    assert "secret 5" in text and "ROTATE_SIGNING_KEY" in text
    # top subject first, with its latest display name
    assert text.index("bob@acme.io") < text.index("alice@acme.io Alice Liddell")


def test_nothing_external_is_referenced(report: tuple[ReportSummary, str]) -> None:
    _, page = report
    assert "http://" not in page and "https://" not in page
    # no attribute points anywhere but into the page itself (data: URLs, #anchors)
    reference = re.compile(r"""\b(?:src|href|xlink:href|action)\s*=\s*["']?\s*([^"'\s>]*)""", re.I)
    assert all(target.startswith(("data:", "#")) for target in reference.findall(page)), (
        reference.findall(page)
    )
    assert "@import" not in page and "url(" not in page
    assert "<script" not in page.lower()  # the report needs no script at all
    assert "Content-Security-Policy" in page


def test_messages_are_escaped(report: tuple[ReportSummary, str]) -> None:
    _, page = report
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # unicode passes through untouched (the page is UTF-8)
    assert "supprimé ✓ — ünïcødé 日本" in page
    assert SCRIPT_MESSAGE in visible_text(page)


def test_charts_are_inline_svg(report: tuple[ReportSummary, str]) -> None:
    _, page = report
    assert page.count("<svg") == 2
    daily = page[page.index("<svg") : page.index("</svg>")]
    assert daily.count('class="bar"') == 2  # two UTC days
    assert daily.count('class="bar-sensitive"') == 2
    assert "2026-03-01: 5 events, 4 sensitive" in daily
    assert "2026-03-02: 7 events, 5 sensitive" in daily


def test_empty_dataset(tmp_path: Path) -> None:
    pipeline = duckdb_pipeline(tmp_path, "never_loaded")
    summary = write_report(pipeline, tmp_path / "out" / "empty.html", now=NOW)
    assert (summary.events, summary.subjects, summary.days, summary.sensitive) == (0, 0, 0, 0)
    text = visible_text(summary.path.read_text(encoding="utf-8"))
    assert "No events loaded yet." in text
    assert "No sync windows recorded" in text


def test_now_must_be_aware(duckdb_loaded: dlt.Pipeline, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        write_report(duckdb_loaded, tmp_path / "r.html", now=datetime(2026, 3, 3))


@pytest.mark.postgres
def test_postgres_report_matches_duckdb(report: tuple[ReportSummary, str], tmp_path: Path) -> None:
    duck_summary, duck_page = report
    pipeline = postgres_pipeline_or_skip(tmp_path, f"test_report_{uuid.uuid4().hex[:12]}")
    try:
        load_fixture(pipeline)
        summary = write_report(pipeline, tmp_path / "pg.html", now=NOW)
    finally:
        drop_dataset(pipeline)
    assert {**summary.as_dict(), "path": ""} == {**duck_summary.as_dict(), "path": ""}
    page = summary.path.read_text(encoding="utf-8")

    def body(p: str) -> str:
        # the same page but for the header (dataset, destination) and dlt's own load times
        text = visible_text(p[p.index("</header>") :])
        return re.sub(r"last at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "last at <load time>", text)

    assert body(page) == body(duck_page)


# --------------------------------------------------------------------------- in a browser


def _chromium() -> str:
    override = os.environ.get("TFY_AUDIT_CHROMIUM")
    candidates = (override,) if override else CHROMIUM_NAMES
    found = next((path for name in candidates if (path := shutil.which(name))), None)
    if not found:
        reason = f"no Chromium binary found (looked for {', '.join(candidates)})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires it (apt-get install chromium)")
        pytest.skip(reason)
    return found


# Records every error, failed load and CSP violation into attributes of <html>, which
# --dump-dom then shows; `data-loaded` proves the probe itself ran.
_PROBE = """<script>
(function () {
  var errors = [];
  function record(message) {
    errors.push(String(message));
    document.documentElement.setAttribute("data-errors", JSON.stringify(errors));
  }
  window.addEventListener("error", function (e) {
    var t = e.target || {};
    record(e.message || ("failed to load " + (t.src || t.href || t.tagName)));
  }, true);
  document.addEventListener("securitypolicyviolation", function (e) {
    record("CSP " + e.violatedDirective + " " + e.blockedURI);
  });
  var error = console.error;
  console.error = function () {
    record(Array.prototype.join.call(arguments, " "));
    error.apply(console, arguments);
  };
  window.addEventListener("load", function () {
    document.documentElement.setAttribute("data-loaded", "1");
  });
})();
</script>"""


def _probe_copy(page: str, out: Path) -> Path:
    csp = "default-src 'none';"
    assert csp in page
    # the report allows no script; the copy lets the probe (and only inline script) run
    probed = page.replace(csp, csp + " script-src 'unsafe-inline';", 1).replace(
        '<meta charset="utf-8">', '<meta charset="utf-8">' + _PROBE, 1
    )
    out.write_text(probed, encoding="utf-8")
    return out


def _run_chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def _png_pixels(png: bytes) -> tuple[int, int, bytes]:
    """Width, height and the raw (filtered) scanlines of a PNG, to tell a blank one."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    data, pos = b"", 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return width, height, zlib.decompress(data)


@pytest.mark.chromium
def test_renders_in_chromium(report: tuple[ReportSummary, str], tmp_path: Path) -> None:
    binary = _chromium()
    _, page = report
    plain = tmp_path / "report.html"
    plain.write_text(page, encoding="utf-8")
    probed = _probe_copy(page, tmp_path / "probed.html")

    dom_run = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", probed.as_uri())
    dom = dom_run.stdout
    html_tag = re.search(r"<html[^>]*>", dom)
    assert html_tag, dom[:300]
    assert 'data-loaded="1"' in html_tag[0], "the probe did not run: " + html_tag[0]
    assert "data-errors" not in html_tag[0], html_tag[0]
    assert _console_lines(dom_run.stderr) == []
    assert dom.count("<svg") == 2
    assert dom.count("<rect") >= 4
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom

    shot = tmp_path / "report.png"
    shot_run = _run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        plain.as_uri(),
    )
    # the page as shipped (no probe): the browser must not report anything either
    assert _console_lines(shot_run.stderr) == []
    assert shot.is_file()
    png = shot.read_bytes()
    width, height, pixels = _png_pixels(png)
    assert (width, height) == (1280, 2400)
    assert len(png) > 20_000
    assert len(set(pixels)) > 32, "the screenshot is (nearly) blank"
    if os.environ.get("TFY_AUDIT_KEEP_SCREENSHOT"):
        artifacts = REPO / "tests" / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, artifacts / "report.png")


def test_report_on_filesystem_destination(
    report: tuple[ReportSummary, str], tmp_path: Path
) -> None:
    """dlt reads files through an in-memory DuckDB: the same SQL, the same figures."""
    pipeline = dlt.pipeline(
        pipeline_name="report_fs",
        destination=dlt.destinations.filesystem(tmp_path.joinpath("bucket").as_uri()),
        dataset_name="truefoundry_audit",
        pipelines_dir=str(tmp_path / "pipelines"),
    )
    load_fixture(pipeline)
    summary = write_report(pipeline, tmp_path / "fs.html", now=NOW)
    assert {**summary.as_dict(), "path": ""} == {**report[0].as_dict(), "path": ""}


# --------------------------------------------------------------------------- range and panels


def between(text: str, start: str, end: str) -> str:
    """The visible text from `start` up to `end` (a panel of the page)."""
    head = text.index(start)
    return text[head : text.index(end, head)]


def test_new_panels_show_the_fixture(report: tuple[ReportSummary, str]) -> None:
    summary, page = report
    assert summary.range_start == datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    assert summary.range_end == NOW
    assert summary.tiers == {"critical": 1, "high": 3, "notable": 5}
    assert (summary.new_subjects, summary.off_hours) == (4, 8)
    text = visible_text(page)
    for phrase in (
        "Range 2026-02-01 12:00:00 → 2026-03-03 12:00:00 UTC (30 days) compared with "
        "2026-01-02 12:00:00 → 2026-02-01 12:00:00 working hours 08-19 Mon-Fri, UTC",
        "Events 12 ▲ +12 vs 0 before",
        "New subjects 4 ▲ +4 vs 0 before",
        "Critical actions 1 ▲ +1 vs 0 before",
        "Off-hours events 8 66.7%",
        "Freshness newest event 2026-03-02 11:00:00 1 day ago",
        "Last verify never verified",
    ):
        assert phrase in text, phrase
    severity = between(text, "Sensitive actions by severity", "Grants and role changes")
    critical = between(severity, "critical all 1", "high all 3")
    assert "APPLY_ EXTERNAL_ IDENTITY_ PROVIDER" in critical and "gha-runner" in critical
    high = between(severity, "high all 3", "notable all 5")
    assert [a for a in ("DELETE_ SECRET", "CREATE_ PAT", "APPLY_ ROLE_ BINDING") if a in high] == [
        "DELETE_ SECRET",
        "CREATE_ PAT",
        "APPLY_ ROLE_ BINDING",
    ]
    grants = between(text, "Grants and role changes", "Subjects seen for the first time")
    assert "Grants grant all 1" in grants and "role-binding · admins" in grants
    assert "Revocations revoke all 0" in grants
    first = between(text, "Subjects seen for the first time", "Dormant tokens")
    assert "alice@acme.io" in first
    assert first.index("gha-runner") < first.index("ci-bot") < first.index("bob@acme.io")
    assert "No token has been idle for 30 days." in between(text, "Dormant tokens", "Off-hours")
    off = between(text, "Off-hours activity", "External identities and virtual accounts")
    assert "outside 08:00-19:00 Mon-Fri in UTC: 8 events, 66.7%" in off
    assert "alice@acme.io Alice Liddell · user 4 2 bob@acme.io Bob · user 3 2 ci-bot" in off
    external = between(text, "External identities and virtual accounts", "Usage per token")
    assert "Virtual accounts 1 active, 2 events" in external
    assert "ci-bot — 2 2 2026-03-02 08:00:00" in external
    tokens = between(text, "Usage per token", "By workspace")
    assert "deploy-token account token ci-bot 2 ▲ +2 2 2026-03-02 08:00:00" in tokens
    assert "ws-prod — 4 ▲ +4 2 1" in between(text, "By workspace", "By cluster")


def test_range_is_compared_with_the_previous_one(
    duckdb_loaded: dlt.Pipeline, tmp_path: Path
) -> None:
    # [2 March 00:00, 3 March 12:00) against the 36 hours before it
    start = datetime(2026, 3, 2, tzinfo=UTC)
    summary = write_report(duckdb_loaded, tmp_path / "r.html", ReportOptions(start=start), now=NOW)
    assert (summary.events, summary.subjects, summary.days) == (7, 4, 1)
    assert summary.tiers == {"critical": 1, "high": 2, "notable": 2}
    assert (summary.new_subjects, summary.off_hours) == (1, 3)
    text = visible_text(summary.path.read_text(encoding="utf-8"))
    assert "Events 7 ▲ 40% vs 5 before" in text
    assert "Sensitive actions 5 71.4% of events · ▲ 25% vs 4 before" in text
    assert "compared with 2026-02-28 12:00:00 → 2026-03-02 00:00:00" in text
    assert "CREATE_ SECRET" not in between(text, "Sensitive actions by", "Grants and role")


def test_dormant_tokens_count_back_from_the_end(
    duckdb_loaded: dlt.Pipeline, tmp_path: Path
) -> None:
    end = datetime(2026, 4, 15, tzinfo=UTC)
    summary = write_report(duckdb_loaded, tmp_path / "r.html", ReportOptions(end=end), now=NOW)
    assert summary.events == 0
    text = visible_text(summary.path.read_text(encoding="utf-8"))
    assert "Events 0 ▼ 100% vs 12 before" in text
    dormant = between(text, "Dormant tokens", "Off-hours activity")
    assert "deploy-token account token ci-bot 2026-03-02 08:00:00 43 2" in dormant


def test_off_hours_follow_the_zone_and_hours(duckdb_loaded: dlt.Pipeline, tmp_path: Path) -> None:
    options = ReportOptions(timezone="Asia/Tokyo", work_hours=(9, 18))
    summary = write_report(duckdb_loaded, tmp_path / "r.html", options, now=NOW)
    assert summary.off_hours == 8
    page = summary.path.read_text(encoding="utf-8")
    text = visible_text(page)
    off = between(text, "Off-hours activity", "External identities and virtual accounts")
    assert "outside 09:00-18:00 Mon-Fri in Asia/Tokyo" in off
    # DELETE_SECRET at 11:00 UTC is 20:00 in Tokyo; the 00:30 UTC events (09:30) are inside
    assert "When (Asia/Tokyo)" in off and "2026-03-02 20:00:00 DELETE_ SECRET" in off
    assert "PAUSE_ APPLICATION" not in off
    assert 'title="Mon 20:00 1 events"' in page


def test_user_severity_rules_reach_the_report(duckdb_loaded: dlt.Pipeline, tmp_path: Path) -> None:
    rules = tmp_path / "rules.csv"
    rules.write_text(
        "severity,action,resource_type,resource_name\ncritical,CREATE_SECRET,secret,api-key\n",
        encoding="utf-8",
    )
    argv = ["report", "--severity-rules", str(rules), "--timezone", "Asia/Tokyo"]
    argv.extend(["--work-hours", "09-18", "--since", "30d"])
    args = build_parser().parse_args(argv)
    options = report_options(args, now=NOW)
    assert options.start == NOW - timedelta(days=30) and options.end is None
    summary = write_report(duckdb_loaded, tmp_path / "r.html", options, now=NOW)
    assert summary.tiers == {"critical": 2, "high": 3, "notable": 4}


def test_report_options_are_checked() -> None:
    parser = build_parser()
    with pytest.raises(UsageError, match="give one of them"):
        report_options(parser.parse_args(["report", "--since", "7d", "--start", "2026-03-01"]))
    with pytest.raises(UsageError, match="HH-HH"):
        report_options(parser.parse_args(["report", "--work-hours", "8 to 7"]))
    with pytest.raises(UsageError, match="unknown time zone"):
        report_options(parser.parse_args(["report", "--timezone", "Europe/Atlantis"]))
    options = report_options(
        parser.parse_args(["report", "--start", "2026-03-01", "--end", "2026-03-02"]), now=NOW
    )
    assert (options.start, options.end) == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
    )


def test_empty_range_is_a_usage_error(duckdb_loaded: dlt.Pipeline, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not before its end"):
        write_report(duckdb_loaded, tmp_path / "r.html", ReportOptions(start=NOW), now=NOW)


# Each panel's "nothing here" line: the demo's report must show none of them.
EMPTY_PANEL_LINES = (
    "No critical actions in this range.",
    "No high actions in this range.",
    "No grants in this range.",
    "No revokes in this range.",
    "No critical or high changes.",
    "No new subjects in this range.",
    "No token has been idle for 30 days.",
    "No off-hours activity in this range.",
    "No external identity activity in this range.",
    "No virtual account activity in this range.",
    "No service account activity in this range.",
    "None used in this range.",
    "No workspace activity in this range.",
    "No cluster activity in this range.",
    "never verified",
    "No sync windows recorded",
    "No detection has run on this dataset",
    "No alerts in this range.",
)


@pytest.mark.chromium
def test_demo_report_fills_every_panel_in_chromium(tmp_path: Path) -> None:
    """The demo's history (40,000 events over 90 days, seed 7), synced with detection and
    verified: every panel has rows, and the page renders with no error and no request."""
    binary = _chromium()
    ws = Workspace(tmp_path / "demo.duckdb", tmp_path / "pipelines")
    with SimulatorServer(make_simulator(40_000, days=90, seed=7)) as srv:
        assert run_cli(*ws.sync_args(srv.url, "--detect")) == 0
        assert run_cli(*verify_args(ws, srv.url)) == 0
    out = tmp_path / "report.html"
    assert (
        run_cli(
            *("report", "--db", str(ws.db), "--pipelines-dir", str(ws.pipelines_dir)),
            *("--out", str(out), "--end", CONFTEST_NOW.isoformat()),
            *("--timezone", "Europe/Berlin", "--work-hours", "08-19"),
        )
        == 0
    )
    page = out.read_text(encoding="utf-8")
    text = visible_text(page)
    assert [line for line in EMPTY_PANEL_LINES if line in text] == []
    assert "every day matches" in text
    dormant = between(text, "Dormant tokens", "Off-hours activity")
    assert all(t in dormant for t in ("judy-cli", "grafana-token", "terraform-sa-token"))
    first = between(text, "Subjects seen for the first time", "Dormant tokens")
    assert all(s in first for s in ("ext.contractor@acme.com", "pentest@redteam.example"))
    # the alerts whose events overlap the report's range, the last 30 days
    (in_range,) = ws.query(
        "select count(*) from truefoundry_audit.alerts where last_seen >= ? and first_seen < ?",
        [CONFTEST_NOW - timedelta(days=30), CONFTEST_NOW],
    )[0]
    assert in_range > 0 and f"Alerts {in_range:,} in this range" in text

    probed = _probe_copy(page, tmp_path / "probed.html")
    dom_run = _run_chromium(binary, tmp_path / "profile-dom", "--dump-dom", probed.as_uri())
    html_tag = re.search(r"<html[^>]*>", dom_run.stdout)
    assert html_tag and 'data-loaded="1"' in html_tag[0] and "data-errors" not in html_tag[0]
    assert _console_lines(dom_run.stderr) == []
    shot = tmp_path / "report-demo.png"
    shot_run = _run_chromium(
        binary,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1280,8000",
        out.as_uri(),
    )
    assert _console_lines(shot_run.stderr) == []
    width, height, pixels = _png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 8000) and len(set(pixels)) > 32
    if os.environ.get("TFY_AUDIT_KEEP_SCREENSHOT"):
        artifacts = REPO / "tests" / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, artifacts / "report-demo.png")


def test_the_report_never_counts_history_skipped_by_since_as_zero(tmp_path: Path) -> None:
    """`sync --since 10d` skipped older history on purpose: the default report (30 days,
    compared with the 30 before) says from when events were loaded instead of comparing with
    "0 before", and the days before it are not shown as a drop."""
    ws = Workspace(tmp_path / "since.duckdb", tmp_path / "pipelines")
    with SimulatorServer(make_simulator(3_000, days=40)) as srv:
        assert run_cli(*ws.sync_args(srv.url, "--since", "10d")) == 0
    (start,) = ws.query("select range_start from truefoundry_audit.sync_runs")[0]
    first = start.astimezone(UTC)
    out = tmp_path / "report.html"
    report_args = ("report", "--db", str(ws.db), "--pipelines-dir", str(ws.pipelines_dir))
    assert run_cli(*report_args, "--out", str(out)) == 0
    text = visible_text(out.read_text(encoding="utf-8"))
    assert "before 0" not in text and "vs 0 before" not in text
    at = f"{first:%Y-%m-%d %H:%M:%S}"
    assert f"History from (UTC) {at} where the first sync started (--since)" in text
    events = between(text, "Events ", "Subjects ")
    assert f"no events loaded before {at} to compare with" in events


# --------------------------------------------------------------------------- alerts section

# The rule pack's plants (simulator/plants.py) alone, on a fixed past day: one alert per rule.
ALERT_END = datetime(2026, 11, 5, tzinfo=UTC)
ALERT_START = ALERT_END - timedelta(days=4)
PLANTS = plant_patterns(ALERT_END - timedelta(days=1))
NO_DETECTION = (
    "No detection has run on this dataset: run tfy-audit sync --detect to run the rule pack "
    "after each sync."
)


def test_without_detection_the_alerts_section_says_how_to_turn_it_on(
    report: tuple[ReportSummary, str],
) -> None:
    summary, page = report
    assert summary.alerts is None and summary.as_dict()["alerts"] is None
    text = visible_text(page)
    assert between(text, "Alerts", "Events per") == f"Alerts {NO_DETECTION} "


@dataclass(frozen=True)
class Alerted:
    """The planted warehouse after one detection pass, with some alerts marked delivered."""

    options: DestinationOptions
    summary: ReportSummary
    page: str
    critical: frozenset[str]  # alert ids delivered to the webhook
    slack: str  # the one alert delivered to Slack


def _alerted(options: DestinationOptions, out: Path) -> Alerted:
    """Sync the plants to `options`' destination, detect, deliver the critical alerts to the
    webhook and the first of them to Slack, and write the report of the plants' days."""
    target = ["--db", options.db]
    if options.destination != "duckdb":
        target = ["--destination", options.destination, "--dataset", options.dataset]
    events = [e for p in PLANTS for e in p.events]
    with SimulatorServer(Simulator(SimulatorConfig(api_key=API_KEY), events)) as srv:
        since = (ALERT_START - timedelta(days=30)).isoformat()
        args = ["sync", "--host", srv.url, "--no-progress", "--since", since, "--workers", "0"]
        assert run_cli(*args, *target, "--pipelines-dir", options.pipelines_dir or "") == 0
    pipeline = make_pipeline(options)
    params = ViewParams(timezone="Europe/Berlin", work_start=8, work_end=19)
    found = detect(pipeline, builtin_rules(), ALERT_START, ALERT_END, params=params)
    assert found.problems == [] and len(found.new_alerts) == len(PLANTS)
    critical = sorted(a["alert_id"] for a in found.found if a["severity"] == "critical")
    with pipeline.sql_client() as client:
        store.mark_delivered(client, critical, "webhook", ALERT_END)
        store.mark_delivered(client, critical[:1], "slack", ALERT_END)
    report_range = ReportOptions(start=ALERT_START, end=ALERT_END)
    summary = write_report(pipeline, out, report_range, now=ALERT_END)
    page = out.read_text(encoding="utf-8")
    return Alerted(options, summary, page, frozenset(critical), critical[0])


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerted]:
    root = tmp_path_factory.mktemp("report_alerts")
    options = DestinationOptions(db=str(root / "audit.duckdb"), pipelines_dir=str(root / "p"))
    with pytest.MonkeyPatch.context() as mp:
        isolate_env(mp, tmp_path_factory)
        yield _alerted(options, root / "report.html")


@pytest.mark.xdist_group("test_report_alerts")
def test_alerts_per_rule(alerted: Alerted) -> None:
    section = alerted.summary.alerts
    assert section is not None
    events = {p.rule_id: len(p.alert_event_ids) for p in PLANTS}
    assert {r.rule_id: (r.alerts, r.events) for r in section.rules} == {
        rule: (1, n) for rule, n in events.items()
    }
    assert section.total == len(PLANTS)
    rules = {r.id: r for r in builtin_rules()}
    # critical rules first, then high ones; each row names the rule as its file does
    assert [r.severity for r in section.rules] == sorted(
        (rules[r.rule_id].severity for r in section.rules), key=TIERS.index
    )
    shown_rules = between(visible_text(alerted.page), "Alerts", "Most recent alerts")
    for row in section.rules:
        rule = rules[row.rule_id]
        assert (row.title, row.severity, row.attack) == (rule.title, rule.severity, rule.attack)
        line = f"{rule.title} {rule.severity} {', '.join(rule.attack)} 1 {events[rule.id]}"
        assert line in shown_rules, line
    assert shown_rules.startswith(f"Alerts {len(PLANTS)} in this range")


@pytest.mark.xdist_group("test_report_alerts")
def test_recent_alerts_with_their_delivery_state(alerted: Alerted) -> None:
    section = alerted.summary.alerts
    assert section is not None
    total, webhook = len(PLANTS), len(alerted.critical)
    assert section.channels == ("slack", "webhook")
    assert section.pending == {"slack": total - 1, "webhook": total - webhook}
    recent = section.recent
    assert len(recent) == total
    assert [a.last_seen for a in recent] == sorted((a.last_seen for a in recent), reverse=True)
    keys = {(p.rule_id, tuple(sorted(p.dedup_key.items()))) for p in PLANTS}
    assert {(a.rule_id, tuple(sorted(a.dedup_key.items()))) for a in recent} == keys
    assert {a.alert_id: (tuple(a.delivered), a.pending) for a in recent} == {
        a.alert_id: (
            ("slack", "webhook") if a.alert_id == alerted.slack
            else ("webhook",) if a.alert_id in alerted.critical else (),
            () if a.alert_id == alerted.slack
            else ("slack",) if a.alert_id in alerted.critical else ("slack", "webhook"),
        )
        for a in recent
    }  # fmt: skip
    text = visible_text(alerted.page)
    assert f"{total} in this range · {total - 1} pending on slack · {total - webhook} " in text
    listed = between(text, "Most recent alerts", "Events per")
    assert listed.startswith(f"Most recent alerts, by last event all {total} ")
    assert listed.count("webhook delivered") == webhook
    assert listed.count("slack delivered") == 1
    assert listed.count("webhook pending") == total - webhook
    latest = recent[0]
    key = " ".join(f"{k}={v}" for k, v in latest.dedup_key.items())
    assert f"{latest.rule_id} {latest.severity} {key} {latest.first_seen:%Y-%m-%d %H:%M:%S}" in (
        listed
    )


@pytest.mark.xdist_group("test_report_alerts")
def test_alerts_outside_the_range_are_left_out(alerted: Alerted, tmp_path: Path) -> None:
    pipeline = make_pipeline(alerted.options)
    later = ReportOptions(start=ALERT_END, end=ALERT_END + timedelta(days=1))
    summary = write_report(pipeline, tmp_path / "r.html", later, now=ALERT_END)
    assert summary.alerts is not None
    assert (summary.alerts.total, summary.alerts.rules, summary.alerts.recent) == (0, [], [])
    assert summary.alerts.pending == {"slack": 0, "webhook": 0}
    text = visible_text(summary.path.read_text(encoding="utf-8"))
    assert "Alerts 0 in this range · 0 pending on slack · 0 pending on webhook No alerts in " \
        "this range." in text  # fmt: skip
    assert NO_DETECTION not in text


@pytest.mark.xdist_group("test_report_alerts")
def test_report_json_carries_the_alerts(
    alerted: Alerted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.html"
    proc = run_cli_captured(
        capsys,
        *("report", "--db", alerted.options.db or "", "--json", "--out", str(out)),
        *("--pipelines-dir", alerted.options.pipelines_dir or ""),
        *("--start", ALERT_START.isoformat(), "--end", ALERT_END.isoformat()),
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert alerted.summary.alerts is not None
    assert doc["alerts"] == alerted.summary.alerts.as_dict()
    assert {r["rule_id"]: r["alerts"] for r in doc["alerts"]["rules"]} == {
        p.rule_id: 1 for p in PLANTS
    }
    assert doc["alerts"]["pending"] == {
        "slack": len(PLANTS) - 1,
        "webhook": len(PLANTS) - len(alerted.critical),
    }


@pytest.mark.postgres
@pytest.mark.xdist_group("test_report_alerts")
def test_postgres_alerts_section_matches_duckdb(
    alerted: Alerted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg2

    dataset = f"report_alerts_{uuid.uuid4().hex[:10]}"
    url = "postgresql://postgres:x@127.0.0.1:5432/test"
    postgres_pipeline_or_skip(tmp_path, dataset)  # skips when the server is down
    monkeypatch.setenv("DESTINATION__POSTGRES__CREDENTIALS", url)
    options = DestinationOptions(
        destination="postgres", dataset=dataset, pipelines_dir=str(tmp_path / "p")
    )
    try:
        found = _alerted(options, tmp_path / "pg.html")
    finally:
        with psycopg2.connect(url) as con, con.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}_staging" CASCADE')
    assert found.summary.alerts is not None and alerted.summary.alerts is not None
    assert found.summary.alerts.as_dict() == alerted.summary.alerts.as_dict()
    section = between(visible_text(found.page), "Alerts", "Events per")
    assert section == between(visible_text(alerted.page), "Alerts", "Events per")
