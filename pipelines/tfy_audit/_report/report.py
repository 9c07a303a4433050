"""A one-file HTML report of the loaded audit trail that opens offline.

Everything is inline: CSS, and charts drawn as SVG. The page runs no script, and its
Content-Security-Policy forbids loading anything, so it can be mailed or archived as evidence
and shows the same thing years later. Tables are filtered by opening the `<details>` of a group
(a severity tier, a kind of change) and come sorted from the SQL. Every value from the data is
escaped: audit messages are written by users of the audited system.

The report covers a range [start, end) (default: the 30 days up to now) and compares each
figure with the previous range of the same length. The parts: `options.py` (what a report is
asked to show), `queries.py` and `sql/` (the SELECTs), `collect.py` (reading them into the
typed data of `data.py`), `charts.py` (SVG), `render.py` and `templates/` (the page).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import uuid
from datetime import UTC, datetime
from pathlib import Path

import dlt

from tfy_audit._report.collect import collect
from tfy_audit._report.data import ReportSummary
from tfy_audit._report.options import ReportOptions
from tfy_audit._report.render import render_html
from tfy_audit._warehouse.adapter import sql_reader
from tfy_audit._warehouse.severity import TIERS

logger = logging.getLogger(__name__)


def write_report(
    pipeline: dlt.Pipeline,
    out: Path,
    options: ReportOptions | None = None,
    *,
    now: datetime | None = None,
) -> ReportSummary:
    """Write the HTML report of the pipeline's dataset to `out`; returns what it shows.

    `options` sets the range and off-hours (default: `ReportOptions()`, the 30 days up to
    `now`). `now` (UTC-aware; default: the current time) is also the "generated at" time and
    the reference for "how long ago". The file is replaced atomically.
    """
    options = options or ReportOptions()
    if now is None:
        now = datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.astimezone(UTC)
    start, end = options.range(now)
    params = options.params
    with sql_reader(pipeline) as client:
        data = collect(client, pipeline, now, start, end, params)
    _write_atomically(Path(out), render_html(data))
    cur = data.cur
    summary = ReportSummary(
        path=Path(out),
        events=cur.events,
        subjects=cur.subjects,
        days=cur.days,
        sensitive=cur.sensitive,
        first_event_at=cur.first_event_at,
        last_event_at=cur.last_event_at,
        last_sync_at=data.last_sync_at,
        windows=data.coverage.windows if data.coverage else 0,
        incomplete_windows=data.coverage.incomplete if data.coverage else 0,
        range_start=start,
        range_end=end,
        tiers={tier: cur.tiers.get(tier, 0) for tier in TIERS},
        new_subjects=cur.new_subjects,
        off_hours=cur.off_hours,
        alerts=data.alerts,
    )
    logger.debug(
        "wrote report %s: %d events, %d subjects, %d sensitive",
        out,
        summary.events,
        summary.subjects,
        summary.sensitive,
    )
    return summary


def _write_atomically(out: Path, document: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # open(..., "x") rather than mkstemp, whose 0600 would survive the rename
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(document)
        with contextlib.suppress(FileNotFoundError):  # a report rewritten keeps its mode
            os.chmod(tmp, stat.S_IMODE(os.stat(out).st_mode))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
