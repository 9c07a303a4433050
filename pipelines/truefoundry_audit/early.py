"""Planning a run while dlt is being imported.

`tfy-audit sync` spends about half a second importing dlt before it can read the sync state,
which says where the run starts. When the range can be known without the state (an explicit
`--start`, or a first run into a DuckDB file that does not exist yet), the run's windows are
planned meanwhile, in a thread, and the decoder processes started once the plan shows they
will pay for themselves. The sync takes that plan once it has read the state, if its range is
the one planned, and plans again otherwise; so a wrong guess costs a few count requests, never
a wrong plan. A plan made a moment earlier is as good as one made now: reading checks every
window against the service's count at the time, whatever the plan said.

No dlt here, nor anything that imports it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .client import AuditLogClient
from .decoders import Decoders
from .errors import UsageError
from .fetch import plan_run
from .options import SyncOptions
from .state import RunRange, resolve_range
from .windows import PlannedWindow

logger = logging.getLogger(__name__)


@dataclass
class EarlyStart:
    """What the sync takes over: the client that planned (its request counts included), the
    windows, and the decoder processes if they were started."""

    client: AuditLogClient
    windows: list[PlannedWindow]
    decoders: Decoders | None


def guess_range(options: SyncOptions, now: datetime) -> RunRange | None:
    """The run's range if it does not depend on the sync state, else None."""
    if options.start is None:
        target = options.target
        first_run = target.destination == "duckdb" and not Path(target.db).expanduser().exists()
        if not first_run:
            return None
    try:
        return resolve_range(
            {}, start=options.start, end=options.end, lookback=options.lookback, now=now
        )
    except UsageError:
        return None  # the sync itself says what is wrong


class EarlyPlan:
    """Plans `run` in a thread of its own; `take()` hands the plan over, `close()` lets go of
    whatever was not handed over (call it in every case)."""

    def __init__(self, options: SyncOptions, host: str, api_key: str, run: RunRange) -> None:
        self.host = host
        self.api_key = api_key
        self.run = run
        self._options = options
        self._lock = threading.Lock()
        self._closed = False
        # set by close(): a retry waiting out its backoff wakes up, finds the client closed, and
        # its thread ends instead of holding up the program's exit
        self._stop = threading.Event()
        self._client: AuditLogClient | None = None
        self._decoders: Decoders | None = None
        self._windows: list[PlannedWindow] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._plan, name="tfy-early-plan", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls, options: SyncOptions, now: datetime) -> EarlyPlan | None:
        """An early plan if the range, host and API key are known without dlt, else None."""
        host = options.host or os.environ.get("TFY_HOST")
        api_key = options.api_key or os.environ.get("TFY_API_KEY")
        if not host or not api_key or options.transport is not None:
            return None
        run = guess_range(options, now)
        if run is None:
            return None
        return cls(options, host, api_key, run)

    def _plan(self) -> None:
        options = self._options
        try:
            with self._lock:
                if self._closed:
                    return
                self._client = AuditLogClient(
                    self.host,
                    self.api_key,
                    timeout=options.timeout,
                    retry=options.retry,
                    max_connections=options.concurrency,
                    sleep=self._wait,
                )
                client = self._client
            self._windows = plan_run(
                client,
                options.filters,
                self.run,
                max_offset=options.max_offset,
                concurrency=options.concurrency,
                on_total=self._start_workers,
            )
        except BaseException as exc:  # handed to the sync, which raises it if it takes the plan
            self._error = exc

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _start_workers(self, total: int) -> None:
        options = self._options
        if options.workers < 1 or total < options.workers_from_events:
            return
        with self._lock:
            if not self._closed and self._decoders is None:
                self._decoders = Decoders(options.workers)

    def take(self, parts: list[RunRange], host: str, api_key: str) -> EarlyStart | None:
        """The plan, if it is the plan of this run: one part, the range planned, the same
        service and key. Else None, and the plan is let go. Raises what planning raised."""
        same = (
            len(parts) == 1
            and (parts[0].start, parts[0].end) == (self.run.start, self.run.end)
            and (host, api_key) == (self.host, self.api_key)
        )
        if not same:
            logger.debug("the run's range is not the one planned early; planning again")
            self.close()
            return None
        self._thread.join()
        if self._error is not None:
            self.close()
            raise self._error
        with self._lock:
            client, decoders, windows = self._client, self._decoders, self._windows
            self._client, self._decoders, self._closed = None, None, True
        assert client is not None and windows is not None
        return EarlyStart(client, windows, decoders)

    def close(self) -> None:
        """Let go of the client and the decoders unless they were taken. Does not wait for a
        plan still being made: its requests fail once the client is closed."""
        self._stop.set()
        with self._lock:
            self._closed = True
            client, decoders = self._client, self._decoders
            self._client, self._decoders = None, None
        if decoders is not None:
            decoders.close()
        if client is not None:
            client.close()
