"""Progress of a sync: a one-line bar on a terminal, periodic log lines elsewhere."""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TextIO

from .fetch import WindowReport
from .sync import SyncProgress

logger = logging.getLogger("tfy_audit.progress")


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
                "planned %d window(s) holding %d event(s) in %d chunk(s)", windows, events, chunks
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
            logger.info("chunk %d/%d loaded: %s", index, chunks, self._text())

    def close(self) -> None:
        if self.bar and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

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
            line = f"\r[{'#' * filled}{'.' * (width - filled)}] {self._text()}"
            self.stream.write(line.ljust(100))
            self.stream.flush()
            self._drawn = True
        elif not force:
            logger.info("progress: %s", self._text())

    def _text(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.events_done / elapsed
        remaining = max(self.events_total - self.events_done, 0)
        eta = f"{remaining / rate:,.0f}s" if rate > 0 and remaining else "-"
        return (
            f"windows {self.windows_done}/{self.windows_total}  events "
            f"{self.events_done:,}/{self.events_total:,}  {rate:,.0f}/s  ETA {eta}"
        )
