"""How much memory the process may use and holds, and giving what a chunk's extract freed back.

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
    MEMORY_LIMIT_ENV,
    READ_GATE_SHARE,
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
_DUCKDB_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


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


def size_bytes(text: str) -> int | None:
    """A size as DuckDB spells it (`512MB`, `1GiB`: MB is 10^6 bytes, MiB 2^20) in bytes;
    None for text that is not one."""
    match = _DUCKDB_SIZE.fullmatch(text.strip())
    if match is None:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def memory_limit_bytes(
    environ: Mapping[str, str] = os.environ,
    available: Callable[[], int | None] = process_memory_bytes,
) -> int | None:
    """The memory the process may use: `$TFY_AUDIT_MEMORY_LIMIT` if set, else what `available()`
    says (its cgroup's limit, else the machine's); None if nothing says. UsageError for a value
    that is not a size."""
    chosen = environ.get(MEMORY_LIMIT_ENV, "").strip()
    if not chosen:
        return available()
    size = size_bytes(chosen)
    if size is None or size <= 0:
        raise UsageError(
            f"{MEMORY_LIMIT_ENV}={chosen[:40]!r} is not a size: set it like 1GiB or 512MB, or "
            "unset it to follow the container's or the machine's memory"
        )
    return size


def duckdb_memory_limit(
    environ: Mapping[str, str] = os.environ,
    available: Callable[[], int | None] = process_memory_bytes,
) -> str:
    """DuckDB's memory limit for a retried load job, as DuckDB spells it:
    `$TFY_AUDIT_DUCKDB_MEMORY_LIMIT` if set, else a share of the memory the process may use
    (`memory_limit_bytes`), between a floor and a ceiling (settings.py says why each).
    UsageError for a value DuckDB would not read."""
    chosen = environ.get(DUCKDB_MEMORY_LIMIT_ENV, "").strip()
    if chosen:
        if not _DUCKDB_SIZE.fullmatch(chosen):
            raise UsageError(
                f"{DUCKDB_MEMORY_LIMIT_ENV}={chosen[:40]!r} is not a size DuckDB reads: set it "
                "like 512MB or 2GB, or unset it to follow the memory this process may use"
            )
        return chosen
    memory = memory_limit_bytes(environ, available)
    share = DUCKDB_MEMORY_FLOOR if memory is None else int(memory * DUCKDB_MEMORY_SHARE)
    limit = min(max(share, DUCKDB_MEMORY_FLOOR), DUCKDB_MEMORY_CEILING)
    return f"{limit // (1024 * 1024)}MiB"


def resident_bytes() -> int | None:
    """The process's resident memory (RSS) now, from /proc; None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _page_size()
    except (OSError, ValueError, IndexError):
        return None


@cache
def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


class MemoryGate:
    """Whether the process holds more than READ_GATE_SHARE of the memory it may use.

    What a page costs while it is read and decoded is counted (budget.py), but not what the
    allocators keep once it is freed (glibc's arenas, Arrow's pool), nor what a load or the
    rest of the process holds: how much of that there is depends on timing, and it made the
    peak of a run of pages at the body cap vary by hundreds of MB. The reader asks the gate
    before each page it asks for: while the process is over its share, one page is read at a
    time and freed memory is given back after each (fetch.py). What the pages already asked
    for will hold counts as held, so the peak is bounded by the share plus one page at the body
    cap, whatever the allocators do. Never raises."""

    def __init__(
        self,
        limit: int | None,
        resident: Callable[[], int | None] = resident_bytes,
    ) -> None:
        self.threshold = None if limit is None else int(limit * READ_GATE_SHARE)
        self._resident = resident
        self.closed_once = False

    @classmethod
    def for_this_process(cls) -> MemoryGate:
        """The gate of the memory this process may use (an unreadable setting: no gate; the
        command has refused it already)."""
        try:
            return cls(memory_limit_bytes())
        except UsageError:
            return cls(None)

    def over(self, coming: int = 0) -> bool:
        """Whether the process holds more than its share now, counting `coming` bytes it is
        about to hold (pages asked for, not yet decoded); False where RSS is unknown."""
        if self.threshold is None:
            return False
        held = self._resident()
        if held is None or held + coming <= self.threshold:
            return False
        if not self.closed_once:
            self.closed_once = True
            logger.info(
                "the process holds %d MiB and has pages of %d MiB coming, over the %d MiB share "
                "of the memory it may use (%s): reading one page at a time while it does",
                held >> 20,
                coming >> 20,
                self.threshold >> 20,
                MEMORY_LIMIT_ENV,
            )
        return True
