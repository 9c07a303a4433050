"""The progress bar and the log share stderr without overwriting each other; the ETA waits
until the rate behind it means something."""

from __future__ import annotations

import io
import logging

from tfy_audit._cli.progress import ETA_AFTER_SECONDS, STATUS, LogHandler, ProgressReporter


def screen(written: str) -> list[str]:
    """What a terminal shows: `\\r` returns to the line's start, later text overwrites."""
    lines: list[str] = []
    current: list[str] = []
    col = 0
    for ch in written:
        if ch == "\n":
            lines.append("".join(current).rstrip())
            current, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(current):
                current[col] = ch
            else:
                current.append(ch)
            col += 1
    lines.append("".join(current).rstrip())
    return lines


def test_log_lines_appear_above_the_bar_whole() -> None:
    stream = io.StringIO()
    progress = ProgressReporter(stream, bar=True)
    handler = LogHandler(stream)
    log = logging.getLogger("tfy_audit.test_progress")
    log.addHandler(handler)
    log.propagate = False
    try:
        progress.on_plan(2, 1000, 1)
        progress.on_events(400)
        progress._render()
        log.warning("a short line")
        progress.on_events(100)
        progress._render()
        log.warning("another line")
        progress.close()
    finally:
        log.removeHandler(handler)
        STATUS.finish()
    shown = [line for line in screen(stream.getvalue()) if line]
    assert len(shown) == 3, shown
    assert shown[0].endswith("WARNING tfy_audit.test_progress: a short line")
    assert shown[1].endswith("WARNING tfy_audit.test_progress: another line")
    assert shown[2].startswith("[") and "events 500/1,000" in shown[2]


def test_the_eta_is_shown_only_once_it_means_something() -> None:
    progress = ProgressReporter(io.StringIO(), bar=False)
    progress.on_plan(10, 100_000, 1)
    progress.events_done = 10_000
    assert progress.eta(ETA_AFTER_SECONDS / 2) == "-"  # too early
    progress.events_done = 1_000
    assert progress.eta(ETA_AFTER_SECONDS * 2) == "-"  # too little done
    progress.events_done = 20_000
    assert progress.eta(ETA_AFTER_SECONDS * 2) == f"{80_000 * 4 / 20_000:,.0f}s"
    progress.events_done = 100_000
    assert progress.eta(10.0) == "-"  # nothing left
