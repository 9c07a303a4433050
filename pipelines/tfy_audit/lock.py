"""One sync per pipeline at a time: an advisory file lock beside the pipeline's working dir.

The kernel drops the lock when its holder dies, `kill -9` included, so a crash never leaves a
stale lock behind.

The pipelines dir may be in a shared place, so nothing in it is trusted blindly: it is created
private (0700), and refused when another user owns it or anyone may write to it; the lock file
is opened without following a symbolic link, and refused unless it is a regular file of ours
with no other link (so it can never be made to point at another file); the pipeline name is
checked before any path is made of it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pathvalidate

from .errors import SyncAlreadyRunningError, UsageError
from .redact import clean

_POLL_SECONDS = 0.2

# dlt's rule for a pipeline name (FileStorage.validate_file_name_component): a file name on
# every platform, without `.`, `%`, `{` or `}`; so no separator and no `..` either.
_NOT_IN_NAME = re.compile(r"[.%{}]")


def validate_pipeline_name(name: str) -> str:
    """`name` if dlt accepts it as a pipeline name; UsageError otherwise, before any path is
    made of it."""
    try:
        pathvalidate.validate_filename(name, platform="universal")
        valid = not _NOT_IN_NAME.search(name)
    except pathvalidate.ValidationError:
        valid = False
    if not valid:
        raise UsageError(
            f"--pipeline-name {clean(name, 80)!r} is not a valid pipeline name: it names a "
            "folder, so use letters, digits, '_' and '-' (no '/', '.', '%', '{' or '}')"
        )
    return name


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
