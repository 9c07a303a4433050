"""The worker processes that decode pages (JSON parsing, flattening into Arrow) for a sync:
those the command forked as it started (forked.py), else spawned here.

This module must not import dlt: a spawned worker imports the module of every function it is
handed (its initializer, its tasks), and importing dlt would cost each worker CPU time and
memory, taken from the run it is there to speed up.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager

from tfy_audit._service import forked
from tfy_audit._service.forked import (
    ForkedDecoders,
    give_way_to_the_command,
    ignore_stop_signals,
    stop_signals_blocked,
)

logger = logging.getLogger(__name__)


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


class Decoders:
    """Worker processes for the CPU-bound page decoding; spawned, so no thread state is
    copied, and started at once, so their start overlaps with planning."""

    def __init__(self, workers: int) -> None:
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        # The workers are spawned here (one per submit), with SIGINT and SIGTERM blocked
        # (forked.stop_signals_blocked says why); they ignore both from then on.
        with stop_signals_blocked():
            for _ in range(workers):
                self.pool.submit(_warm_up)
        self._closer: threading.Thread | None = None

    def close_soon(self) -> None:
        """Let the workers go now, in the background (they take a moment to exit), so their
        exit overlaps the load; `close()` then waits for it."""
        if self._closer is None:
            self._closer = threading.Thread(
                target=self.pool.shutdown, name="tfy-decoders-close", daemon=True
            )
            self._closer.start()

    def close(self) -> None:
        if self._closer is None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        else:
            self._closer.join()


@contextmanager
def decoder_pool(workers: int) -> Iterator[Decoders | None]:
    if workers < 1:
        yield None
        return
    decoders = Decoders(workers)
    try:
        yield decoders
    finally:
        decoders.close()


class DecodersOnDemand:
    """Decoder processes used only if a run turns out large: they pay for themselves on a
    backfill, not on a small scheduled run. Those the command forked as it started are used
    if there are any; else they are spawned as soon as the run's size is known and warm up
    during planning. They close with `stack`."""

    def __init__(self, stack: ExitStack, workers: int, *, from_events: int) -> None:
        self._stack = stack
        self._workers = workers
        self._from_events = from_events
        self._decoders: Decoders | ForkedDecoders | None = None
        # decoders the command forked at its start (forked.py), if it did: used if the run is
        # large, else let go with the rest
        self._forked = forked.take() if workers > 0 else None
        if self._forked is not None:
            stack.callback(self._close_forked, self._forked)

    def start_if_large(self, events: int) -> None:
        if events >= self._from_events and self._decoders is None:
            if self._forked is not None and not self._forked.all_alive():
                logger.debug("a forked decoder has ended; spawning the decoders instead")
                self._forked.close()
                self._forked = None
            if self._forked is not None:
                self._decoders = self._forked
                logger.debug("decoding pages in %d forked process(es)", len(self._forked.pids))
            else:
                self._decoders = self._stack.enter_context(decoder_pool(self._workers))

    @staticmethod
    def _close_forked(decoders: ForkedDecoders) -> None:
        decoders.close()
        if decoders.pages_done:
            logger.debug("the forked decoders decoded %d page(s)", decoders.pages_done)

    def planned(self) -> None:
        """The run is planned: forked decoders it turned out not to need go now, before the
        rest of the run (a scheduled run's load) adds to the memory they hold."""
        if self._decoders is None and self._forked is not None:
            self._forked.close()

    @property
    def pool(self) -> Executor | None:
        return self._decoders.pool if self._decoders is not None else None

    def close_soon(self) -> None:
        if self._decoders is not None:
            self._decoders.close_soon()


def _init_worker(parent_pid: int) -> None:
    ignore_stop_signals()
    give_way_to_the_command()
    _exit_with_parent(parent_pid)
    from tfy_audit._service import pages  # pyarrow, orjson, rows: what decoding needs

    pages.release_in_worker()

    # What is alive now (the modules) lives as long as the worker: out of the collector's sight,
    # it is not walked again by every full collection a page's thousands of objects set off.
    gc.freeze()


def _exit_with_parent(parent_pid: int) -> None:
    """A worker outlives a parent killed with SIGKILL; make it notice and go."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="tfy-parent-watch", daemon=True).start()


def _warm_up() -> None:
    """A task that makes the pool start a worker now, not at the first page."""
