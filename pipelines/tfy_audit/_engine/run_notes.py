"""What a sync's summary says about its range and its events, beyond what it read: where the
run started and why (a first run's depth, a one-off range that leaves the mark alone), and how
many of the events it read are new to the destination rather than re-read (the lookback)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from tfy_audit._core.options import SyncSummary
from tfy_audit._core.settings import AUDIT_LOGS_TABLE
from tfy_audit._service.planning import RunRange
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.readback import table_loaded

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)


def describe_run(
    summary: SyncSummary,
    *,
    mark: datetime | None,
    run: RunRange,
    first_start: datetime,
    read_from: datetime | None = None,
) -> None:
    """`read_from`: where the range the syncs read without a gap up to `mark` starts."""
    summary.previous_mark = mark
    summary.first_run_start = first_start
    summary.advances_state = run.advances_state
    if mark is None:
        return
    if read_from is not None and run.end < read_from:
        summary.unread = (run.end, read_from)
    elif run.start > mark:
        summary.unread = (mark, run.start)


def rows_from(pipeline: dlt.Pipeline, start: datetime) -> int | None:
    """Rows of `audit_logs` created at or after `start`; None where it cannot be counted. Taken
    before and after a run (which holds the pipeline's lock), the difference is the events the
    run added: a re-read event is merged onto its row, or skipped, never added. Rows without a
    usable createdAt count too: the service may return such an event to any run."""
    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return 0
    try:
        # on files, dlt's SQL client would read with downloaded extensions: the adapter reads
        return warehouse_of(pipeline).count_created_from(pipeline, start)
    except Exception as exc:  # a figure of the summary, never a reason to fail the run
        logger.debug("cannot count the rows of %s: %s", AUDIT_LOGS_TABLE, exc)
        return None


def settle_counts(summary: SyncSummary, before: int | None, after: int | None) -> None:
    """New events (added to the destination) and events re-read (already there)."""
    if before is None or after is None:
        return
    summary.events_new = max(after - before, 0)
    summary.events_reread = max(summary.events_read - summary.events_new, 0)
