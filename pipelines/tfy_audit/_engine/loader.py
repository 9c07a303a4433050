"""Loading planned windows into the destination, chunk by chunk: each chunk's pages are read
ahead of dlt's extract, then extracted, normalized and loaded with the state they imply, so a
crash loses at most the chunk in flight."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import nullcontext
from datetime import datetime
from functools import partial
from typing import Any

import dlt

from tfy_audit._compat.dlt import pipeline_source_state
from tfy_audit._core.memory import release_free_memory
from tfy_audit._core.options import SyncOptions, SyncSummary
from tfy_audit._core.settings import AUDIT_LOGS_TABLE, METADATA_TABLE, SOURCE_NAME
from tfy_audit._service.anomalies import Anomaly, AnomalyKind, unique
from tfy_audit._service.client import AuditLogClient
from tfy_audit._service.fetch import Item, WindowReport, item_size, read_windows
from tfy_audit._service.planning import Chunk, RunRange, chunk_plan
from tfy_audit._service.prefetch import Prefetch
from tfy_audit._service.subjects import SubjectObservation
from tfy_audit._service.windows import PlannedWindow
from tfy_audit._source.dlt_source import chunk_source
from tfy_audit._source.extract import ExtractObserver
from tfy_audit._source.state import loaded_until
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.database import HeldDatabase
from tfy_audit._warehouse.destination import step
from tfy_audit._warehouse.lakehouse import resolve_table_format
from tfy_audit._warehouse.readback import existing_ids, read_subjects, undated_ids

logger = logging.getLogger(__name__)

# How far a chunk's reading may run ahead of dlt's extract, in memory: more than one batch
# handed to dlt, so reading goes on while dlt writes one.
READ_AHEAD_BYTES = 16 * 1024 * 1024

# The next chunk is read while a chunk is loaded (the load keeps one core busy, the decoders
# would sit idle): what is read then waits on disk, up to this many bytes of rows, because the
# run's memory peaks during loads (prefetch.py).
SPILL_BYTES = 256 * 1024 * 1024

# From this many planned events (a read long enough to matter to another program waiting for
# the file), a chunk's reading lets a DuckDB destination's database go (see database.py); a
# scheduled run's small chunk keeps it.
LET_GO_FROM_EVENTS = 20_000


class SyncProgress(ExtractObserver):
    """Receives progress; the CLI renders it as a bar or as log lines."""

    def on_plan(self, windows: int, events: int, chunks: int) -> None: ...

    def on_events(self, count: int) -> None: ...

    def on_window(self, report: WindowReport) -> None: ...

    def on_repeated_ids(self, count: int) -> None: ...

    def on_anomalies(self, anomalies: list[Anomaly]) -> None: ...

    def on_chunk_loaded(self, index: int, chunks: int) -> None: ...

    def close(self) -> None: ...


class ChunkLoader:
    """Extracts, normalizes and loads planned windows into one pipeline, chunk by chunk.

    A chunk's pages are read in a thread of their own, a bounded number of bytes ahead of dlt's
    extract, so reading goes on while dlt writes; the first chunk's reading starts before dlt's
    extract does, and each later chunk's while the chunk before it loads (what it reads then
    waits on disk past the memory bound). Figures go to `summary`, progress to `progress`.

    `decoder`: where pages are decoded (worker processes), else in the fetching threads.
    `merge_all`: every chunk is merged, as for a re-merge of rows already loaded.
    `on_repeated`: called with a chunk just loaded that held an id twice (read from two
    windows), so that its days can be re-merged; None: nothing is done about it.
    """

    def __init__(
        self,
        pipeline: dlt.Pipeline,
        client: AuditLogClient,
        options: SyncOptions,
        database: HeldDatabase,
        *,
        summary: SyncSummary,
        progress: SyncProgress,
        decoder: Executor | None = None,
        merge_all: bool = False,
        on_repeated: Callable[[Chunk], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._client = client
        self._options = options
        self._database = database
        self._summary = summary
        self._progress = progress
        self._decoder = decoder
        self._merge_all = merge_all
        self._on_repeated = on_repeated
        # the table format is known once the destination's schema is read (run_sync does it)
        table_format = resolve_table_format(pipeline, options.target.table_format)
        # what the destination kind does, chosen once (adapter.py)
        self._warehouse = warehouse_of(pipeline, table_format)
        self._merges = self._warehouse.merges
        self._replace_nul = not self._warehouse.holds_nul
        # ids of events without a usable createdAt, loaded before or by this sync (read once)
        self._undated: set[str] | None = None

    def load(
        self,
        run: RunRange,
        windows: list[PlannedWindow],
        *,
        after_last_extract: Callable[[], None] | None = None,
    ) -> None:
        """Load `windows`, the plan of `run`. `after_last_extract` runs as soon as the last
        chunk is extracted (the run lets its decoder processes go while the load runs)."""
        chunks = self._chunks(run, windows)
        self._progress.on_plan(len(windows), sum(w.count for w in windows), len(chunks))
        # The reading of the chunk extracted next, started early: the first chunk's while dlt
        # prepares its extract, each later one's while the chunk before it loads.
        ahead: Prefetch[Item] | None = self._read_ahead(chunks[0])
        try:
            known_subjects = read_subjects(self._pipeline)
            sync_id = uuid.uuid4().hex
            counter = _Counter(self._progress, self._summary)
            for index, chunk in enumerate(chunks, start=1):
                self._client.check_run_deadline()  # past --max-duration, stop between chunks
                reading, ahead = ahead or self._read_ahead(chunk), None
                chunk = dataclasses.replace(chunk, held_back_to=counter.incomplete_from)
                with reading:
                    extract_seconds = self._extract(
                        chunk, reading, known_subjects, sync_id, counter
                    )
                if index == len(chunks) and after_last_extract is not None:
                    after_last_extract()
                elif index < len(chunks) and not counter.repeated:
                    # the next chunk is read while this one loads (a chunk that needs its days
                    # re-merged after its load has them re-read first, as before)
                    ahead = self._read_ahead(chunks[index])
                loaded_before = dict(self._summary.rows)
                self._normalize_and_load(chunk, index, len(chunks), extract_seconds)
                if chunk.append:  # its events were never loaded before: its rows are new
                    _add_new_rows(self._summary, loaded_before)
                repeated = counter.take_repeated()
                if repeated and self._on_repeated is not None:
                    logger.warning(
                        "%d event(s) of chunk %d/%d came from two windows with the same id (the "
                        "service moved or repeated them while they were read); re-merging their "
                        "days",
                        repeated,
                        index,
                        len(chunks),
                    )
                    self._on_repeated(chunk)
        finally:
            if ahead is not None:  # never taken: the run failed before that chunk's extract
                ahead.close()

    def _chunks(self, run: RunRange, windows: list[PlannedWindow]) -> list[Chunk]:
        seen_until = loaded_until(pipeline_source_state(self._pipeline, SOURCE_NAME))
        if self._merge_all:
            seen_until = max(seen_until or run.end, run.end)
        return chunk_plan(run, windows, self._options.chunk_events, seen_until)

    def _read_ahead(self, chunk: Chunk) -> Prefetch[Item]:
        options = self._options
        # Every id of a read is remembered (see fetch.py) for a re-merge, which reads a few
        # days, and where no re-merge could remove an id loaded twice: a destination that only
        # appends.
        exact = self._merge_all or not self._merges
        return Prefetch(
            partial(
                read_windows,
                self._client,
                options.filters,
                chunk.windows,
                page_size=options.page_size,
                concurrency=options.concurrency,
                max_offset=options.max_offset,
                decoder=self._decoder,
                exact=exact,
            ),
            size_of=item_size,
            max_bytes=READ_AHEAD_BYTES,
            spill_bytes=SPILL_BYTES,
            spill_dir=self._pipeline.working_dir,
            name="tfy-read-ahead",
        )

    def _extract(
        self,
        chunk: Chunk,
        reading: Prefetch[Item],
        known_subjects: dict[str, SubjectObservation],
        sync_id: str,
        counter: _Counter,
    ) -> float:
        """dlt's extract of one chunk, from its pages being read; returns the seconds it took."""
        already: set[str] = set()
        if not chunk.append and not self._merges:
            with step("reading the ids already written"):
                already = existing_ids(self._pipeline, chunk)
        if self._undated is None:
            with step("reading the ids already written"):
                self._undated = undated_ids(self._pipeline)
        source = chunk_source(
            filters=self._options.filters,
            chunk=chunk,
            items=reading,
            known_subjects=known_subjects,
            sync_id=sync_id,
            observer=counter,
            skip_ids=already,
            replace_nul=self._replace_nul,
            undated=self._undated,
            undated_merged=self._merges and not chunk.append,
            merges=self._merges,
        )
        self._warehouse.prepare_source(source)
        with step("loading into the destination"):
            clock = time.monotonic()
            file_format: Any = self._warehouse.loader_file_format
            # a long read lets the database go, so other processes can open the file
            long_read = chunk.planned_events >= LET_GO_FROM_EVENTS
            with self._database.let_go() if long_read else nullcontext():
                self._pipeline.extract(source, loader_file_format=file_format)
            return time.monotonic() - clock

    def _normalize_and_load(
        self, chunk: Chunk, index: int, chunks: int, extract_seconds: float
    ) -> None:
        seconds = {"extract": extract_seconds}
        with step("loading into the destination"):
            release_free_memory()  # before DuckDB's buffers come on top
            clock = time.monotonic()
            normalize_info = self._pipeline.normalize()
            seconds["normalize"] = time.monotonic() - clock
            clock = time.monotonic()
            workers = self._warehouse.load_workers
            if workers is None:
                info = self._pipeline.load()
            else:
                info = self._pipeline.load(workers=workers)
            seconds["load"] = time.monotonic() - clock
            # Delta: an upsert never removes rows, so the leaves an event lost go here
            self._warehouse.after_chunk(self._pipeline, info.loads_ids, appended=chunk.append)
        summary = self._summary
        summary.chunks += 1
        summary.load_ids.extend(info.loads_ids)
        logger.info(
            "chunk %d/%d took %s",
            index,
            chunks,
            ", ".join(f"{name} {s:.2f}s" for name, s in seconds.items()),
        )
        for table, n in normalize_info.row_counts.items():
            if not table.startswith("_dlt"):
                summary.rows[table] = summary.rows.get(table, 0) + n
        self._progress.on_chunk_loaded(index, chunks)


def _add_new_rows(summary: SyncSummary, loaded_before: dict[str, int]) -> None:
    """The event tables' rows loaded since `loaded_before`, as new (subjects are updated)."""
    for table in (AUDIT_LOGS_TABLE, METADATA_TABLE):
        n = summary.rows.get(table, 0)
        if n > loaded_before.get(table, 0):
            summary.new_rows[table] = (
                summary.new_rows.get(table, 0) + n - loaded_before.get(table, 0)
            )


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

    def on_anomalies(self, anomalies: list[Anomaly]) -> None:
        for anomaly in unique(anomalies):
            kind = anomaly.kind.value
            self.summary.anomalies[kind] = self.summary.anomalies.get(kind, 0) + 1
            repeated = self.summary.repeated_ids
            if anomaly.kind is AnomalyKind.REPEATED_ID and anomaly.event_id not in repeated:
                repeated.append(str(anomaly.event_id))
        self.progress.on_anomalies(anomalies)

    @property
    def repeated(self) -> int:
        """Rows of the chunk being read that repeat an id of another window, so far."""
        return self._repeated

    def take_repeated(self) -> int:
        """Rows of the chunk just loaded that repeat an id of another window; then 0."""
        count, self._repeated = self._repeated, 0
        return count
