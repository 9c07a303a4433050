"""Loading planned windows into the destination, chunk by chunk: each chunk's pages are read
ahead of dlt's extract, then extracted, normalized and loaded with the state they imply."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import dlt

from .client import AuditLogClient, AuditLogFilters
from .database import HeldDatabase
from .destination import loader_file_format, step, supports_merge
from .extract import ExtractObserver
from .fetch import Item, WindowReport, item_size, read_windows
from .memory import release_free_memory
from .options import SyncOptions, SyncSummary
from .planning import Chunk, RunRange, chunk_plan, plan_run
from .prefetch import Prefetch
from .recovery import duplicate_days
from .settings import SOURCE_NAME
from .source import truefoundry_audit
from .state import loaded_until
from .warehouse import existing_ids, read_subjects
from .windows import PlannedWindow

logger = logging.getLogger(__name__)

# How far a chunk's reading may run ahead of dlt's extract: more than one batch handed to dlt
# (~9 MB), so reading goes on while dlt writes one. Reading the next chunk during a load as well
# gained nothing measurable at 300k events (both cores are busy then) and cost 45-80 MB of peak.
READ_AHEAD_BYTES = 16 * 1024 * 1024

# From this many planned events (about half a second of reading), a chunk's reading lets a
# DuckDB destination's database go (see database.py); a scheduled run's small chunk keeps it.
LET_GO_FROM_EVENTS = 20_000


class SyncProgress(ExtractObserver):
    """Receives progress; the CLI renders it as a bar or as log lines."""

    def on_plan(self, windows: int, events: int, chunks: int) -> None: ...

    def on_events(self, count: int) -> None: ...

    def on_window(self, report: WindowReport) -> None: ...

    def on_repeated_ids(self, count: int) -> None: ...

    def on_chunk_loaded(self, index: int, chunks: int) -> None: ...

    def close(self) -> None: ...


def _heal_duplicates(
    pipeline: dlt.Pipeline,
    client: AuditLogClient,
    options: SyncOptions,
    days: list[datetime],
    summary: SyncSummary,
    progress: SyncProgress,
    database: HeldDatabase,
    *,
    within: Chunk | None = None,
) -> None:
    """Re-merge whole days that hold a key twice (left by a crash mid-append): unfiltered, as
    the doubled rows may be of any filter set; never past now. `within`: only the part of each
    day in this chunk, just loaded, as the rest of the day may belong to chunks still to come
    (appended, they would add what a re-merge had loaded)."""
    now = datetime.now(UTC)
    for day in days:
        start, end = day, min(day + timedelta(days=1), now)
        if within is None:
            logger.warning("re-merging %s: an interrupted load left duplicate rows", day.date())
        else:
            start, end = max(start, within.start), min(end, within.end)
            if end <= start:
                continue
        run = RunRange(start, end, advances_state=False)
        windows = plan_run(
            client,
            AuditLogFilters(),
            run,
            max_offset=options.max_offset,
            concurrency=options.concurrency,
        )
        unfiltered = dataclasses.replace(options, filters=AuditLogFilters())
        _load_chunks(
            pipeline,
            client,
            unfiltered,
            run,
            windows,
            summary,
            progress,
            None,
            database,
            force_merge=True,
        )


def _load_chunks(
    pipeline: dlt.Pipeline,
    client: AuditLogClient,
    options: SyncOptions,
    run: RunRange,
    windows: list[PlannedWindow],
    summary: SyncSummary,
    progress: SyncProgress,
    decoder: Executor | None,
    database: HeldDatabase,
    *,
    force_merge: bool = False,
    after_last_extract: Callable[[], None] | None = None,
) -> None:
    """Extract, normalize and load each chunk in turn. A chunk's pages are read in a thread of
    their own, a bounded number of bytes ahead of dlt's extract, so reading goes on while dlt
    writes; the first chunk's reading starts before dlt's extract does. `after_last_extract`
    runs as soon as the last chunk is extracted (the run lets its decoder processes go while
    the load runs)."""
    source_state = pipeline.state.get("sources", {}).get(SOURCE_NAME, {})
    seen_until = loaded_until(dict(source_state))
    if force_merge:
        seen_until = max(seen_until or run.end, run.end)
    chunks = chunk_plan(run, windows, options.chunk_events, seen_until)
    # Every id of a read is remembered (see fetch.py) for a re-merge, which reads a few days,
    # and where no re-merge could remove an id loaded twice: a destination that only appends.
    merges = supports_merge(pipeline)
    exact = force_merge or not merges

    def read_ahead(chunk: Chunk) -> Prefetch[Item]:
        return Prefetch(
            partial(
                read_windows,
                client,
                options.filters,
                chunk.windows,
                page_size=options.page_size,
                concurrency=options.concurrency,
                max_offset=options.max_offset,
                decoder=decoder,
                exact=exact,
            ),
            size_of=item_size,
            max_bytes=READ_AHEAD_BYTES,
            name="tfy-read-ahead",
        )

    progress.on_plan(len(windows), sum(w.count for w in windows), len(chunks))
    # The first chunk is read while dlt prepares its extract.
    first: Prefetch[Item] | None = read_ahead(chunks[0])
    try:
        known_subjects = read_subjects(pipeline)
        sync_id = uuid.uuid4().hex
        counter = _Counter(progress, summary)
        for index, chunk in enumerate(chunks, start=1):
            reading, first = first or read_ahead(chunk), None
            chunk = dataclasses.replace(chunk, held_back_to=counter.incomplete_from)
            with reading:
                already: set[str] = set()
                if not chunk.append and not merges:
                    with step("reading the ids already written"):
                        already = existing_ids(pipeline, chunk)
                # the pages come from `reading`: how they are read was set in read_ahead()
                source = truefoundry_audit(
                    host=client.host,
                    api_key="unused",
                    filters=options.filters.as_dict(),
                    client=client,
                    chunk=chunk,
                    known_subjects=known_subjects,
                    sync_id=sync_id,
                    observer=counter,
                    skip_ids=already,
                    items=reading,
                )
                with step("loading into the destination"):
                    seconds: dict[str, float] = {}
                    clock = time.monotonic()
                    file_format: Any = loader_file_format(options.target)
                    # a long read lets the database go, so other processes can open the file
                    long_read = chunk.planned_events >= LET_GO_FROM_EVENTS
                    with database.let_go() if long_read else nullcontext():
                        pipeline.extract(source, loader_file_format=file_format)
                    seconds["extract"] = time.monotonic() - clock
            if index == len(chunks) and after_last_extract is not None:
                after_last_extract()
            with step("loading into the destination"):
                release_free_memory()  # before DuckDB's buffers come on top
                clock = time.monotonic()
                normalize_info = pipeline.normalize()
                seconds["normalize"] = time.monotonic() - clock
                clock = time.monotonic()
                info = pipeline.load()
                seconds["load"] = time.monotonic() - clock
            summary.chunks += 1
            summary.load_ids.extend(info.loads_ids)
            logger.info(
                "chunk %d/%d took %s",
                index,
                len(chunks),
                ", ".join(f"{step} {s:.2f}s" for step, s in seconds.items()),
            )
            for table, n in normalize_info.row_counts.items():
                if not table.startswith("_dlt"):
                    summary.rows[table] = summary.rows.get(table, 0) + n
            progress.on_chunk_loaded(index, len(chunks))
            repeated = counter.take_repeated()
            if repeated and not force_merge:
                logger.warning(
                    "%d event(s) of chunk %d/%d came from two windows with the same id (the "
                    "service moved or repeated them while they were read); re-merging their days",
                    repeated,
                    index,
                    len(chunks),
                )
                days = duplicate_days(pipeline, since=chunk.start)
                # its own summary and no progress: the run's figures stay the run's
                scratch = SyncSummary(chunk.start, chunk.end, {})
                _heal_duplicates(
                    pipeline, client, options, days, scratch, SyncProgress(), database, within=chunk
                )
    finally:
        if first is not None:  # never taken: the run failed before its first extract
            first.close()


class _Counter(SyncProgress):
    def __init__(self, progress: SyncProgress, summary: SyncSummary) -> None:
        self.progress = progress
        self.summary = summary
        self._repeated = 0
        # the start of the earliest window of the run not read completely, if any
        self.incomplete_from: datetime | None = None

    def on_events(self, count: int) -> None:
        self.summary.events_read += count
        self.progress.on_events(count)

    def on_window(self, report: WindowReport) -> None:
        self.summary.windows += 1
        if not report.complete:
            self.summary.incomplete_windows.append(str(report.window))
            start = report.window.start
            if self.incomplete_from is None or start < self.incomplete_from:
                self.incomplete_from = start
        self.progress.on_window(report)

    def on_repeated_ids(self, count: int) -> None:
        self._repeated += count

    def take_repeated(self) -> int:
        """Rows of the chunk just loaded that repeat an id of another window; then 0."""
        count, self._repeated = self._repeated, 0
        return count
