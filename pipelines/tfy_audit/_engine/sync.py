"""`tfy-audit sync`: plan the run, then load it chunk by chunk, each chunk with its state.

Order of a run:
1. take the pipeline's lock, then the destination's (lock.py): a second sync of the same
   pipeline, or of the same dataset from elsewhere, refuses or waits;
2. heal dlt's working dir of what a kill can leave (missing folders, packages cut short), then
   finish load packages a crashed run left behind (their state comes with them);
3. restore state from the destination, the single source of truth: the pipeline's own, or
   the dataset's when the pipeline has none there (identity.py);
4. plan windows for `[mark - lookback, now)` by the service's counts (planning.py), ending
   no later than the service's own clock (clock.py);
5. re-merge days a crash left with duplicate rows (recovery.py);
6. load the windows chunk by chunk, so a crash loses at most the chunk in flight (loader.py);
7. refresh the analysis views;
8. with `--receipts-dir`, issue the daily receipts the run owes (receipts.py);
9. with `--publish`, swap in a read-only snapshot of a DuckDB dataset (publish.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import dlt
import httpx

from tfy_audit._compat.dlt import pipeline_source_state
from tfy_audit._core.options import SyncOptions, SyncSummary, client_limits, validate
from tfy_audit._core.settings import AUDIT_LOGS_TABLE, SOURCE_NAME
from tfy_audit._engine.identity import continue_dataset
from tfy_audit._engine.loader import ChunkLoader
from tfy_audit._engine.loader import (
    SyncProgress as SyncProgress,  # run_sync's observer, for the CLI
)
from tfy_audit._engine.lock import destination_lock, pipeline_lock
from tfy_audit._engine.recovery import (
    DayRepair,
    drop_orphan_leaves,
    duplicate_days,
    finish_pending,
    heal_working_dir,
)
from tfy_audit._engine.run_notes import describe_run, rows_from, settle_counts
from tfy_audit._service.client import AuditLogClient
from tfy_audit._service.clock import clock_offset, end_by_service, warn_if_skewed
from tfy_audit._service.decoders import DecodersOnDemand
from tfy_audit._service.planning import plan_around
from tfy_audit._source.config import resolve_api_key, resolve_checked_host
from tfy_audit._source.state import (
    covered_from,
    covered_until,
    last_chunk_start,
    loaded_until,
    run_range,
    stream_state,
)
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.database import held_database
from tfy_audit._warehouse.destination import make_pipeline, pipelines_dir, step
from tfy_audit._warehouse.lakehouse import DELTA, require_deltalake, resolve_table_format
from tfy_audit._warehouse.readback import known_repeated_ids, table_loaded
from tfy_audit._warehouse.run_log import RunRecorder

logger = logging.getLogger(__name__)


def run_sync(
    options: SyncOptions,
    progress: SyncProgress | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SyncSummary:
    """Sync the audit trail into `options.target` (see the module docstring); `progress`
    receives what the run does as it goes, `now` is the clock that sets the run's end."""
    return sync(options, progress, now=now)


def sync(
    options: SyncOptions,
    progress: SyncProgress | None = None,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    transport: httpx.BaseTransport | None = None,
) -> SyncSummary:
    """`run_sync`, its requests sent through `transport` when given: the seam for tests that
    serve the simulator in-process (`Simulator.transport()`), kept out of `SyncOptions`."""
    validate(options)
    if options.target.table_format == DELTA:
        require_deltalake()  # before the lock, a run record or any request
    if options.receipts_dir is not None:
        require_receipts(options.target)  # before the lock, a run record or any request
    progress = progress or SyncProgress()
    started = time.monotonic()
    host = resolve_checked_host(options.host, allow_insecure_http=options.allow_insecure_http)
    api_key = resolve_api_key(options.api_key, host)
    target = options.target
    with ExitStack() as held:
        held.enter_context(
            pipeline_lock(pipelines_dir(target), target.pipeline_name, wait=options.wait_for_lock)
        )
        recorder = held.enter_context(RunRecorder(target, options.filters, now=now))
        pipeline = make_pipeline(target)
        if heal_working_dir(pipeline):  # what a kill left: its state set aside too
            pipeline = make_pipeline(target)
        with step("opening the destination"):
            held.enter_context(destination_lock(pipeline, target, wait=options.wait_for_lock))
            database = held.enter_context(held_database(pipeline, wait=options.wait_for_lock))
        # a working dir without the pipeline's schema has lost any package a failed run left
        fresh_dir = not pipeline.default_schema_name
        recovered = finish_pending(pipeline, target)
        with step("reading the sync state from the destination"):
            pipeline.sync_destination()
        if recovered or fresh_dir:
            drop_orphan_leaves(pipeline)
        resolve_table_format(pipeline, target.table_format)  # a usage error before any read
        with step("reading the sync state from the destination"):
            # another pipeline name, or a lost working dir: what the dataset holds (identity.py)
            continued_from = continue_dataset(pipeline)
        if continued_from is not None:  # the dataset's schema is known now: checked again
            resolve_table_format(pipeline, target.table_format)
        # A kill between an appended job's commit and its bookkeeping re-runs the job, doubling
        # rows; only the last chunk loaded can hold such rows, so that range is checked always.
        source_state = _source_state(pipeline)
        heal = duplicate_days(pipeline, since=last_chunk_start(source_state))
        entry = stream_state(_source_state(pipeline), options.filters)
        at, mark = now(), covered_until(entry)
        first_start = options.first_run_start(at)
        run = run_range(entry, options, at)
        summary = SyncSummary(run.start, run.end, options.filters.as_dict())
        summary.recovered_packages = recovered
        summary.continued_from = continued_from
        describe_run(
            summary, mark=mark, run=run, first_start=first_start, read_from=covered_from(entry)
        )
        rows_before = rows_from(pipeline, run.start)
        # a repeated id recorded by an earlier run is no news when the lookback meets it again
        known_repeats = known_repeated_ids(pipeline)
        recorder.started(pipeline, summary, mark_before=mark)
        client = AuditLogClient(
            host,
            api_key,
            retry=options.retry,
            max_connections=options.concurrency,
            transport=transport,
            **client_limits(options, started),
        )
        try:
            with ExitStack() as stack:
                workers = DecodersOnDemand(
                    stack, options.workers, from_events=options.workers_from_events
                )
                windows = plan_around(
                    client,
                    options.filters,
                    run,
                    loaded_until(source_state),
                    max_offset=options.max_offset,
                    concurrency=options.concurrency,
                    on_total=workers.start_if_large,
                )
                workers.planned()
                # the planning's first answer says the service's time: the run ends by it too
                service_clock = client.service_clock()
                warn_if_skewed(service_clock)
                summary.clock_offset_seconds = clock_offset(service_clock)
                run, windows = end_by_service(run, windows, service_clock)
                summary.end = run.end
                repair = DayRepair(pipeline, client, options, database)
                repair.remerge(heal, summary, progress)
                loader = ChunkLoader(
                    pipeline,
                    client,
                    options,
                    database,
                    summary=summary,
                    progress=progress,
                    decoder=workers.pool,
                    on_repeated=repair.after_repeated,
                )
                # the worker processes exit during the last load instead of after it
                loader.load(run, windows, after_last_extract=workers.close_soon)
                settle_counts(summary, rows_before, rows_from(pipeline, run.start))
                summary.repeated_ids = [i for i in summary.repeated_ids if i not in known_repeats]
            summary.views = _refresh_views(pipeline)
            warehouse_of(pipeline).after_sync(pipeline)  # PostgreSQL: its indexes (postgres.py)
        finally:
            client.close()
            progress.close()
            summary.requests = client.stats.requests
            summary.retries = client.stats.retries
            summary.seconds = time.monotonic() - started
        summary.covered_until = covered_until(
            stream_state(_source_state(pipeline), options.filters)
        )
        recorder.finish(summary)
        if options.receipts_dir is not None:
            # still under the dataset's lock: no other sync changes a day while it is hashed
            _issue_receipts(pipeline, options, summary, host, api_key, transport, started)
        if options.publish is not None:
            # still under the dataset's lock: no other sync writes while it is copied
            database.release()
            _publish(target.db, options.publish, summary)
    return summary


def _publish(database: str, path: str, summary: SyncSummary) -> None:
    """The `--publish` snapshot of a complete run; an incomplete one leaves the previous."""
    from tfy_audit._engine.publish import publish

    if summary.incomplete_windows:
        logger.warning(
            "not publishing %s: %d window(s) could not be read completely; the previous "
            "snapshot stays until a complete run",
            path,
            len(summary.incomplete_windows),
        )
        return
    summary.published = publish(database, path).as_dict()


def require_receipts(target: Any) -> None:
    """`--receipts-dir` on a destination that cannot keep receipts: a usage error up front."""
    from tfy_audit._core.errors import UsageError
    from tfy_audit._warehouse.adapter import warehouse_for

    if not warehouse_for(target).runs_by_sql:
        raise UsageError(
            f"--receipts-dir needs a DuckDB or PostgreSQL destination (got {target.destination}):"
            " receipts are computed from the warehouse by SQL; drop --receipts-dir"
        )


def _issue_receipts(
    pipeline: dlt.Pipeline,
    options: SyncOptions,
    summary: SyncSummary,
    host: str,
    api_key: str,
    transport: httpx.BaseTransport | None,
    started: float,
) -> None:
    """The run's daily receipts; an incomplete run issues none (a day it could not read
    completely is not attested), and the next complete run issues what this one owed."""
    from tfy_audit._engine.receipts import issue_receipts, service_counter

    assert options.receipts_dir is not None
    if summary.incomplete_windows:
        logger.warning(
            "no daily receipts from this run: %d window(s) could not be read completely; the "
            "next complete run issues them",
            len(summary.incomplete_windows),
        )
        return
    with AuditLogClient(
        host,
        api_key,
        retry=options.retry,
        max_connections=options.concurrency,
        transport=transport,
        **client_limits(options, started),
    ) as client:
        # the service's count of a day is only the warehouse's to compare when unfiltered
        counter = (
            None
            if options.filters.as_dict()
            else service_counter(pipeline, client, concurrency=options.concurrency)
        )
        issued = issue_receipts(
            pipeline,
            options.receipts_dir,
            summary.start,
            summary.end,
            summary.covered_until,
            service_counts=counter,
        )
    summary.receipts = issued.as_dict()


def _source_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """A copy of the source's state as the pipeline holds it."""
    return pipeline_source_state(pipeline, SOURCE_NAME)


def _refresh_views(pipeline: dlt.Pipeline) -> list[str]:
    """The analysis views, after every sync; a failure here never undoes the load."""
    from tfy_audit._warehouse.views import apply_views

    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return []
    try:
        return apply_views(pipeline, replace_all=False)  # the views already current stay
    except Exception as exc:
        logger.warning("the data is loaded, but the views could not be refreshed: %s", exc)
        return []
