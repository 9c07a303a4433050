"""Progress of a sync, and the log on stderr: a one-line bar on a terminal, periodic log lines
elsewhere. Log records (ours and dlt's) go through one handler with one format; while a bar is
drawn, a record clears it, is written on a line of its own, and the bar is drawn again below
it, so the two never overwrite each other. Under `--log-format json` records are JSON lines
(logjson.py), there is no bar, and progress records carry their figures as fields."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, TextIO

from tfy_audit._cli.logjson import JsonFormatter, fields
from tfy_audit._engine.sync import SyncProgress
from tfy_audit._service.fetch import WindowReport

logger = logging.getLogger("tfy_audit._cli.progress")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The ETA is shown once the rate it extrapolates is worth something: after this long and this
# share of the planned events.
ETA_AFTER_SECONDS = 2.0
ETA_AFTER_SHARE = 0.05

_BAR_WIDTH = 100


class StatusLine:
    """The one bottom line of a terminal that a progress bar owns (at most one at a time)."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.stream: TextIO | None = None
        self.text = ""

    def draw(self, stream: TextIO, text: str) -> None:
        with self.lock:
            self.stream, self.text = stream, text
            stream.write("\r" + text.ljust(_BAR_WIDTH))
            stream.flush()

    def clear(self) -> None:
        """Blank the bar's line (the next write starts at its left edge)."""
        if self.stream is not None and self.text:
            self.stream.write("\r" + " " * _BAR_WIDTH + "\r")

    def redraw(self) -> None:
        if self.stream is not None and self.text:
            self.stream.write("\r" + self.text.ljust(_BAR_WIDTH))
            self.stream.flush()

    def finish(self) -> None:
        """Leave the bar as it is, on a line of its own; no bar from now on."""
        with self.lock:
            if self.stream is not None and self.text:
                self.stream.write("\n")
                self.stream.flush()
            self.stream, self.text = None, ""


STATUS = StatusLine()


class LogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, in `LOG_FORMAT` (or as JSON lines), below any progress bar."""

    def __init__(self, stream: TextIO | None = None, *, json: bool = False) -> None:
        super().__init__(stream or sys.stderr)
        self.setFormatter(JsonFormatter() if json else logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        with STATUS.lock:
            STATUS.clear()
            super().emit(record)
            STATUS.redraw()


class ForwardHandler(logging.Handler):
    """Put on dlt's logger (which does not propagate, and formats its own records): passes its
    records to `target` unformatted, so they come out in our format. dlt sets a formatter on
    the handler it finds; that is ignored."""

    def __init__(self, target: logging.Handler) -> None:
        super().__init__()
        self.target = target

    def setFormatter(self, fmt: logging.Formatter | None) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= self.target.level:
            self.target.handle(record)


class ProgressReporter(SyncProgress):
    def __init__(
        self, stream: TextIO | None = None, *, bar: bool | None = None, interval: float = 10.0
    ) -> None:
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.interval = 0.1 if self.bar else interval
        self.windows_total = 0
        self.events_total = 0
        self.windows_done = 0
        self.events_done = 0
        self.chunks = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self._drawn = False

    def on_plan(self, windows: int, events: int, chunks: int) -> None:
        self.windows_total, self.events_total, self.chunks = windows, events, chunks
        self.started = time.monotonic()
        if not self.bar:
            logger.info(
                "planned %d window(s) holding %d event(s) in %d chunk(s)",
                windows,
                events,
                chunks,
                extra=fields("plan", windows_total=windows, events_total=events, chunks=chunks),
            )

    def on_events(self, count: int) -> None:
        with self._lock:
            self.events_done += count
        self._maybe_render()

    def on_window(self, report: WindowReport) -> None:
        with self._lock:
            self.windows_done += 1
        self._maybe_render()

    def on_chunk_loaded(self, index: int, chunks: int) -> None:
        if self.bar:
            self._render(force=True)
        elif chunks > 1:
            logger.info(
                "chunk %d/%d loaded: %s",
                index,
                chunks,
                self._text(),
                extra=fields("chunk", chunk=index, chunks=chunks, **self._figures()),
            )

    def close(self) -> None:
        if self.bar and self._drawn:
            STATUS.finish()

    def _maybe_render(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._render()

    def _render(self, force: bool = False) -> None:
        if self.bar:
            total = max(self.events_total, 1)
            done = min(self.events_done, total)
            width = 28
            filled = int(width * done / total)
            STATUS.draw(self.stream, f"[{'#' * filled}{'.' * (width - filled)}] {self._text()}")
            self._drawn = True
        elif not force:
            logger.info("progress: %s", self._text(), extra=fields("progress", **self._figures()))

    def _text(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.started, 1e-6)
        rate = self.events_done / elapsed
        return (
            f"windows {self.windows_done}/{self.windows_total}  events "
            f"{self.events_done:,}/{self.events_total:,}  {rate:,.0f}/s  "
            f"ETA {self.eta(elapsed)}"
        )

    def _figures(self) -> dict[str, Any]:
        """The progress line's figures, for a JSON record (`eta_seconds` null like `ETA -`)."""
        elapsed = max(time.monotonic() - self.started, 1e-6)
        eta = self.eta_seconds(elapsed)
        return {
            "windows_done": self.windows_done,
            "windows_total": self.windows_total,
            "events_done": self.events_done,
            "events_total": self.events_total,
            "events_per_second": round(self.events_done / elapsed, 1),
            "elapsed_seconds": round(elapsed, 3),
            "eta_seconds": None if eta is None else round(eta, 1),
        }

    def eta(self, elapsed: float) -> str:
        """Seconds left at the rate so far; `-` until that rate means something."""
        seconds = self.eta_seconds(elapsed)
        return "-" if seconds is None else f"{seconds:,.0f}s"

    def eta_seconds(self, elapsed: float) -> float | None:
        remaining = max(self.events_total - self.events_done, 0)
        if (
            not remaining
            or elapsed < ETA_AFTER_SECONDS
            or self.events_done < self.events_total * ETA_AFTER_SHARE
        ):
            return None
        return remaining * elapsed / self.events_done
