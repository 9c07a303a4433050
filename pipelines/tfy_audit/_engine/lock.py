"""One writer at a time: a sync holds two locks for its whole run.

- The pipeline's lock, an advisory file lock beside its working dir: one sync per local state.
- The destination's lock, on what every writer of the dataset shares, wherever one can be held
  (`destination_lock`): syncs from other machines, or with another `--pipelines-dir`, write
  the same tables, and two loads of the same events side by side double rows.
  Both are keyed on the dataset's name as the destination stores it (`stored_dataset_name`).
  * PostgreSQL: a session-level advisory lock keyed on the dataset, on a connection of its own
    held for the run; the server drops it when the session ends, a killed holder included.
    The holder is named by its connection's `application_name`.
  * DuckDB: an exclusive file lock beside the database file, keyed on the dataset. DuckDB's own
    lock on the database excludes other processes only while the file is open, and a sync lets
    the file go while it reads (database.py); a lock row in the database could only be taken
    with the file open, and would need a lease to outlive a killed holder. Every process that
    opens a DuckDB file runs on the same host (DuckDB locks the file itself), so a file lock
    beside it reaches every writer, and the kernel drops it when its holder dies.
  * Any other destination (filesystem, other warehouses): not protected; README says so.

A lock held elsewhere makes the sync refuse with one line naming the holder (host, pid, start),
or wait up to `wait` seconds for it. Neither lock can go stale: each ends with its holder (the
kernel drops a file lock, the server an advisory lock, `kill -9` included).

The pipelines dir may be in a shared place, so nothing in it is trusted blindly: it is created
private (0700), and refused when another user owns it or anyone may write to it; the lock file
is opened without following a symbolic link, and refused unless it is a regular file of ours
with no other link (so it can never be made to point at another file); the pipeline name is
checked before any path is made of it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dlt

from tfy_audit._core.errors import SyncAlreadyRunningError, UsageError
from tfy_audit._core.options import validate_pipeline_name
from tfy_audit._warehouse.adapter import warehouse_of

if TYPE_CHECKING:  # options.py checks pipeline names with this module
    from tfy_audit._core.options import DestinationOptions

logger = logging.getLogger(__name__)


# Marks a PostgreSQL session that holds a tfy-audit lock: `application_name` is
# "<prefix> <holder>", which another writer reads from pg_stat_activity to name the holder.
_PG_APPLICATION = "tfy-audit"


def holder_description() -> str:
    """This process, as another writer names it: host, pid and when it took the lock."""
    started = datetime.now(UTC).replace(microsecond=0).isoformat()
    return f"host {socket.gethostname()}, pid {os.getpid()}, started at {started}"


_POLL_SECONDS = 0.2

# dlt's rule for a pipeline name (FileStorage.validate_file_name_component): a file name on
# every platform, without `.`, `%`, `{` or `}`; so no separator and no `..` either.


def private_dir(folder: Path) -> None:
    """Create `folder` private (0700), or check an existing one: refused if another user owns
    it or anyone may write to it (they could swap the files a sync writes)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.stat(folder)
    except OSError as exc:
        raise UsageError(
            f"cannot create dlt's working dir {folder} ({exc.strerror}); pass a writable "
            "--pipelines-dir (or a --db in a writable directory)"
        ) from exc
    if info.st_uid != os.geteuid():
        raise UsageError(
            f"the pipelines dir {folder} belongs to another user (uid {info.st_uid}); pass a "
            "--pipelines-dir of your own"
        )
    if info.st_mode & stat.S_IWOTH:
        raise UsageError(
            f"the pipelines dir {folder} is writable by every user; make it private "
            f"(chmod 700 {folder}) or pass another --pipelines-dir"
        )


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError(
                f"the lock file {path} is a symbolic link; remove it (tfy-audit never follows "
                "one there)"
            ) from None
        raise UsageError(f"cannot open the lock file {path} ({exc.strerror})") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_nlink != 1:
        os.close(fd)
        raise UsageError(
            f"the lock file {path} is not a plain file of this user's (another link to it, or "
            "another owner); remove it"
        )
    return fd


@contextmanager
def pipeline_lock(pipelines_dir: str, pipeline_name: str, *, wait: float = 0.0) -> Iterator[Path]:
    validate_pipeline_name(pipeline_name)
    folder = Path(pipelines_dir).expanduser()
    private_dir(folder)
    path = folder / f".{pipeline_name}.tfy-audit.lock"
    fd = _open_lock_file(path)
    try:

        def refuse(holder: str) -> SyncAlreadyRunningError:
            named = f" (pid {holder})" if holder else ""
            return SyncAlreadyRunningError(
                f"a sync of pipeline {pipeline_name!r} is already running{named}; "
                "let it finish, or pass --wait SECONDS to queue behind it"
            )

        _flock(fd, wait, refuse, what=f"pipeline {pipeline_name!r}")
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def destination_lock(
    pipeline: dlt.Pipeline, target: DestinationOptions, *, wait: float = 0.0
) -> Iterator[str]:
    """Hold the destination's lock on the pipeline's dataset for the block (see the module's
    docstring); yields how the dataset is protected: "postgres advisory lock", "lock file" or
    "none"."""
    kind = warehouse_of(pipeline).lock
    if kind == "lock file":
        with _duckdb_lock(target.db, stored_dataset_name(pipeline), wait=wait):
            yield "lock file"
    elif kind == "postgres advisory lock":
        with _postgres_lock(pipeline, wait=wait):
            yield "postgres advisory lock"
    else:
        yield "none"


def stored_dataset_name(pipeline: dlt.Pipeline) -> str:
    """The dataset's name as the destination stores it: dlt normalises `--dataset` with the
    schema's naming convention (`LOCKX` and `lockx` are one schema), so a lock keyed on the
    raw name would let two spellings of one dataset load side by side."""
    client: Any = pipeline.sql_client()  # makes no connection
    return str(client.dataset_name)


def _refusal(dataset: str, holder: str) -> SyncAlreadyRunningError:
    named = f" ({holder})" if holder else ""
    return SyncAlreadyRunningError(
        f"another sync is loading dataset {dataset!r}{named}; let it finish, or pass "
        "--wait SECONDS to queue behind it"
    )


def duckdb_lock_path(database: str, dataset: str) -> Path:
    """The lock file of a dataset in a DuckDB file: beside the file, never inside it."""
    db = Path(database).expanduser().resolve()
    return db.with_name(f".{db.name}.{dataset}.tfy-audit.lock")


@contextmanager
def _duckdb_lock(database: str, dataset: str, *, wait: float) -> Iterator[None]:
    # beside the database, perhaps in a shared directory: opened as carefully as the pipeline's
    fd = _open_lock_file(duckdb_lock_path(database, dataset))
    try:

        def refuse(holder: str) -> SyncAlreadyRunningError:
            return _refusal(dataset, holder)

        _flock(fd, wait, refuse, what=f"dataset {dataset!r}")
        os.ftruncate(fd, 0)
        os.write(fd, holder_description().encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _flock(
    fd: int, wait: float, refuse: Callable[[str], SyncAlreadyRunningError], *, what: str
) -> None:
    """Take an exclusive lock on `fd`, waiting up to `wait` seconds for its holder, whose own
    description is the file's text."""
    deadline = time.monotonic() + wait
    warned = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _read_holder(fd)
            if time.monotonic() >= deadline:
                raise refuse(holder) from None
            if not warned:
                logger.warning(
                    "waiting up to %.0fs for the sync holding %s (%s)",
                    wait,
                    what,
                    holder or "holder unknown",
                )
                warned = True
            time.sleep(_POLL_SECONDS)


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 256, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def postgres_lock_key(dataset: str) -> int:
    """The advisory lock's key: a signed 64-bit hash of the dataset's name as PostgreSQL
    stores it. Every pipeline
    into one dataset writes the same tables (and a day's re-merge is unfiltered), so the
    pipeline and its filters are not part of it."""
    digest = hashlib.sha256(f"tfy-audit:{dataset}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _postgres_lock(pipeline: dlt.Pipeline, *, wait: float) -> Iterator[None]:
    from tfy_audit._warehouse.destination import step

    client: Any = pipeline.sql_client()
    dataset = str(client.dataset_name)  # as stored: see stored_dataset_name
    key = postgres_lock_key(dataset)
    with step("taking the destination's lock"):
        client.open_connection()
    try:
        with step("taking the destination's lock"):
            # pg_stat_activity shows it to the next writer (the session's start is its
            # backend_start); PostgreSQL cuts a name at 63 bytes, so the host goes last
            name = f"{_PG_APPLICATION} {os.getpid()} {socket.gethostname()}"
            client.execute_sql("select set_config('application_name', %s, false)", name)
        deadline = time.monotonic() + wait
        warned = False
        while True:
            with step("taking the destination's lock"):
                ((taken,),) = client.execute_sql("select pg_try_advisory_lock(%s)", key)
            if taken:
                break
            holder = _postgres_holder(client, key)
            if time.monotonic() >= deadline:
                raise _refusal(dataset, holder)
            if not warned:
                logger.warning(
                    "waiting up to %.0fs for the sync holding dataset %r (%s)",
                    wait,
                    dataset,
                    holder or "holder unknown",
                )
                warned = True
            time.sleep(_POLL_SECONDS)
        yield
    finally:
        try:
            client.close_connection()  # ending the session releases the lock
        except Exception:
            logger.warning("closing the destination lock's connection failed", exc_info=True)


def _postgres_holder(client: Any, key: int) -> str:
    """The holder's description, read from its session's `application_name`."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    try:
        rows = client.execute_sql(
            "select a.application_name, a.backend_start, a.client_addr::text"
            " from pg_locks l join pg_stat_activity a on a.pid = l.pid"
            " where l.locktype = 'advisory' and l.granted and l.classid::bigint = %s"
            " and l.objid::bigint = %s and l.objsubid = 1",
            unsigned >> 32,
            unsigned & 0xFFFFFFFF,
        )
    except Exception:
        logger.debug("could not name the lock's holder", exc_info=True)
        return ""
    for application, started, address in rows or []:
        parts = str(application or "").split(" ", 2)
        if len(parts) == 3 and parts[0] == _PG_APPLICATION:
            pid, host = parts[1], parts[2]
        else:  # not a tfy-audit session, or one that renamed itself
            pid, host = "unknown", ""
        host = host or address or "unknown"
        when = started.astimezone(UTC).replace(microsecond=0).isoformat() if started else "?"
        return f"host {host}, pid {pid}, started at {when}"
    return ""
