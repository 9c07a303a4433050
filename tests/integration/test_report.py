"""The offline HTML report: its figures, its escaping, that it loads nothing, how it renders."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import uuid
import zlib
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import dlt
import pytest
from tfy_audit.report import ReportSummary, write_report

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
