"""Reading ahead: an iterator run in a background thread, a bounded number of bytes ahead.

`tfy-audit sync` reads each chunk's pages this way, so reading goes on while dlt writes what it
was handed, and starts reading the first chunk while dlt prepares its extract. Only reading
runs ahead: what is loaded, and when the state advances, is decided by the consumer as before.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Prefetch(Generic[T]):
    """Iterates `produce()` in a thread of its own, holding at most `max_bytes` of its items
    (as `size_of` counts them) until they are taken; iterating the `Prefetch` takes them, and
    raises what `produce()` raised, once the items before the failure are taken.

    `close()` stops the producer and waits for it; call it whether or not the items were all
    taken (a `with` block does).
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[T]],
        *,
        size_of: Callable[[T], int],
        max_bytes: int,
        name: str = "tfy-prefetch",
    ) -> None:
        self._produce = produce
        self._size_of = size_of
        self._max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._held = 0
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
                    size = self._size_of(item)
                    with self._cond:
                        # One item is always let through, so an item larger than the bound
                        # cannot stall the producer forever.
                        while self._held and self._held + size > self._max_bytes:
                            if self._closed:
                                return
                            self._cond.wait()
                        if self._closed:
                            return
                        self._items.append((item, size))
                        self._held += size
                        self._cond.notify_all()
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

    def __iter__(self) -> Iterator[T]:
        if self._taken:
            raise RuntimeError("a Prefetch is iterated once")
        self._taken = True
        while True:
            with self._cond:
                while not self._items and not self._done:
                    self._cond.wait()
                if self._items:
                    item, size = self._items.popleft()
                    self._held -= size
                    self._cond.notify_all()
                elif self._error is not None:
                    raise self._error
                elif self._closed:
                    # Stopped before the end: the items stop short, which must never pass for
                    # the whole of them (a chunk read in part must not advance the state).
                    raise RuntimeError("reading ahead was stopped before its end")
                else:
                    return
            yield item

    def close(self) -> None:
        """Stop reading ahead and wait for the producer to finish its cleanup."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._held = 0
            self._cond.notify_all()
        self._thread.join()
