"""Giving memory that a chunk's extract freed back to the operating system.

Pages pass through the main process as bytes and Arrow buffers. Once a chunk is extracted
they are freed, but the allocators keep the pages: Arrow's memory pool (mimalloc in the wheels
installed here) and glibc's heap and per-thread arenas. The load that follows then stacks
DuckDB's buffers on top of ~100 MB of freed-but-held memory. Measured at 300,000 events: 275 MB
resident after an extract, 212 MB after this.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from functools import cache

import pyarrow as pa

logger = logging.getLogger(__name__)


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
