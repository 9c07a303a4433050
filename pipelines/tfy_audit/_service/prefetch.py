"""Reading ahead: an iterator run in a background thread, a bounded number of bytes ahead.

`tfy-audit sync` reads each chunk's pages this way, so reading goes on while dlt writes what it
was handed, and starts reading the first chunk while dlt prepares its extract. Only reading
runs ahead: what is loaded, and when the state advances, is decided by the consumer as before.

Until its consumer starts, a read-ahead may also spill to disk (`spill_bytes`): the next
chunk is read while the one before is loaded, which takes one core, and what is read then
waits in an unlinked temporary file instead of in memory (the run's memory peaks during
loads). A kill leaves nothing behind: the file has no name.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Spilled:
    """Where one spilled item's pickle lies in the spill file."""

    offset: int
    length: int


class _SpillFile:
    """Pickles appended to an unlinked temporary file, read back by position (the producer
    writes while the consumer reads, each at its own offset, so neither moves the other's)."""

    def __init__(self, directory: str | None) -> None:
        # no name from the start, so nothing is left behind however the run ends; closed by
        # close()
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115
        self._end = 0

    def put(self, item: object) -> _Spilled:
        data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        view, offset = memoryview(data), self._end
        while view:
            written = os.pwrite(self._file.fileno(), view, offset + len(data) - len(view))
            view = view[written:]
        self._end += len(data)
        return _Spilled(offset, len(data))

    def take(self, spilled: _Spilled) -> object:
        data = os.pread(self._file.fileno(), spilled.length, spilled.offset)
        if len(data) != spilled.length:
            raise OSError(f"the read-ahead's spill file ended early at {spilled.offset}")
        return pickle.loads(data)

    def close(self) -> None:
        self._file.close()


class Prefetch(Generic[T]):
    """Iterates `produce()` in a thread of its own, holding at most `max_bytes` of its items
    in memory (as `size_of` counts them) until they are taken; iterating the `Prefetch` takes
    them, and raises what `produce()` raised, once the items before the failure are taken.

    `spill_bytes`: until the first item is taken, items past `max_bytes` go to a temporary
    file in `spill_dir` (the system's default when None), up to this many bytes of items;
    after, the memory bound alone holds the producer back. A failure to spill (a full disk)
    is logged and stops spilling: the producer then waits for room in memory.

    `close()` stops the producer and waits for it; call it whether or not the items were all
    taken (a `with` block does).
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[T]],
        *,
        size_of: Callable[[T], int],
        max_bytes: int,
        spill_bytes: int = 0,
        spill_dir: str | None = None,
        name: str = "tfy-prefetch",
    ) -> None:
        self._produce = produce
        self._size_of = size_of
        self._max_bytes = max_bytes
        self._spill_bytes = spill_bytes
        self._spill_dir = spill_dir
        self._spill: _SpillFile | None = None
        self._spilled = 0  # bytes of items spilled, by `size_of`; never given back
        self._spill_failed = False
        # items in order, each held in memory or (`_Spilled`) where it lies in the spill file
        self._items: deque[tuple[T | _Spilled, int]] = deque()
        self._held = 0  # bytes of the items in memory
        self._done = False
        self._closed = False
        self._error: BaseException | None = None
        self._taken = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        try:
            items = self._produce()
            try:
                for item in items:
                    if not self._hand_on(item, self._size_of(item)):
                        return
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()  # a generator's cleanup (its thread pool) runs in this thread
        except BaseException as exc:  # handed to the consumer, raised where it iterates
            self._error = exc
            if self._closed:  # no consumer is left to raise it to
                logger.debug("reading ahead failed after it was stopped", exc_info=True)
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _hand_on(self, item: T, size: int) -> bool:
        """Queue `item` in memory, or spilled; False once closed."""
        while True:
            with self._cond:
                # One item is always let through, so an item larger than the bound cannot stall
                # the producer forever.
                while (
                    self._held and self._held + size > self._max_bytes and not self._may_spill(size)
                ):
                    if self._closed:
                        return False
                    self._cond.wait()
                if self._closed:
                    return False
                if not self._held or self._held + size <= self._max_bytes:
                    self._items.append((item, size))
                    self._held += size
                    self._cond.notify_all()
                    return True
                spill = self._spill_file()
            # pickled and written outside the lock, so the consumer is not held up meanwhile;
            # the order holds, as this thread alone appends
            spilled = None
            if spill is not None:
                try:
                    spilled = spill.put(item)
                except Exception as exc:  # a full disk, above all: reading goes on in memory
                    logger.info("reading ahead stops spilling to disk: %s", exc)
            with self._cond:
                if self._closed:
                    return False
                if spilled is not None:
                    self._items.append((spilled, 0))
                    self._spilled += size
                    self._cond.notify_all()
                    return True
                self._spill_failed = True  # no more spilling: the item waits for memory

    def _may_spill(self, size: int) -> bool:
        return (
            not self._taken
            and not self._spill_failed
            and self._spill_bytes > 0
            and self._spilled + size <= self._spill_bytes
        )

    def _spill_file(self) -> _SpillFile | None:
        if self._spill is None:
            try:
                self._spill = _SpillFile(self._spill_dir)
            except OSError as exc:
                logger.info("reading ahead cannot spill to disk: %s", exc)
                return None
        return self._spill

    def __iter__(self) -> Iterator[T]:
        if self._taken:
            raise RuntimeError("a Prefetch is iterated once")
        with self._cond:
            self._taken = True  # no more spilling
        while True:
            with self._cond:
                while not self._items and not self._done:
                    self._cond.wait()
                if self._items:
                    item, size = self._items.popleft()
                    self._held -= size
                    self._cond.notify_all()
                    spill = self._spill
                elif self._error is not None:
                    raise self._error
                elif self._closed:
                    # Stopped before the end: the items stop short, which must never pass for
                    # the whole of them (a chunk read in part must not advance the state).
                    raise RuntimeError("reading ahead was stopped before its end")
                else:
                    return
            yield self._unspill(item, spill) if isinstance(item, _Spilled) else item

    def _unspill(self, spilled: _Spilled, spill: _SpillFile | None) -> T:
        assert spill is not None  # an item is spilled only once the file exists
        try:
            return cast(T, spill.take(spilled))
        except (OSError, ValueError):
            if self._closed:  # closed meanwhile, from another thread: no short end passes
                raise RuntimeError("reading ahead was stopped before its end") from None
            raise

    def close(self) -> None:
        """Stop reading ahead, wait for the producer to finish its cleanup, and remove what
        was spilled."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._held = 0
            self._cond.notify_all()
        self._thread.join()
        if self._spill is not None:
            self._spill.close()
