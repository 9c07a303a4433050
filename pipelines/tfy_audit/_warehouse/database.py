"""Keeping a DuckDB destination's database open across the steps of a sync.

dlt connects to the DuckDB file for each step (reading the state back, each query, the load,
the views) and disconnects after it; with no connection left, DuckDB checkpoints and closes
the database, and the next step opens it again. While one connection is held, the steps'
own connections join the open database instead, which saves reopening it at every step (most
of a no-op sync's time; `make bench` times one). An open database stays locked against other
processes, so it is let go while dlt extracts a chunk of LET_GO_FROM_EVENTS or more
(loader.py), mostly reading, and taken back for its normalize and load.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlt

from tfy_audit._core.errors import explain_database_in_use
from tfy_audit._warehouse.adapter import warehouse_of

logger = logging.getLogger(__name__)

# How long taking the database back after a read waits for another process to close it.
RETAKE_WAIT_SECONDS = 60.0


class HeldDatabase:
    """A connection held to the destination where its adapter says so (a DuckDB file); does
    nothing for other destinations."""

    def __init__(self, pipeline: dlt.Pipeline) -> None:
        self._pipeline = pipeline
        self._wanted = warehouse_of(pipeline).holds_connection
        self._client: Any = None

    @property
    def held(self) -> bool:
        return self._client is not None

    def hold(self, wait: float = 0.0) -> None:
        """Open the database; another process that has it open (a reader as well: a DuckDB
        shell, a notebook, a BI tool) is waited for up to `wait` seconds."""
        if wait > 0:
            self._take(wait)
        elif self._wanted and self._client is None:
            client = self._pipeline.sql_client()
            client.open_connection()
            self._client = client

    def release(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close_connection()

    @contextmanager
    def let_go(self) -> Iterator[None]:
        """Not held within the block; held again after it, unless it raised. Another process
        that opened the file meanwhile is waited for, up to RETAKE_WAIT_SECONDS, so that the
        chunk just read is loaded now rather than left to the next run."""
        was_held = self.held
        self.release()
        yield
        if was_held:
            self._retake()

    def _retake(self) -> None:
        self._take(RETAKE_WAIT_SECONDS)

    def _take(self, wait: float) -> None:
        """Hold the database, polling with a growing delay while another process has the file
        open, for up to `wait` seconds; any other failure is raised at once."""
        deadline = time.monotonic() + wait
        delay = 0.05
        warned = False
        while True:
            try:
                self.hold()
                return
            except Exception as exc:
                why = explain_database_in_use(exc)
                if why is None or time.monotonic() + delay > deadline:
                    raise
                if not warned:
                    logger.warning("waiting up to %.0fs for the database: %s", wait, why)
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 2.0)


@contextmanager
def held_database(pipeline: dlt.Pipeline, *, wait: float = 0.0) -> Iterator[HeldDatabase]:
    database = HeldDatabase(pipeline)
    database.hold(wait)
    try:
        yield database
    except BaseException:
        try:
            database.release()
        except Exception:  # the error that brought us here is the one to report
            logger.warning("closing the database after a failure failed too", exc_info=True)
        raise
    database.release()
