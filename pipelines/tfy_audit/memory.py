"""Giving memory that a chunk's extract freed back to the operating system.

Pages pass through the main process as bytes and Arrow buffers. Once a chunk is extracted
they are freed, but the allocators keep the pages: Arrow's memory pool (mimalloc in the wheels
installed here) and glibc's heap and per-thread arenas. The load that follows would then stack
DuckDB's buffers on top of memory freed but still held, and raise the run's peak (`make bench`
reports it; docs/performance.md has the figures).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from functools import cache

import pyarrow as pa

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
