"""`tfy-audit sync`: plan the run, then load it chunk by chunk, each chunk with its state.

Order of a run:
1. take the pipeline's lock (a second sync of the same pipeline refuses, or waits);
2. finish load packages a crashed run left behind (their state comes with them);
3. restore state from the destination, the single source of truth;
4. plan windows for `[mark - lookback, now)` by the service's counts, group them into chunks;
5. for each chunk: extract, normalize, load, so a crash loses at most the chunk in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import ExitStack, contextmanager, nullcontext
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination.reference import Destination
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.common.storages.load_package import PackageStorage
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from dlt.pipeline.pipeline import Pipeline

from .client import AuditLogClient, AuditLogFilters
from .config import resolve_api_key, resolve_host
from .database import HeldDatabase, held_database
from .decoders import Decoders, decoder_pool
from .errors import DestinationError, TfyAuditError, UsageError, explain_destination_failure
from .extract import ExtractObserver
from .fetch import Item, WindowReport, item_size, plan_run, read_windows
from .lakehouse import DELTA, apply_table_format, drop_stale_leaves, is_delta, resolve_table_format
from .lock import pipeline_lock
from .memory import release_free_memory
from .options import (
    DestinationOptions,
    SyncOptions,
    SyncSummary,
    validate,
)
from .prefetch import Prefetch
from .settings import (
    AUDIT_LOGS_TABLE,
    METADATA_TABLE,
    MIN_WINDOW,
)
from .source import truefoundry_audit
from .state import (
    Chunk,
    RunRange,
    covered_until,
    last_chunk_start,
    loaded_until,
    resolve_range,
    stream_state,
)
from .warehouse import read_subjects, table_loaded
from .windows import PlannedWindow, Window, group_into_chunks

logger = logging.getLogger(__name__)

SOURCE_NAME = "truefoundry_audit"

# DuckDB caches up to 80% of RAM by default, and its load is what peaks a sync's memory.
# Measured loading 2 x 100k events: 2 threads and 128 MB peaked 179 MB over the base, 1 thread
# and 96 MB 113 MB, in 1.62 s instead of 1.74 s (dlt loads the tables as parallel jobs anyway).
# A 300k sync peaked at 332-336 MB with 80 MB, 346-359 MB with 96 MB, its loads as fast.
# Larger joins (a full re-merge) spill to the database's temp directory instead of failing.
DUCKDB_MEMORY_LIMIT = "80MB"
DUCKDB_THREADS = 1

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


def make_destination(target: DestinationOptions) -> Destination[Any, Any]:
    name = target.destination
    if name == "duckdb":
        folder = Path(target.db).expanduser().resolve().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"cannot create {folder} for --db ({exc.strerror}); pass a --db in a writable "
                "directory"
            ) from exc
    try:
        if name == "duckdb":
            # the path set as a field, not passed as a string: dlt parses a string as a URL,
            # through SQLAlchemy when it is installed, which costs 0.2 s of start-up
            credentials = DuckDbCredentials(
                global_config={"memory_limit": DUCKDB_MEMORY_LIMIT, "threads": DUCKDB_THREADS}
            )
            credentials.database = str(Path(target.db).expanduser())
            return dlt.destinations.duckdb(credentials=credentials)
        destination = Destination.from_reference(name)
    except Exception as exc:
        raise UsageError(
            f"unknown destination {name!r}: use duckdb (default), postgres, filesystem, bigquery, "
            "snowflake, motherduck, clickhouse or another dlt destination name"
        ) from exc
    if destination is None:
        raise UsageError(f"unknown destination {name!r}")
    return destination


def pipelines_dir(target: DestinationOptions) -> str:
    """dlt's working dir: given, or beside the DuckDB file (so two database files never share
    local state), or dlt's default for other destinations."""
    if target.pipelines_dir:
        return target.pipelines_dir
    if target.destination == "duckdb":
        db = Path(target.db).expanduser()
        return str(db.with_name(f".{db.name}.pipelines"))
    return get_dlt_pipelines_dir()


def make_pipeline(target: DestinationOptions) -> Pipeline:
    return dlt.pipeline(
        pipeline_name=target.pipeline_name,
        pipelines_dir=pipelines_dir(target),
        destination=make_destination(target),
        dataset_name=target.dataset,
    )


def loader_file_format(target: DestinationOptions) -> str | None:
    """Arrow tables go as Parquet where the destination takes it. PostgreSQL gets INSERTs:
    dlt's CSV `COPY` for it turns every empty string into NULL, and `""` is a value the
    service sends (tenant-level events have `clusterId: ""`)."""
    if target.destination in ("duckdb", "filesystem", "motherduck"):
        return "parquet"
    if target.destination == "postgres":
        return "insert_values"
    return None


def supports_merge(pipeline: Pipeline) -> bool:
    """The filesystem destination (without a table format) can only append."""
    return pipeline.destination is not None and pipeline.destination.destination_name != (
        "filesystem"
    )


def existing_ids(pipeline: Pipeline, chunk: Chunk) -> set[str]:
    """Ids already loaded in a chunk's range, for destinations that cannot merge: the chunk then
    skips them, so a re-read (the lookback, a repair) adds only what is missing."""
    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return set()
    lo = (chunk.start - MIN_WINDOW).isoformat()
    hi = chunk.end.isoformat()
    relation = pipeline.dataset().query(
        f"select id from {AUDIT_LOGS_TABLE} where created_at >= TIMESTAMPTZ '{lo}' "
        f"and created_at <= TIMESTAMPTZ '{hi}'"
    )
    return {row[0] for row in relation.fetchall()}


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn dlt's wrapped failures into our own, naming the step."""
    try:
        yield
    except TfyAuditError:
        raise
    except Exception as exc:
        cause = _find_cause(exc)
        if cause is not None:
            raise cause from exc
        reason = explain_destination_failure(exc) or _one_line(exc)
        raise DestinationError(f"{what} failed: {reason}") from exc


def _find_cause(exc: BaseException) -> TfyAuditError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, TfyAuditError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500]


def finish_pending(pipeline: Pipeline, target: DestinationOptions) -> int:
    """Load what a crashed run left behind; returns the number of packages finished."""
    if not pipeline.has_pending_data:
        return 0
    _drop_extracted_copies(pipeline)
    pending = len(pipeline.list_extracted_load_packages()) + len(
        pipeline.list_normalized_load_packages()
    )
    logger.info("finishing %d load package(s) left by an interrupted run", pending)
    with _step("finishing the interrupted run's load"):
        pipeline.normalize()
        info = pipeline.load()
        if is_delta(pipeline):
            drop_stale_leaves(pipeline, info.loads_ids)
    return pending


def _drop_extracted_copies(pipeline: Pipeline) -> None:
    """dlt's normalize commits a package by renaming it into the normalized packages, then
    deletes its extracted copy; a kill between the two leaves both, and normalizing the copy
    again fails (`Directory not empty`). The rename is atomic, so the normalized package is
    whole: the copy goes."""
    load_storage = pipeline._get_load_storage()
    done = _packages(load_storage.normalized_packages) | _packages(load_storage.loaded_packages)
    # a package still (partly) in `new` was not renamed at once (dlt falls back to moving its
    # files one by one on some errors): then the extracted copy may be the only whole one
    done -= _packages(load_storage.new_packages)
    extracted = pipeline._get_normalize_storage().extracted_packages
    for load_id in _packages(extracted):
        if load_id in done:
            logger.info("load package %s was normalized before the crash", load_id)
            extracted.delete_package(load_id)


def _packages(storage: PackageStorage) -> set[str]:
    """The load ids in one of dlt's package folders; none if dlt has not made it yet (a run
    killed before its first normalize leaves no `load/new`)."""
    try:
        return set(storage.list_packages())
    except FileNotFoundError:
        return set()


def chunk_plan(
    run: RunRange,
    windows: list[PlannedWindow],
    chunk_events: int,
    loaded_until: datetime | None = None,
) -> list[Chunk]:
    """Chunks with contiguous bounds covering the run, so each can advance the mark. Chunks
    never straddle `loaded_until`: those after it hold only events never loaded before, and are
    appended instead of merged."""
    if loaded_until is not None and run.start < loaded_until < run.end:
        before, after = _split_at(windows, loaded_until)
        # An empty side needs no load of its own (a scheduled run that finds nothing new
        # makes one load, not two): no events there, so the other side's way covers it.
        if not after:
            return _chunks(run, before, chunk_events, False)
        if not before:
            return _chunks(run, after, chunk_events, True)
        return _chunks(
            RunRange(run.start, loaded_until, run.advances_state), before, chunk_events, False
        ) + _chunks(RunRange(loaded_until, run.end, run.advances_state), after, chunk_events, True)
    append = loaded_until is None or run.start >= loaded_until
    return _chunks(run, windows, chunk_events, append)


def _split_run(run: RunRange, at: datetime | None) -> list[RunRange]:
    if at is None or not run.start < at < run.end:
        return [run]
    return [
        RunRange(run.start, at, run.advances_state),
        RunRange(at, run.end, run.advances_state),
    ]


def _split_at(
    windows: list[PlannedWindow], at: datetime
) -> tuple[list[PlannedWindow], list[PlannedWindow]]:
    before: list[PlannedWindow] = []
    after: list[PlannedWindow] = []
    for planned in windows:
        w = planned.window
        if w.end <= at:
            before.append(planned)
        elif w.start >= at:
            after.append(planned)
        else:  # the fetcher learns the true counts from the first page of each half
            half = (planned.count + 1) // 2
            before.append(PlannedWindow(Window(w.start, at), half))
            after.append(PlannedWindow(Window(at, w.end), half))
    return before, after


def _chunks(
    run: RunRange, windows: list[PlannedWindow], chunk_events: int, append: bool
) -> list[Chunk]:
    groups = group_into_chunks(windows, chunk_events)
    if not groups:
        return [Chunk(run.start, run.end, [], run.advances_state, append)]
    chunks: list[Chunk] = []
    for i, group in enumerate(groups):
        start = run.start if i == 0 else chunks[-1].end
        end = run.end if i == len(groups) - 1 else groups[i + 1][0].window.start
        chunks.append(Chunk(start, end, group, run.advances_state, append))
    return chunks


def run_sync(
    options: SyncOptions,
    progress: SyncProgress | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SyncSummary:
    validate(options)
    progress = progress or SyncProgress()
    started = time.monotonic()
    host = resolve_host(options.host)
    api_key = resolve_api_key(options.api_key)
    target = options.target
    with ExitStack() as held:
        held.enter_context(
            pipeline_lock(pipelines_dir(target), target.pipeline_name, wait=options.wait_for_lock)
        )
        pipeline = make_pipeline(target)
        with _step("opening the destination"):
            database = held.enter_context(held_database(pipeline))
        recovered = finish_pending(pipeline, target)
        with _step("reading the sync state from the destination"):
            pipeline.sync_destination()
        resolve_table_format(pipeline, target.table_format)  # a usage error before any read
        # A kill between an appended job's commit and its bookkeeping re-runs the job, doubling
        # rows; only the last chunk loaded can hold such rows, so that range is checked always.
        source_state = dict(pipeline.state.get("sources", {}).get(SOURCE_NAME, {}))
        heal = duplicate_days(pipeline, since=last_chunk_start(source_state))
        sources = pipeline.state.get("sources", {})
        entry = stream_state(dict(sources.get(SOURCE_NAME, {})), options.filters)
        run = resolve_range(
            entry, start=options.start, end=options.end, lookback=options.lookback, now=now()
        )
        summary = SyncSummary(run.start, run.end, options.filters.as_dict())
        summary.recovered_packages = recovered
        client = AuditLogClient(
            host,
            api_key,
            timeout=options.timeout,
            retry=options.retry,
            max_connections=options.concurrency,
            transport=options.transport,
        )
        try:
            with ExitStack() as stack:
                decoders: list[Decoders | None] = [None]

                def start_workers(total: int) -> None:
                    # Worker processes pay for themselves on backfills, not on a small scheduled
                    # run; started once the run's size is known, they warm up during planning.
                    if total >= options.workers_from_events and decoders[0] is None:
                        decoders[0] = stack.enter_context(decoder_pool(options.workers))

                # Planned on each side of the loaded bound, so neither side's count is a guess
                # and an empty side costs no load.
                seen_until = loaded_until(source_state)
                windows: list[PlannedWindow] = []
                for part in _split_run(run, seen_until):
                    windows += plan_run(
                        client,
                        options.filters,
                        part,
                        max_offset=options.max_offset,
                        concurrency=options.concurrency,
                        on_total=start_workers,
                    )
                _heal_duplicates(pipeline, client, options, heal, summary, progress, database)
                workers = decoders[0]
                _load_chunks(
                    pipeline,
                    client,
                    options,
                    run,
                    windows,
                    summary,
                    progress,
                    workers.pool if workers else None,
                    database,
                    # the worker processes exit during the last load instead of after it
                    after_last_extract=workers.close_soon if workers else None,
                )
            summary.views = _refresh_views(pipeline)
        finally:
            client.close()
            progress.close()
            summary.requests = client.stats.requests
            summary.retries = client.stats.retries
            summary.seconds = time.monotonic() - started
        state_entry = stream_state(
            dict(pipeline.state.get("sources", {}).get(SOURCE_NAME, {})), options.filters
        )
        summary.covered_until = covered_until(state_entry)
    return summary


def _heal_duplicates(
    pipeline: Pipeline,
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
    pipeline: Pipeline,
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
    table_format = resolve_table_format(pipeline, options.target.table_format)
    merges = supports_merge(pipeline) or table_format == DELTA
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
                    with _step("reading the ids already written"):
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
                apply_table_format(source, table_format)
                with _step("loading into the destination"):
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
            with _step("loading into the destination"):
                release_free_memory()  # before DuckDB's buffers come on top
                clock = time.monotonic()
                normalize_info = pipeline.normalize()
                seconds["normalize"] = time.monotonic() - clock
                clock = time.monotonic()
                info = pipeline.load()
                seconds["load"] = time.monotonic() - clock
                if table_format == DELTA and not chunk.append:
                    drop_stale_leaves(pipeline, info.loads_ids)
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


def duplicate_days(pipeline: Pipeline, *, since: datetime | None) -> list[datetime]:
    """UTC days (as midnight datetimes) from `since` on holding an event id or a metadata leaf
    twice."""
    if since is None or not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return []
    if not supports_merge(pipeline) or is_delta(pipeline):
        return []  # its loads skip ids already written; Delta's upserts never double a key
    # On DuckDB, keys are grouped by their 64-bit hash: the string keys of a 300,000-event
    # chunk's leaves did not fit the 80 MB DuckDB is given (0.75 s where it fitted, 0.28 s
    # hashed). A collision only makes a day re-merged for nothing; a doubled key always shares
    # its hash, so none is missed.
    hashed = pipeline.destination is not None and pipeline.destination.destination_name == "duckdb"

    def key(*columns: str) -> str:
        return f"hash({', '.join(columns)})" if hashed else ", ".join(columns)

    with _step("checking for duplicate rows"), pipeline.sql_client() as client:
        logs = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
        # both ends: an event whose createdAt changed between two reads is in two days, and
        # the day it is in now is the one whose re-read replaces both rows
        sql = (
            f"select min(created_at), max(created_at) from {logs} where created_at >= %s"
            f" group by {key('id')} having count(*) > 1"
        )
        args: list[Any] = [since]
        if table_loaded(pipeline, METADATA_TABLE):
            leaves = client.make_qualified_table_name(METADATA_TABLE)
            recent = f"(select {key('id')} as k, created_at from {logs} where created_at >= %s)"
            sql += (
                f" union all select min(l.created_at), max(l.created_at) from {leaves} m"
                f" join {recent} l on l.k = {key('m.audit_log_id')}"
                f" group by {key('m.audit_log_id', 'm.path')} having count(*) > 1"
            )
            args.append(since)
        rows = client.execute_sql(sql, *args) or []
    utc = [t.astimezone(UTC) for row in rows for t in row if t is not None]
    return sorted({datetime(t.year, t.month, t.day, tzinfo=UTC) for t in utc})


def _refresh_views(pipeline: Pipeline) -> list[str]:
    """The analysis views, after every sync; a failure here never undoes the load."""
    from .views import apply_views

    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return []
    try:
        return apply_views(pipeline)
    except Exception as exc:
        logger.warning("the data is loaded, but the views could not be refreshed: %s", exc)
        return []


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
