"""Crash recovery and duplicate repair.

A run killed at any point leaves the destination consistent with some earlier commit, but two
things may need finishing: load packages dlt extracted or normalized and never loaded
(`finish_pending`, run before the state is read, since their state comes with them), and rows
doubled by a load job that committed but was re-run after the kill (`duplicate_days`), whose
days `DayRepair` re-merges. `DayRepair` also re-merges the days of an event the service served
in two windows of one chunk (its createdAt changed while the chunk was read).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dlt

from tfy_audit._compat.dlt import (
    PACKAGE_SCHEMA_FILE,
    DatabaseUndefinedRelation,
    create_package_folders,
    delete_extracted_package,
    package_folders,
    package_roots,
)
from tfy_audit._core.options import DestinationOptions, SyncOptions, SyncSummary
from tfy_audit._core.settings import AUDIT_LOGS_TABLE, METADATA_TABLE
from tfy_audit._engine.loader import ChunkLoader, SyncProgress
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.planning import Chunk, RunRange, plan_run
from tfy_audit._warehouse.adapter import warehouse_of
from tfy_audit._warehouse.database import HeldDatabase
from tfy_audit._warehouse.destination import step
from tfy_audit._warehouse.readback import table_loaded

logger = logging.getLogger(__name__)


def finish_pending(pipeline: dlt.Pipeline, target: DestinationOptions) -> int:
    """Load what a crashed run left behind; returns the number of packages finished. The
    working dir was healed first (`heal_working_dir`)."""
    if not pipeline.has_pending_data:
        return 0
    _drop_extracted_copies(pipeline)
    pending = len(pipeline.list_extracted_load_packages()) + len(
        pipeline.list_normalized_load_packages()
    )
    logger.info("finishing %d load package(s) left by an interrupted run", pending)
    with step("finishing the interrupted run's load"):
        pipeline.normalize()
        info = pipeline.load()
        # Delta: the leaves an upsert left go, as after any merged chunk
        warehouse_of(pipeline).after_chunk(pipeline, info.loads_ids, appended=False)
    return pending


def heal_working_dir(pipeline: dlt.Pipeline) -> Path | None:
    """Make dlt's working dir one dlt can run in again, whatever a kill left. Package folders
    that are missing are created (dlt's own wipe of the dir, cut short, leaves some out). A
    package folder without its schema (cut short while written or deleted) can be neither
    loaded nor dropped by dlt, and the local state may count its rows: then the whole working
    dir is moved aside, beside it (`.<pipeline>.set_aside/<time>`), with a warning, never
    deleted; dlt restores state and schemas from the destination, and what that state does
    not cover is read again. Returns where the dir went; when it did, the pipeline must be
    made again."""
    create_package_folders(pipeline)
    cut_short = [
        f"{Path(package).name} ({step_name})"
        for step_name, root in package_roots(pipeline).items()
        if step_name != "loaded"
        for package in sorted(Path(root).iterdir())
        if package.is_dir() and not (package / PACKAGE_SCHEMA_FILE).exists()
    ]
    if not cut_short:
        return None
    working = Path(pipeline.working_dir)
    when = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = _free_path(working.with_name(f".{working.name}.set_aside") / when)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    working.rename(target)
    logger.warning(
        "load package(s) %s were cut short by an interrupted run and cannot be loaded; dlt's "
        "working dir was set aside in %s, the state is restored from the destination and what "
        "it does not cover is read again",
        ", ".join(cut_short),
        target,
    )
    return target


def _free_path(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, ... whichever does not exist yet."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _drop_extracted_copies(pipeline: dlt.Pipeline) -> None:
    """dlt's normalize commits a package by renaming it into the normalized packages, then
    deletes its extracted copy; a kill between the two leaves both, and normalizing the copy
    again fails (`Directory not empty`). The rename is atomic, so the normalized package is
    whole: the copy goes."""
    folders = package_folders(pipeline)
    done = folders.normalized | folders.loaded
    # a package still (partly) in `new` was not renamed at once (dlt falls back to moving its
    # files one by one on some errors): then the extracted copy may be the only whole one
    done -= folders.new
    for load_id in folders.extracted:
        if load_id in done:
            logger.info("load package %s was normalized before the crash", load_id)
            delete_extracted_package(pipeline, load_id)


def drop_orphan_leaves(pipeline: dlt.Pipeline) -> int:
    """Delete the metadata leaves whose event is not in `audit_logs`; returns how many.

    dlt loads each table of a package as a job of its own, so a load whose `audit_logs` job
    failed after the `audit_log_metadata` job committed leaves leaves without their event. The
    package's state was not committed with it (dlt restores the state of complete loads only),
    so the high-water mark did not move and the next read loads those events again, leaves and
    all: the orphans go first, or they would stay, doubled by the leaves appended anew. The
    check reads both tables whole, so the sync runs it only where such a load can be: after
    finishing a package left behind, or from a working dir without the pipeline's schema
    (a scheduled Job without a volume, where the failed package was lost with its dir)."""
    warehouse = warehouse_of(pipeline)
    if warehouse.files or not warehouse.merges:
        return 0  # the filesystem, Delta tables: no SQL to delete with; not healed here
    hashed = warehouse.hashes_keys  # as in duplicate_days: hashes fit DuckDB's memory

    def key(column: str) -> str:
        return f"hash({column})" if hashed else column

    with step("checking for metadata rows without their event"), pipeline.sql_client() as client:
        leaves = client.make_qualified_table_name(METADATA_TABLE)
        logs = client.make_qualified_table_name(AUDIT_LOGS_TABLE)
        orphan = (
            f"not exists (select 1 from {logs} a where {key('a.id')} = {key('m.audit_log_id')})"
        )
        # the schema may not know the tables yet: no load of this pipeline has completed
        try:
            rows = client.execute_sql(f"select count(*) from {leaves} m where {orphan}")
        except DatabaseUndefinedRelation:
            return 0
        count = int(rows[0][0]) if rows else 0
        if count:
            logger.warning(
                "deleting %d metadata rows whose event is missing (left by a load that failed "
                "part-way); their events are read again",
                count,
            )
            client.execute_sql(
                f"delete from {leaves} where audit_log_id in (select m.audit_log_id from "
                f"{leaves} m where {orphan})"
            )
    return count


def duplicate_days(pipeline: dlt.Pipeline, *, since: datetime | None) -> list[datetime]:
    """UTC days (as midnight datetimes) from `since` on holding an event id or a metadata leaf
    twice."""
    if since is None or not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        return []
    warehouse = warehouse_of(pipeline)
    if warehouse.files or not warehouse.merges:
        return []  # its loads skip ids already written; Delta's upserts never double a key
    # On DuckDB, keys are grouped by their 64-bit hash: the string keys of a large chunk's
    # leaves need not fit the memory DuckDB is given, their hashes do. A collision only makes a
    # day re-merged for nothing; a doubled key always shares its hash, so none is missed. The
    # leaves are joined to the chunk's events on the id itself, not its hash: DuckDB bounds the
    # leaves' scan by the least and greatest id joined to, which no hash computed per leaf
    # allows. Where ids grow with time (the simulator's do), a scheduled run then reads the
    # last chunk's row groups instead of every leaf; otherwise both scan every leaf.
    hashed = warehouse.hashes_keys

    def key(*columns: str) -> str:
        return f"hash({', '.join(columns)})" if hashed else ", ".join(columns)

    with step("checking for duplicate rows"), pipeline.sql_client() as client:
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
            recent = f"(select id, created_at from {logs} where created_at >= %s)"
            sql += (
                f" union all select min(l.created_at), max(l.created_at) from {leaves} m"
                f" join {recent} l on l.id = m.audit_log_id"
                f" group by {key('m.audit_log_id', 'm.path')} having count(*) > 1"
            )
            args.append(since)
        rows = client.execute_sql(sql, *args) or []
    utc = [t.astimezone(UTC) for row in rows for t in row if t is not None]
    return sorted({datetime(t.year, t.month, t.day, tzinfo=UTC) for t in utc})


class DayRepair:
    """Re-merges whole UTC days: unfiltered, as doubled rows may be of any filter set; never
    past now. Each day is planned and loaded by a loader that merges every chunk and remembers
    every id of its read, and does not repair in turn."""

    def __init__(
        self,
        pipeline: dlt.Pipeline,
        client: AuditLogClient,
        options: SyncOptions,
        database: HeldDatabase,
    ) -> None:
        self._pipeline = pipeline
        self._client = client
        self._options = dataclasses.replace(options, filters=AuditLogFilters())
        self._database = database

    def remerge(
        self,
        days: list[datetime],
        summary: SyncSummary,
        progress: SyncProgress,
        *,
        within: Chunk | None = None,
    ) -> None:
        """Re-merge `days` (left with duplicate rows by a crash mid-append). `within`: only the
        part of each day in this chunk, just loaded, as the rest of the day may belong to
        chunks still to come (appended, they would add what a re-merge had loaded)."""
        options = self._options
        loader = ChunkLoader(
            self._pipeline,
            self._client,
            options,
            self._database,
            summary=summary,
            progress=progress,
            merge_all=True,
        )
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
                self._client,
                options.filters,
                run,
                max_offset=options.max_offset,
                concurrency=options.concurrency,
            )
            loader.load(run, windows)

    def after_repeated(self, chunk: Chunk) -> None:
        """Re-merge the days from `chunk`'s start that hold a key twice, within the chunk."""
        days = duplicate_days(self._pipeline, since=chunk.start)
        # its own summary and no progress: the run's figures stay the run's
        scratch = SyncSummary(chunk.start, chunk.end, {})
        self.remerge(days, scratch, SyncProgress(), within=chunk)
