"""The adapter of a DuckDB database file (dlt's `duckdb` destination, local files): loaded one
job at a time with a small memory limit, a connection held across a sync (database.py), a
lock file beside it (engine/lock.py), dlt's working dir beside it, and refused in one line
when the file system will not let it be written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from tfy_audit._compat.dlt import Destination, duckdb_destination
from tfy_audit._core.errors import UsageError
from tfy_audit._core.memory import duckdb_memory_limit
from tfy_audit._core.options import DestinationOptions
from tfy_audit._core.settings import (
    AUDIT_LOGS_TABLE,
    METADATA_TABLE,
    SUBJECTS_TABLE,
    SYNC_WINDOWS_TABLE,
)
from tfy_audit._warehouse.adapter import LockKind, QueryRoute
from tfy_audit._warehouse.generic import SqlWarehouse

# DuckDB caches up to 80% of RAM by default, and its load is what peaks a sync's memory: one
# thread and a small cache keep that peak low at no cost in load time (dlt loads the tables as
# parallel jobs anyway); `make bench` and docs/performance.md have the figures. Larger joins (a
# full re-merge) spill to the database's temp directory instead of failing. A commit that runs
# out of it fails its load job, which dlt retries; a retried copy job deletes what its failed
# attempt wrote first (RETRY_KEYS), so the limit costs a retry, never a doubled row. A row
# larger than the limit allows (one event of many MB) fails the first attempt of its job: the
# retry runs with the limit the process's memory allows (memory.duckdb_memory_limit).
DUCKDB_MEMORY_LIMIT = "80MB"
DUCKDB_THREADS = 1
# load jobs run at once into a DuckDB file (DuckDBFile.load_workers says why)
DUCKDB_LOAD_WORKERS = 1

# What identifies a row of each table within one load job's file: a retried DuckDB copy job
# deletes the rows of its file's keys before copying it again (see _compat/dlt.py), so a
# failed attempt that had written its rows anyway leaves none twice.
RETRY_KEYS: dict[str, tuple[str, ...]] = {
    AUDIT_LOGS_TABLE: ("id",),
    METADATA_TABLE: ("audit_log_id", "path"),
    SUBJECTS_TABLE: ("subject_id",),
    SYNC_WINDOWS_TABLE: ("sync_id", "filter_key", "window_start", "window_end"),
}


class DuckDBFile(SqlWarehouse):
    """A DuckDB database file (`--db`)."""

    holds_connection = True
    hashes_keys = True
    # DuckDB's CREATE OR REPLACE VIEW drops the view's comment (PostgreSQL's keeps it)
    stamps_views = True
    lock: LockKind = "lock file"
    query_route: QueryRoute | None = "duckdb file"
    # A DuckDB file is loaded one job at a time. dlt copies a package's tables side by side,
    # and with rows of many MB (pages of large manifests) each job holds its file's rows while
    # DuckDB cannot checkpoint what the others committed as long as any of them is in a
    # transaction: its memory then grows with every job until the package is loaded, and took
    # the process past the 1 GiB the README asks for. DuckDB writes with one thread here
    # (DUCKDB_THREADS), so jobs side by side mostly wait on each other anyway; `make bench`
    # showed no cost (docs/performance.md has the figures). `LOAD__WORKERS` still sets another
    # number.
    load_workers: int | None = DUCKDB_LOAD_WORKERS

    def pipelines_dir(self, target: DestinationOptions) -> str:
        db = Path(target.db).expanduser()
        return str(db.with_name(f".{db.name}.pipelines"))

    def database_file(self, target: DestinationOptions) -> Path | None:
        return Path(target.db).expanduser()

    def make_destination(
        self, target: DestinationOptions, *, read_only: bool
    ) -> Destination[Any, Any]:
        """The file's destination; unless `read_only` (then it is opened read-only), its
        folder is made and a file the file system will not let be written is refused."""
        if not read_only:
            folder = Path(target.db).expanduser().resolve().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(
                    f"cannot create {folder} for --db ({exc.strerror}); pass a --db in a "
                    "writable directory"
                ) from exc
            refusal = self.write_refusal(target)
            if refusal:
                raise UsageError(
                    f"cannot write to the DuckDB file {target.db}: {refusal}; make it writable "
                    "(chmod u+w, or chattr -i where it is immutable) or pass another --db"
                )
        return duckdb_destination(
            str(Path(target.db).expanduser()),
            memory_limit=DUCKDB_MEMORY_LIMIT,
            retry_memory_limit=duckdb_memory_limit(),
            threads=DUCKDB_THREADS,
            retry_keys=RETRY_KEYS,
            read_only=read_only,
        )

    def for_analysis(self, client: Any) -> None:
        # the file opens at the small limit its loads keep; a rule's joins over a long history
        # need what a retried load gets (a million events ran one out of memory at the small one)
        client.execute_sql(f"SET memory_limit = '{duckdb_memory_limit()}'")

    def write_refusal(self, target: DestinationOptions) -> str | None:
        """Why the file system will not let `--db` be written: the file (read-only,
        immutable) or its folder (where DuckDB writes its `.wal`); None when it will. Tried,
        not judged from mode bits, which do not stop root."""
        db = Path(target.db).expanduser()
        if db.exists():
            try:
                os.close(os.open(db, os.O_RDWR | os.O_CLOEXEC))
            except OSError as exc:
                return f"the file refuses writes ({exc.strerror})"
        folder = db.resolve().parent
        if folder.is_dir():
            try:
                tempfile.TemporaryFile(dir=folder).close()
            except OSError as exc:
                return f"its folder {folder} refuses writes ({exc.strerror})"
        return None
