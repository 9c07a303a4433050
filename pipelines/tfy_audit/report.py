"""A one-file HTML report of the loaded audit trail that opens offline.

Everything is inline: CSS, and charts drawn here as SVG. The page runs no script, and its
Content-Security-Policy forbids loading anything, so it can be mailed or archived as evidence
and shows the same thing years later. Every value from the data goes through `html.escape`:
audit messages are written by users of the audited system.

The data is read through the pipeline's SQL client with SQL that DuckDB and PostgreSQL both
accept; sensitive actions, daily counts and subject activity use the SELECTs of the views in
`pipelines/tfy_audit/sql/`, so the report and the views always agree (and the views need not exist).
"""

from __future__ import annotations

import html
import logging
import math
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import dlt
from dlt.destinations.exceptions import DatabaseUndefinedRelation

from .lakehouse import DeltaSqlClient, is_delta
from .views import view_select

logger = logging.getLogger(__name__)

AUDIT_LOGS: Final = "audit_logs"
SYNC_WINDOWS: Final = "sync_windows"
DLT_LOADS: Final = "_dlt_loads"

LATEST_LIMIT: Final = 50
TOP_ACTIONS: Final = 15
TOP_SUBJECTS: Final = 10
INCOMPLETE_LIMIT: Final = 20

# A chart with more bars than this is unreadable: days are grouped into weeks, then months.
_MAX_BARS: Final = 180
# Longer labels of the bar chart are cut (the full name is in the tooltip).
_LABEL_CHARS: Final = 44

Row = tuple[Any, ...]


@dataclass(frozen=True)
class ReportSummary:
    """The figures the report shows, for the CLI to print."""

    path: Path
    events: int
    subjects: int
    days: int  # UTC days with at least one event
    sensitive: int
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    last_sync_at: datetime | None = None
    windows: int = 0
    incomplete_windows: int = 0

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "path": str(self.path),
            "events": self.events,
            "subjects": self.subjects,
            "days": self.days,
            "sensitive": self.sensitive,
            "first_event_at": iso(self.first_event_at),
            "last_event_at": iso(self.last_event_at),
            "last_sync_at": iso(self.last_sync_at),
            "windows": self.windows,
            "incomplete_windows": self.incomplete_windows,
        }


@dataclass(frozen=True)
class _Coverage:
    windows: int
    incomplete: int
    covered_from: datetime | None
    covered_to: datetime | None
    rows_read: int
    syncs: int
    last_fetched_at: datetime | None
    incomplete_rows: list[Row]


@dataclass
class _ReportData:
    dataset: str
    destination: str
    now: datetime
    events: int = 0
    subjects: int = 0
    days: int = 0
    sensitive: int = 0
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    daily: list[tuple[date, int, int]] = field(default_factory=list)
    top_actions: list[tuple[str | None, int]] = field(default_factory=list)
    top_subjects: list[Row] = field(default_factory=list)
    sensitive_by_category: list[tuple[str, int]] = field(default_factory=list)
    sensitive_latest: list[Row] = field(default_factory=list)
    latest: list[Row] = field(default_factory=list)
    coverage: _Coverage | None = None
    loads: int = 0
    last_load_at: datetime | None = None

    @property
    def last_sync_at(self) -> datetime | None:
        if self.coverage and self.coverage.last_fetched_at:
            return self.coverage.last_fetched_at
        return self.last_load_at


def write_report(
    pipeline: dlt.Pipeline, out: Path, *, now: datetime | None = None
) -> ReportSummary:
    """Write the HTML report of the pipeline's dataset to `out`; returns what it shows.

    `now` (UTC-aware; default: the current time) is the report's "generated at" time and the
    reference for "how long ago". The file is replaced atomically.
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    with DeltaSqlClient(pipeline) if is_delta(pipeline) else pipeline.sql_client() as client:
        data = _collect(client, pipeline, now)
    document = _render_html(data)
    _write_atomically(Path(out), document)
    summary = ReportSummary(
        path=Path(out),
        events=data.events,
        subjects=data.subjects,
        days=data.days,
        sensitive=data.sensitive,
        first_event_at=data.first_event_at,
        last_event_at=data.last_event_at,
        last_sync_at=data.last_sync_at,
        windows=data.coverage.windows if data.coverage else 0,
        incomplete_windows=data.coverage.incomplete if data.coverage else 0,
    )
    logger.debug(
        "wrote report %s: %d events, %d subjects, %d sensitive",
        out,
        summary.events,
        summary.subjects,
        summary.sensitive,
    )
    return summary


# --------------------------------------------------------------------------- reading


def _rows(client: Any, sql: str) -> list[Row]:
    result = client.execute_sql(sql)
    return [tuple(row) for row in result] if result else []


def _one(client: Any, sql: str) -> Row:
    rows = _rows(client, sql)
    return rows[0] if rows else ()


def _exists(client: Any, table: str) -> bool:
    """Whether the table can be read: a dataset may predate `sync_windows`, or be empty."""
    try:
        client.execute_sql(f"SELECT 1 FROM {client.make_qualified_table_name(table)} WHERE 1 = 0")
    except DatabaseUndefinedRelation:
        return False
    return True


def _int(value: Any) -> int:
    # PostgreSQL's sum() of bigint is numeric (a Decimal here); None when there are no rows
    return int(value) if value is not None else 0


def _utc(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    # destinations return timestamptz in the session's zone, or naive values meant as UTC
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _utc_rows(rows: Iterable[Row]) -> list[Row]:
    return [tuple(_utc(v) if isinstance(v, datetime) else v for v in row) for row in rows]


def _collect(client: Any, pipeline: dlt.Pipeline, now: datetime) -> _ReportData:
    destination = pipeline.destination.destination_name if pipeline.destination else "unknown"
    data = _ReportData(dataset=pipeline.dataset_name, destination=destination, now=now)
    dataset = client.fully_qualified_dataset_name()
    logs = client.make_qualified_table_name(AUDIT_LOGS)
    if _exists(client, AUDIT_LOGS):
        _collect_events(client, data, dataset, logs)
    else:
        logger.warning("no %s table in %s: the report will be empty", AUDIT_LOGS, dataset)
    if _exists(client, SYNC_WINDOWS):
        data.coverage = _collect_coverage(client, client.make_qualified_table_name(SYNC_WINDOWS))
    if _exists(client, DLT_LOADS):
        loads = client.make_qualified_table_name(DLT_LOADS)
        count, last = _one(
            client, f"SELECT count(*), max(inserted_at) FROM {loads} WHERE status = 0"
        )
        data.loads, data.last_load_at = _int(count), _utc(last)
    return data


def _collect_events(client: Any, data: _ReportData, dataset: str, logs: str) -> None:
    utc_day = "CAST(timezone('UTC', created_at) AS DATE)"
    events, subjects, days, first, last = _one(
        client,
        f"SELECT count(*), count(DISTINCT subject__subject_id), count(DISTINCT {utc_day}),"
        f" min(created_at), max(created_at) FROM {logs}",
    )
    data.events, data.subjects, data.days = _int(events), _int(subjects), _int(days)
    data.first_event_at, data.last_event_at = _utc(first), _utc(last)

    daily_sql = view_select("daily_activity", dataset)
    sensitive_sql = view_select("sensitive_actions", dataset)
    subjects_sql = view_select("subject_activity", dataset)

    totals = _rows(
        client,
        f"SELECT day, sum(events) FROM (\n{daily_sql}\n) AS d"
        " WHERE day IS NOT NULL GROUP BY day ORDER BY day",
    )
    flagged: dict[Any, Any] = dict(
        _rows(
            client,
            f"SELECT {utc_day} AS day, count(*) FROM (\n{sensitive_sql}\n) AS s"
            f" WHERE created_at IS NOT NULL GROUP BY {utc_day}",
        )
    )
    data.daily = [(day, _int(n), _int(flagged.get(day))) for day, n in totals]

    data.top_actions = [
        (action, _int(n))
        for action, n in _rows(
            client,
            f"SELECT action, count(*) AS n FROM {logs} GROUP BY action"
            f" ORDER BY n DESC, action NULLS LAST LIMIT {TOP_ACTIONS}",
        )
    ]
    data.top_subjects = _utc_rows(
        _rows(
            client,
            "SELECT subject_id, subject_type, subject_slug, subject_display_name, events,"
            f" distinct_actions, last_seen_at, last_action FROM (\n{subjects_sql}\n) AS a"
            f" ORDER BY events DESC, subject_id LIMIT {TOP_SUBJECTS}",
        )
    )
    data.sensitive_by_category = [
        (str(category), _int(n))
        for category, n in _rows(
            client,
            f"SELECT category, count(*) AS n FROM (\n{sensitive_sql}\n) AS s"
            " GROUP BY category ORDER BY n DESC, category",
        )
    ]
    data.sensitive = sum(n for _, n in data.sensitive_by_category)
    data.sensitive_latest = _utc_rows(
        _rows(
            client,
            "SELECT created_at, category, action, resource_type, resource_name, resource_fqn,"
            " subject_slug, subject_display_name, subject_type, subject_pat_name, message"
            f" FROM (\n{sensitive_sql}\n) AS s"
            f" ORDER BY created_at DESC NULLS LAST, id DESC LIMIT {LATEST_LIMIT}",
        )
    )
    data.latest = _utc_rows(
        _rows(
            client,
            "SELECT created_at, action, resource_type, resource_name, resource_fqn,"
            " subject__subject_slug, subject__subject_display_name, subject__subject_type,"
            f" message FROM {logs}"
            f" ORDER BY created_at DESC NULLS LAST, id DESC LIMIT {LATEST_LIMIT}",
        )
    )


def _collect_coverage(client: Any, windows: str) -> _Coverage:
    incomplete = "CASE WHEN complete THEN 0 ELSE 1 END"
    count, missing, start, end, rows_read, syncs, fetched = _one(
        client,
        f"SELECT count(*), sum({incomplete}), min(window_start), max(window_end),"
        f" sum(rows_read), count(DISTINCT sync_id), max(fetched_at) FROM {windows}",
    )
    incomplete_rows = _utc_rows(
        _rows(
            client,
            "SELECT window_start, window_end, filter_key, planned_count, service_total,"
            f" rows_read, fetched_at FROM {windows} WHERE {incomplete} = 1"
            f" ORDER BY fetched_at DESC NULLS LAST, window_start DESC LIMIT {INCOMPLETE_LIMIT}",
        )
    )
    return _Coverage(
        windows=_int(count),
        incomplete=_int(missing),
        covered_from=_utc(start),
        covered_to=_utc(end),
        rows_read=_int(rows_read),
        syncs=_int(syncs),
        last_fetched_at=_utc(fetched),
        incomplete_rows=incomplete_rows,
    )


def _write_atomically(out: Path, document: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than mkstemp, whose 0600 would survive the rename
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(document)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    """Escaped text of a value; an absent value is a dash."""
    if value is None or value == "":
        return "—"
    return html.escape(str(value), quote=True)


def _code(value: Any) -> str:
    """An identifier such as an action name, breakable after its underscores."""
    if value is None or value == "":
        return "—"
    return f"<code>{_e(value).replace('_', '_<wbr>')}</code>"


def _n(value: int) -> str:
    return f"{value:,}"


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return ""
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _shown(shown: int, total: int) -> str:
    return f"latest {_n(shown)} of {_n(total)}" if shown < total else f"all {_n(total)}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- charts


def _nice_step(span: float) -> int:
    """A round step (1, 2, 5 x 10^k) that divides `span` into about four intervals."""
    raw = max(span / 4, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return int(factor * magnitude)
    return int(10 * magnitude)


def _buckets(daily: Sequence[tuple[date, int, int]]) -> tuple[str, list[tuple[date, int, int]]]:
    """Daily counts with empty days filled in, grouped into weeks or months when too many."""
    if not daily:
        return "day", []
    counts = {day: (n, s) for day, n, s in daily}
    first, last = daily[0][0], daily[-1][0]

    def key_day(d: date) -> date:
        return d

    def key_week(d: date) -> date:
        return d - timedelta(days=d.weekday())

    def key_month(d: date) -> date:
        return d.replace(day=1)

    for unit, key in (("day", key_day), ("week", key_week), ("month", key_month)):
        grouped: dict[date, list[int]] = {}
        day = first
        while day <= last:
            total, flagged = counts.get(day, (0, 0))
            slot = grouped.setdefault(key(day), [0, 0])
            slot[0] += total
            slot[1] += flagged
            day += timedelta(days=1)
        if len(grouped) <= _MAX_BARS or unit == "month":
            return unit, [(k, v[0], v[1]) for k, v in sorted(grouped.items())]
    raise AssertionError("unreachable")


def _daily_chart(daily: Sequence[tuple[date, int, int]]) -> tuple[str, str]:
    """SVG bars of events per bucket, sensitive events overlaid; returns (unit, svg)."""
    unit, series = _buckets(daily)
    if not series:
        return unit, '<p class="empty">No events loaded yet.</p>'
    width, height = 960, 260
    left, right, top, bottom = 56, 12, 14, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(total for _, total, _ in series)
    step = _nice_step(peak)
    ceiling = max(step, math.ceil(peak / step) * step)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="Events per {unit}">'
    ]
    for tick in range(0, ceiling + 1, step):
        y = top + plot_h - plot_h * tick / ceiling
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{_n(tick)}</text>'
        )
    slot = plot_w / len(series)
    bar = max(min(slot * 0.78, 48.0), 1.0)
    for i, (start, total, flagged) in enumerate(series):
        x = left + i * slot + (slot - bar) / 2
        h = plot_h * total / ceiling
        hs = plot_h * flagged / ceiling
        label = f"{unit} of {start.isoformat()}" if unit != "day" else start.isoformat()
        tip = html.escape(f"{label}: {total:,} events, {flagged:,} sensitive")
        parts.append(
            f'<g><title>{tip}</title><rect class="bar" x="{x:.2f}" y="{top + plot_h - h:.2f}" '
            f'width="{bar:.2f}" height="{h:.2f}" rx="{min(2.0, bar / 4):.2f}"/>'
        )
        if flagged:
            parts.append(
                f'<rect class="bar-sensitive" x="{x:.2f}" y="{top + plot_h - hs:.2f}" '
                f'width="{bar:.2f}" height="{hs:.2f}"/>'
            )
        parts.append("</g>")
    labels = min(len(series), 8)
    for j in range(labels):
        i = round(j * (len(series) - 1) / max(labels - 1, 1))
        # keep the ~70px wide date inside the plot rather than clipped at its edges
        x = min(max(left + i * slot + slot / 2, left + 36), width - right - 36)
        start = series[i][0]
        text = start.strftime("%Y-%m") if unit == "month" else start.isoformat()
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{height - 10}" text-anchor="middle">{text}</text>'
        )
    parts.append(
        f'<line class="baseline" x1="{left}" x2="{width - right}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/></svg>'
    )
    return unit, "".join(parts)


def _hbar_chart(items: Sequence[tuple[str, int]], *, label: str) -> str:
    """Horizontal SVG bars, one per (name, count), longest first as given."""
    if not items:
        return '<p class="empty">Nothing to show.</p>'
    width, row, value_w = 640, 26, 64
    # labels are monospace, so their width is known: 0.6em per character at 11px
    longest = max(len(_clip(name, _LABEL_CHARS)) for name, _ in items)
    label_w = max(120, round(longest * 6.6) + 14)
    height = row * len(items) + 4
    peak = max(n for _, n in items) or 1
    track = width - label_w - value_w
    parts = [
        f'<svg class="chart hbar" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{html.escape(label)}">'
    ]
    for i, (name, count) in enumerate(items):
        y = i * row + 2
        w = max(track * count / peak, 2.0)
        parts.append(
            f"<g><title>{html.escape(name)}: {count:,}</title>"
            f'<text class="label" x="{label_w - 10}" y="{y + row / 2 + 4:.1f}" '
            f'text-anchor="end">{html.escape(_clip(name, _LABEL_CHARS))}</text>'
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{w:.2f}" height="{row - 8}" '
            'rx="3"/>'
            f'<text class="value" x="{label_w + w + 6:.2f}" y="{y + row / 2 + 4:.1f}">'
            f"{count:,}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- page


_CSS: Final = """
:root {
  --bg: #f6f7fb; --card: #ffffff; --ink: #1f2933; --muted: #64748b; --line: #e5e7eb;
  --accent: #3b82f6; --accent-soft: #bfdbfe; --warn: #e11d48; --warn-soft: #ffe4e6;
  --ok: #059669; --ok-soft: #d1fae5;
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif;
}
main { max-width: 1280px; margin: 0 auto; padding: 24px 20px 48px; }
header { display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: baseline;
  justify-content: space-between; margin-bottom: 20px; }
h1 { font-size: 24px; margin: 0; letter-spacing: -0.01em; }
h2 { font-size: 16px; margin: 0 0 12px; }
.sub, .muted { color: var(--muted); }
.sub { font-size: 13px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono",
  monospace; font-size: 12px; }
.grid { display: grid; gap: 16px; margin-bottom: 16px; }
.stats { grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); }
.pair { grid-template-columns: repeat(auto-fit, minmax(min(100%, 460px), 1fr)); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 18px; box-shadow: 0 1px 2px rgba(15, 23, 42, 0.04); min-width: 0; }
section.card { margin-bottom: 16px; }
.stat .label { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: 0.04em; }
.stat .value { font-size: 26px; font-weight: 650; margin-top: 2px; }
.stat .value.small { font-size: 16px; font-weight: 600; line-height: 1.4; margin-top: 6px; }
.stat .note { color: var(--muted); font-size: 12px; }
.stat.alert .value { color: var(--warn); }
.legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin: -4px 0 8px; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .baseline { stroke: #cbd5e1; stroke-width: 1; }
svg .axis { fill: var(--muted); font-size: 11px; }
svg .label { fill: var(--ink); font-size: 11px; font-family: ui-monospace, SFMono-Regular,
  Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace; }
svg .value { fill: var(--muted); font-size: 11px; }
svg .bar { fill: var(--accent); }
svg .bar-sensitive { fill: var(--warn); }
svg g:hover .bar { fill: #1d4ed8; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12px;
  border-bottom: 1px solid var(--line); padding: 6px 10px 6px 0; white-space: nowrap; }
td { border-bottom: 1px solid var(--line); padding: 7px 10px 7px 0; vertical-align: top; }
tr:last-child td { border-bottom: 0; }
td.when { white-space: nowrap; font-variant-numeric: tabular-nums; color: var(--muted); }
th.num, td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.msg { max-width: 420px; overflow-wrap: anywhere; }
.small { font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11px;
  font-weight: 600; background: #eef2ff; color: #3730a3; white-space: nowrap; }
.badge.secret { background: #fef3c7; color: #92400e; }
.badge.token { background: #fce7f3; color: #9d174d; }
.badge.access { background: #e0e7ff; color: #3730a3; }
.badge.identity { background: #dcfce7; color: #166534; }
.badge.deletion { background: var(--warn-soft); color: #9f1239; }
.badge.ok { background: var(--ok-soft); color: var(--ok); }
.badge.bad { background: var(--warn-soft); color: var(--warn); }
.chips { display: flex; flex-wrap: wrap; gap: 8px; margin-bottom: 12px; }
.meter { background: #eef2f7; border-radius: 4px; height: 6px; margin-top: 4px; min-width: 60px; }
.meter span { display: block; height: 6px; border-radius: 4px; background: var(--accent); }
.empty { color: var(--muted); font-style: italic; margin: 8px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; font-variant-numeric: tabular-nums; }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""

# Nothing is loaded from anywhere and no script runs: the page works offline by construction.
_CSP: Final = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
    "form-action 'none'"
)

_CATEGORIES: Final = frozenset({"secret", "token", "access", "identity", "deletion"})


def _stat(
    label: str, value: str, note: str = "", *, small: bool = False, alert: bool = False
) -> str:
    cls = "card stat alert" if alert else "card stat"
    value_cls = "value small" if small else "value"
    note_html = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<div class="{cls}"><div class="label">{label}</div>'
        f'<div class="{value_cls}">{value}</div>{note_html}</div>'
    )


def _table(
    headers: Sequence[str], rows: Sequence[str], empty: str, numeric: Sequence[str] = ()
) -> str:
    if not rows:
        return f'<p class="empty">{empty}</p>'
    head = "".join(
        f'<th class="num">{h}</th>' if h in numeric else f"<th>{h}</th>" for h in headers
    )
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _badge(category: Any) -> str:
    cls = str(category) if category in _CATEGORIES else ""
    return f'<span class="badge {cls}">{_e(category)}</span>'


def _who(slug: Any, display: Any, kind: Any, pat: Any = None) -> str:
    name = _e(slug if slug else display)
    extra = [_e(kind)] if kind else []
    if display and slug and display != slug:
        extra.insert(0, _e(display))
    if pat:
        extra.append(f"PAT {_e(pat)}")
    return f'{name}<div class="small">{" · ".join(extra)}</div>' if extra else name


def _what(rtype: Any, name: Any, fqn: Any) -> str:
    head = f"{_e(rtype)} · {_e(name)}" if name else _e(rtype)
    tail = f'<div class="small mono">{_e(fqn)}</div>' if fqn and fqn != name else ""
    return head + tail


def _headline(data: _ReportData) -> str:
    span = "—"
    if data.first_event_at and data.last_event_at:
        span = f"{data.first_event_at:%Y-%m-%d} → {data.last_event_at:%Y-%m-%d}"
    last_sync = data.last_sync_at
    coverage = data.coverage
    incomplete = coverage.incomplete if coverage else 0
    return (
        '<div class="grid stats">'
        + _stat("Events", _n(data.events))
        + _stat("Subjects", _n(data.subjects), "users, teams, accounts…")
        + _stat("Active days", _n(data.days), "UTC days with events")
        + _stat("Date range (UTC)", _e(span), small=True)
        + _stat(
            "Sensitive actions",
            _n(data.sensitive),
            f"{data.sensitive / data.events:.1%} of events" if data.events else "",
        )
        + _stat(
            "Last sync (UTC)",
            _e(_ts(last_sync)),
            _e(_ago(last_sync, data.now)),
            small=True,
        )
        + _stat(
            "Incomplete windows",
            _n(incomplete),
            "see sync coverage" if incomplete else "every window read in full",
            alert=incomplete > 0,
        )
        + "</div>"
    )


def _activity_section(data: _ReportData) -> str:
    unit, svg = _daily_chart(data.daily)
    legend = (
        '<div class="legend"><span><span class="swatch" style="background:#3b82f6"></span>'
        'all events</span><span><span class="swatch" style="background:#e11d48"></span>'
        "sensitive actions</span></div>"
    )
    return (
        f'<section class="card"><h2>Events per {unit} <span class="sub">(UTC)</span></h2>'
        f"{legend}{svg}</section>"
    )


def _top_section(data: _ReportData) -> str:
    actions = [(a if a is not None else "(no action)", n) for a, n in data.top_actions]
    peak = max((int(r[4]) for r in data.top_subjects), default=0) or 1
    subject_rows = [
        "<tr>"
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="num">{_n(int(events))}<div class="meter">'
        f'<span style="width:{100 * int(events) / peak:.1f}%"></span></div></td>'
        f'<td class="num">{_n(int(distinct))}</td>'
        f'<td class="when">{_ts(last_seen)}</td>'
        f"<td>{_code(last_action)}</td>"
        "</tr>"
        for _sid, kind, slug, display, events, distinct, last_seen, last_action in (
            data.top_subjects
        )
    ]
    return (
        '<div class="grid pair">'
        f'<section class="card"><h2>Top actions</h2>'
        f"{_hbar_chart(actions, label='Events per action')}</section>"
        '<section class="card"><h2>Top subjects</h2>'
        + _table(
            ["Subject", "Events", "Actions", "Last seen (UTC)", "Last action"],
            subject_rows,
            "No subjects yet.",
            numeric=("Events", "Actions"),
        )
        + "</section></div>"
    )


def _sensitive_section(data: _ReportData) -> str:
    chips = "".join(
        f"<span>{_badge(category)} {_n(n)}</span>" for category, n in data.sensitive_by_category
    )
    rows = [
        "<tr>"
        f'<td class="when">{_ts(when)}</td>'
        f"<td>{_badge(category)}</td>"
        f"<td>{_code(action)}</td>"
        f"<td>{_what(rtype, name, fqn)}</td>"
        f"<td>{_who(slug, display, kind, pat)}</td>"
        f'<td class="msg">{_e(message)}</td>'
        "</tr>"
        for when, category, action, rtype, name, fqn, slug, display, kind, pat, message in (
            data.sensitive_latest
        )
    ]
    return (
        '<section class="card"><h2>Sensitive actions '
        f'<span class="sub">{_shown(len(rows), data.sensitive)}</span></h2>'
        f'<div class="chips">{chips}</div>'
        + _table(
            ["When (UTC)", "Category", "Action", "Resource", "Who", "Message"],
            rows,
            "No sensitive actions.",
        )
        + "</section>"
    )


def _latest_section(data: _ReportData) -> str:
    rows = [
        "<tr>"
        f'<td class="when">{_ts(when)}</td>'
        f"<td>{_code(action)}</td>"
        f"<td>{_what(rtype, name, fqn)}</td>"
        f"<td>{_who(slug, display, kind)}</td>"
        f'<td class="msg">{_e(message)}</td>'
        "</tr>"
        for when, action, rtype, name, fqn, slug, display, kind, message in data.latest
    ]
    return (
        '<section class="card"><h2>Latest events '
        f'<span class="sub">{_shown(len(rows), data.events)}</span></h2>'
        + _table(["When (UTC)", "Action", "Resource", "Who", "Message"], rows, "No events.")
        + "</section>"
    )


def _coverage_section(data: _ReportData) -> str:
    cov = data.coverage
    loads = (
        f"<dt>Loads</dt><dd>{_n(data.loads)} completed, last at {_e(_ts(data.last_load_at))}</dd>"
    )
    if cov is None:
        return (
            '<section class="card"><h2>Sync coverage</h2>'
            '<p class="empty">No sync windows recorded: this dataset was not loaded by '
            f'<code>tfy-audit sync</code>.</p><dl class="facts">{loads}</dl></section>'
        )
    status = (
        f'<span class="badge bad">{_n(cov.incomplete)} incomplete</span>'
        if cov.incomplete
        else '<span class="badge ok">all complete</span>'
    )
    facts = (
        '<dl class="facts">'
        f"<dt>Windows loaded</dt><dd>{_n(cov.windows)} {status}</dd>"
        f"<dt>Covered (UTC)</dt><dd>{_e(_ts(cov.covered_from))} → {_e(_ts(cov.covered_to))}</dd>"
        f"<dt>Rows read</dt><dd>{_n(cov.rows_read)}</dd>"
        f"<dt>Syncs</dt><dd>{_n(cov.syncs)}</dd>"
        f"<dt>Last sync (UTC)</dt><dd>{_e(_ts(cov.last_fetched_at))} "
        f'<span class="muted">{_e(_ago(cov.last_fetched_at, data.now))}</span></dd>'
        f"{loads}</dl>"
    )
    rows = [
        "<tr>"
        f'<td class="when">{_ts(start)}</td><td class="when">{_ts(end)}</td>'
        f'<td class="small mono">{_e(key)}</td>'
        f'<td class="num">{_e(planned)}</td><td class="num">{_e(total)}</td>'
        f'<td class="num">{_e(read)}</td><td class="when">{_ts(fetched)}</td>'
        "</tr>"
        for start, end, key, planned, total, read, fetched in cov.incomplete_rows
    ]
    incomplete = (
        "<h2 style='margin-top:16px'>Incomplete windows "
        f'<span class="sub">{_shown(len(rows), cov.incomplete)}</span></h2>'
        + _table(
            ["Start", "End", "Filters", "Planned", "Service total", "Read", "Fetched"],
            rows,
            "",
            numeric=("Planned", "Service total", "Read"),
        )
        if rows
        else ""
    )
    return f'<section class="card"><h2>Sync coverage</h2>{facts}{incomplete}</section>'


def _render_html(data: _ReportData) -> str:
    """The whole page as one string."""
    title = f"Audit log report: {data.dataset}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        "<header><div><h1>TrueFoundry audit log</h1>"
        f'<div class="sub">dataset <code>{_e(data.dataset)}</code> on '
        f"{_e(data.destination)}</div></div>"
        f'<div class="sub">generated {_e(_ts(data.now))} UTC</div></header>'
        + _headline(data)
        + _activity_section(data)
        + _top_section(data)
        + _sensitive_section(data)
        + _latest_section(data)
        + _coverage_section(data)
        + "<footer>Generated by tfy-audit. All times are UTC. Sensitive actions, daily counts "
        "and subject activity are computed with the SQL of the views "
        "<code>sensitive_actions</code>, <code>daily_activity</code> and "
        "<code>subject_activity</code>.</footer>"
        "</main></body></html>\n"
    )
