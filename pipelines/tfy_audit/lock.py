"""One sync per pipeline at a time: an advisory file lock beside the pipeline's working dir.

The kernel drops the lock when its holder dies, `kill -9` included, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import SyncAlreadyRunningError, UsageError

_POLL_SECONDS = 0.2


@contextmanager
def pipeline_lock(pipelines_dir: str, pipeline_name: str, *, wait: float = 0.0) -> Iterator[Path]:
    path = Path(pipelines_dir).expanduser() / f".{pipeline_name}.tfy-audit.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot create dlt's working dir {path.parent} ({exc.strerror}); pass a writable "
            "--pipelines-dir (or a --db in a writable directory)"
        ) from exc
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    raise SyncAlreadyRunningError(
                        f"a sync of pipeline {pipeline_name!r} is already running{holder}; "
                        "let it finish, or pass --wait SECONDS to queue behind it"
                    ) from None
                time.sleep(_POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid else ""
