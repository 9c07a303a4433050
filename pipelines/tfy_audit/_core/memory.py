"""Giving memory that a chunk's extract freed back to the operating system.

Pages pass through the main process as bytes and Arrow buffers. Once a chunk is extracted
they are freed, but the allocators keep the pages: Arrow's memory pool (mimalloc in the wheels
installed here) and glibc's heap and per-thread arenas. The load that follows would then stack
DuckDB's buffers on top of memory freed but still held, and raise the run's peak (`make bench`
reports it; docs/performance.md has the figures).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path

import pyarrow as pa

from tfy_audit._core.errors import UsageError
from tfy_audit._core.settings import (
    DUCKDB_MEMORY_CEILING,
    DUCKDB_MEMORY_FLOOR,
    DUCKDB_MEMORY_LIMIT_ENV,
    DUCKDB_MEMORY_SHARE,
)

logger = logging.getLogger(__name__)


# mallopt's parameter for the most arenas glibc's malloc may create.
_M_ARENA_MAX = -8


@cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's mallopt, or None on a C library without it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas for the rest of the process; False where that is not
    possible (another C library). Never raises.

    glibc gives threads that allocate at once arenas of their own, up to 8 per core, and memory
    freed in one arena is not reused by another: a sync's threads (fetching, reading ahead,
    DuckDB's) spread a long run's allocations over many arenas, and the peak creeps up chunk by
    chunk. A few arenas keep the peak lower at no cost in time; 2 cost more CPU than 3, so the
    command takes 3 (figures: `make bench`, docs/performance.md). A process-wide setting: the
    command sets it, not the library.
    """
    mallopt = _mallopt()
    if mallopt is None or mallopt(_M_ARENA_MAX, arenas) != 1:
        logger.debug("malloc arenas cannot be capped at %d here", arenas)
        return False
    return True


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None on a C library without it (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols, libc's among them
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> None:
    """Return freed memory to the OS where the allocators allow it. Never raises."""
    try:
        pa.default_memory_pool().release_unused()
    except Exception:  # an allocator without the call
        logger.debug("Arrow's memory pool cannot release memory", exc_info=True)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# cgroup v2, then v1: the memory limit of the container the process runs in
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
# cgroup v1 writes "no limit" as a huge number
_NO_LIMIT = 1 << 60
_DUCKDB_SIZE = re.compile(r"\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)


def process_memory_bytes(cgroup_files: tuple[Path, ...] = _CGROUP_LIMITS) -> int | None:
    """The memory the process may use: its cgroup's limit if it has one, else the machine's
    physical memory; None if neither can be read."""
    limits: list[int] = []
    for path in cgroup_files:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < _NO_LIMIT:
            limits.append(int(text))
    with contextlib.suppress(OSError, ValueError, AttributeError):  # not every OS has them
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return min(limits) if limits else None


def duckdb_memory_limit(
    environ: Mapping[str, str] = os.environ,
    available: Callable[[], int | None] = process_memory_bytes,
) -> str:
    """DuckDB's memory limit for a retried load job, as DuckDB spells it:
    `$TFY_AUDIT_DUCKDB_MEMORY_LIMIT` if set, else
    a share of what `available()` says the process may use, between a floor and a ceiling
    (settings.py says why each). UsageError for a value DuckDB would not read."""
    chosen = environ.get(DUCKDB_MEMORY_LIMIT_ENV, "").strip()
    if chosen:
        if not _DUCKDB_SIZE.fullmatch(chosen):
            raise UsageError(
                f"{DUCKDB_MEMORY_LIMIT_ENV}={chosen[:40]!r} is not a size DuckDB reads: set it "
                "like 512MB or 2GB, or unset it to follow the memory this process may use"
            )
        return chosen
    memory = available()
    share = DUCKDB_MEMORY_FLOOR if memory is None else int(memory * DUCKDB_MEMORY_SHARE)
    limit = min(max(share, DUCKDB_MEMORY_FLOOR), DUCKDB_MEMORY_CEILING)
    return f"{limit // (1024 * 1024)}MiB"
