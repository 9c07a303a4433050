"""`tfy-audit sync`: load new audit events into the destination, and say what was loaded."""

from __future__ import annotations

import argparse
from typing import Any

from tfy_audit._cli.args import sync_options_from_args
from tfy_audit._cli.output import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    STATUS,
    Mode,
    Outcome,
    logger,
    say,
)
from tfy_audit._cli.process import end_imports


def run(args: argparse.Namespace, *, own_process: bool = False) -> Outcome:
    """`own_process`: the process is the `tfy-audit` command itself, not a library's caller."""
    from tfy_audit._cli.progress import ProgressReporter
    from tfy_audit._core.memory import limit_malloc_arenas
    from tfy_audit._engine.sync import run_sync

    options = sync_options_from_args(args)
    plan = None
    if args.detect:  # rules and URLs checked before the sync reads anything
        from tfy_audit._cli.commands.detect import plan_from_args

        plan = plan_from_args(args)
    if own_process:
        # dlt and pyarrow are imported, and dlt's configuration read (which imports more): the
        # objects made so far live as long as the process. Frozen, they are not walked by each
        # full collection the sync's allocations set off (process.py). Not done when `main()`
        # is called as a library: its caller's objects are not ours to freeze, nor its
        # allocator to tune.
        end_imports()
        limit_malloc_arenas(3)  # before the sync's threads: see memory.py

    no_bar = args.no_progress or args.json or Mode.json_logs
    progress = ProgressReporter(bar=False if no_bar else None)
    summary = run_sync(options, progress)
    code = EXIT_INCOMPLETE if summary.incomplete_windows or summary.repeated_ids else EXIT_OK
    if Mode.json_logs:  # the summary is a record, with the figures of --json's document
        from tfy_audit._cli.logjson import fields

        figures = {"status": STATUS[code], "exit_code": code, **summary.as_dict()}
        logger.info(format_summary(summary).splitlines()[0], extra=fields("summary", **figures))
    elif not args.json:
        print(format_summary(summary))
    if summary.incomplete_windows:
        say(
            f"tfy-audit: {len(summary.incomplete_windows)} window(s) could not be read "
            "completely (see the log above); the high-water mark stays before them, so the "
            "next run reads them again; `tfy-audit verify --end "
            f"{summary.end.strftime('%Y-%m-%dT%H:%M:%SZ')}` compares their days",
            event="incomplete",
        )
    if summary.repeated_ids:
        from tfy_audit._core.redact import clean

        shown = ", ".join(clean(i) for i in summary.repeated_ids[:5]) + (
            f" and {len(summary.repeated_ids) - 5} more" if len(summary.repeated_ids) > 5 else ""
        )
        say(
            f"tfy-audit: the service served {len(summary.repeated_ids)} id(s) twice in one "
            f"window and counts both copies ({shown}); confirmed by a re-read, loaded once and "
            "recorded in event_anomalies (later runs pass it quietly); `tfy-audit verify` "
            "lists them",
            event="repeated_ids",
        )
    document = summary.as_dict()
    if plan is not None:
        document["detection"] = _detect_after(options, plan, summary, quiet=bool(args.json))
    return Outcome(code, document)


def _detect_after(options: Any, plan: Any, summary: Any, *, quiet: bool) -> dict[str, Any]:
    """The detection pass over the run's range (its new events and the lookback's re-reads;
    windowed rules read back as far as their window needs). Its failure is a warning: the
    data is loaded, and the exit code stays the data's."""
    from tfy_audit._cli.commands.detect import format_detection, run_pass
    from tfy_audit._core.errors import one_line
    from tfy_audit._warehouse.destination import make_pipeline

    try:
        from tfy_audit._detect.runner import judged_from

        pipeline = make_pipeline(options.target)
        start = judged_from(pipeline, summary.start)
        found = run_pass(pipeline, plan, start, summary.end, after_sync=True)
    except Exception as exc:
        say(
            f"tfy-audit: the data is loaded, but detection failed: {one_line(exc)}; "
            "`tfy-audit detect --start "
            f"{summary.start.strftime('%Y-%m-%dT%H:%M:%SZ')}` runs it again (the next "
            "`sync --detect` also resumes from where the last pass ended)",
            event="detection_failed",
        )
        return {"error": one_line(exc)}
    if not quiet and not Mode.json_logs:
        print(format_detection(found))
    result: dict[str, Any] = found.as_dict()
    return result


def format_summary(summary: Any) -> str:
    rows = ", ".join(f"{t} {n:,}" for t, n in sorted(summary.rows.items())) or "none"
    lines = [
        f"synced {summary.start.isoformat()} .. {summary.end.isoformat()}"
        + (f" with filters {summary.filters}" if summary.filters else ""),
        f"  new events: {summary.events_new:,}"
        + (
            f"  ({summary.events_reread:,} more re-read: already loaded)"
            if summary.events_reread
            else ""
        ),
        f"  rows written: {rows}",
        f"  events read: {summary.events_read:,} in {summary.windows} window(s), "
        f"{summary.chunks} chunk(s)",
        f"  requests: {summary.requests:,} ({summary.retries:,} retried)  "
        f"time: {summary.seconds:.1f}s",
    ]
    if summary.anomalies:
        lines.append(f"  {anomalies_text(summary.anomalies)}")

    if summary.continued_from:
        lines.append(f"  continuing the dataset's mark from pipeline {summary.continued_from!r}")
    if summary.previous_mark is None and summary.advances_state:
        lines.append(f"  first sync: read {_first_start_text(summary)}")
    if not summary.advances_state:
        if summary.previous_mark is None:
            after = "no high-water mark is set; a plain `tfy-audit sync` reads " + (
                _first_start_text(summary, plain=True)
            )
        else:
            after = f"the high-water mark stays at {summary.previous_mark.isoformat()}"
        lines.append(
            f"  one-off range: history before {summary.start.isoformat()} was not read; {after}"
        )
    if summary.unread is not None:
        gap_start, gap_end = (t.isoformat() for t in summary.unread)
        lines.append(
            f"  not read: {gap_start} .. {gap_end} (between this range and what the syncs "
            f"read); `tfy-audit sync --start {gap_start} --end {gap_end}` reads it"
        )
    if summary.recovered_packages:
        lines.append(f"  finished {summary.recovered_packages} package(s) of an interrupted run")
    from tfy_audit._core.settings import CLOCK_SKEW_WARN_SECONDS

    offset = getattr(summary, "clock_offset_seconds", None)
    if offset is not None and abs(offset) > CLOCK_SKEW_WARN_SECONDS:
        side = "behind" if offset < 0 else "ahead of"
        lines.append(
            f"  service clock: {abs(offset):.0f} s {side} this machine's; the run read up to "
            "the earlier of the two"
        )
    if summary.covered_until:
        lines.append(f"  high-water mark: {summary.covered_until.isoformat()}")
    if summary.published:
        published = summary.published
        lines.append(
            f"  published: {published['path']} ({published['bytes'] / 2**20:,.1f} MiB, "
            f"{published['seconds']:.1f}s)"
        )
    receipts = getattr(summary, "receipts", None)
    if receipts:
        lines.append(receipts_text(receipts))
    return "\n".join(lines)


def receipts_text(receipts: dict[str, Any]) -> str:
    """The summary's line on the daily receipts the run issued."""
    issued = receipts["issued"]
    reissued = sum(1 for r in issued if r["seq"])
    text = f"  receipts: {len(issued)} issued"
    if reissued:
        text += f" ({reissued} re-issue(s))"
    text += f" in {receipts['location']}"
    key = receipts["public_key"]
    text += f", signed by Ed25519 public key {key}" if key else ", unsigned"
    if receipts["refused_days"]:
        text += f"; {len(receipts['refused_days'])} changed day(s) not re-issued (see above)"
    return text


def anomalies_text(counts: dict[str, int]) -> str:
    from tfy_audit._core.settings import ANOMALIES_TABLE
    from tfy_audit._service.anomalies import count_text

    return f"anomalies: {count_text(counts)} — see table {ANOMALIES_TABLE}"


def _first_start_text(summary: Any, *, plain: bool = False) -> str:
    from tfy_audit._core.settings import HISTORY_START

    first = summary.first_run_start
    if first is None or first <= HISTORY_START:
        since = first or HISTORY_START
        return f"the whole history (from {since.isoformat()}; --since sets a later start)"
    return f"from {first.isoformat()} (--since); events before it are not read"
