"""`sync --publish PATH`: a read-only snapshot of a DuckDB dataset, for dashboards.

DuckDB lets one process write a file, and none while another process has it open, read-only
included: a BI tool, a notebook or `duckdb -readonly` holding the sync's own database would make
every sync fail. So dashboards read a copy instead. After each complete sync, the database is
copied whole (tables, views, the run history) into a temporary file beside PATH, which is made
read-only, flushed to disk and renamed onto PATH. A rename replaces the directory entry, not the
file: a reader that has the old snapshot open keeps reading its file, unchanged, until it closes
it; a connection opened after the rename sees the new data; nobody ever sees a half-written one.
A copy killed half-way leaves its temporary file beside PATH, which the next publish removes.

The copy is made in the sync's process while the sync still holds the dataset's lock (lock.py),
with the database attached read-only, so nothing writes it meanwhile. A checkpointed database
is copied byte for byte, far cheaper than DuckDB's `COPY FROM DATABASE` table by table, at the
cost of the free blocks the file holds (docs/performance.md has both); a database with a
write-ahead log is copied by DuckDB. A pointer file beside the database
(`.<db name>.published.json`) names the latest snapshot and when it was written, for the
commands that read through it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from tfy_audit._core.errors import PublishError
from tfy_audit._core.redact import clean
from tfy_audit._warehouse.duckdb_file import DUCKDB_MEMORY_LIMIT
from tfy_audit._warehouse.sql_text import sql_string

logger = logging.getLogger(__name__)

_SOURCE, _SNAPSHOT = "tfy_audit_publish_source", "tfy_audit_publish_snapshot"


@dataclass(frozen=True)
class Published:
    path: Path
    bytes: int
    seconds: float
    published_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "bytes": self.bytes, "seconds": round(self.seconds, 3)}


def pointer_path(database: str) -> Path:
    """The file beside a DuckDB database that names its latest snapshot."""
    db = Path(database).expanduser().resolve()
    return db.with_name(f".{db.name}.published.json")


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.publishing-"


def publish(database: str, path: str) -> Published:
    """Copy the DuckDB file `database` to `path` as a read-only snapshot, swapped in by rename
    (see the module's docstring). The caller holds the dataset's lock and no connection to
    `database`. Raises PublishError, leaving the previous snapshot as it was."""
    target = Path(path).expanduser().resolve()
    started = time.monotonic()
    temp = target.with_name(f"{_temp_prefix(target)}{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(target)
        _copy_database(Path(database).expanduser().resolve(), temp)
        _make_read_only(temp)
        os.replace(temp, target)
        _sync_dir(target.parent)
        size = target.stat().st_size
    except (OSError, duckdb.Error) as exc:
        _remove(temp)
        raise PublishError(
            f"the sync loaded its data, but publishing the snapshot {target} failed "
            f"({clean(' '.join(str(exc).split()), 300)}); the previous snapshot is unchanged: "
            "free space or fix the folder's permissions, then run the sync again"
        ) from exc
    except BaseException:
        _remove(temp)
        raise
    published = Published(target, size, time.monotonic() - started, datetime.now(UTC))
    _write_pointer(database, published)
    logger.info("published %s (%d bytes) in %.1fs", target, size, published.seconds)
    return published


def _copy_database(database: Path, temp: Path) -> None:
    """The whole database at `database` into a new DuckDB file at `temp`, closed and flushed.

    The source is attached read-only for the whole copy: DuckDB's shared lock keeps any writer
    out meanwhile, and fails at once if one has the file open. A checkpointed file (no
    write-ahead log beside it: dlt's connections are closed, and DuckDB checkpoints when the
    last one closes) is complete in itself, so its bytes are copied, which costs a sequential
    read and write; a file with a log is copied table by table by DuckDB, log included."""
    con = duckdb.connect(config={"memory_limit": DUCKDB_MEMORY_LIMIT, "threads": 1})
    try:
        con.execute(f"ATTACH {sql_string(str(database))} AS {_SOURCE} (READ_ONLY)")
        if database.with_name(database.name + ".wal").exists():
            con.execute(f"ATTACH {sql_string(str(temp))} AS {_SNAPSHOT}")
            con.execute(f"COPY FROM DATABASE {_SOURCE} TO {_SNAPSHOT}")
            con.execute(f"DETACH {_SNAPSHOT}")  # checkpoints: no write-ahead log is left
        else:
            shutil.copyfile(database, temp)
    finally:
        con.close()
    with open(temp, "rb") as written:
        os.fsync(written.fileno())


def _make_read_only(temp: Path) -> None:
    mode = stat.S_IMODE(os.stat(temp).st_mode)
    os.chmod(temp, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _remove_leftovers(target: Path) -> None:
    """Temporary files of publishes that were killed (their process is gone)."""
    prefix = _temp_prefix(target)
    for leftover in target.parent.glob(f"{prefix}*"):
        pid = leftover.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
            continue
        logger.info("removing %s, left by a publish that did not finish", leftover)
        _remove(leftover)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(temp: Path) -> None:
    """`temp` and its log, where they exist (their folder may not even be one)."""
    for path in (temp, temp.with_name(temp.name + ".wal")):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()


def _sync_dir(folder: Path) -> None:
    """The rename itself on disk, where the platform allows a directory to be synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_pointer(database: str, published: Published) -> None:
    """`.<db name>.published.json` beside the database: the snapshot's absolute path and when
    it was published, replaced by rename like the snapshot. A pointer that cannot be written
    is logged: the snapshot itself is in place."""
    pointer = pointer_path(database)
    document = {"path": str(published.path), "published_at": published.published_at.isoformat()}
    temp = pointer.with_name(pointer.name + f".{os.getpid()}.tmp")
    try:
        temp.write_text(json.dumps(document) + "\n")
        os.replace(temp, pointer)
    except OSError as exc:
        _remove(temp)
        logger.warning("the snapshot is published, but %s could not be written: %s", pointer, exc)
