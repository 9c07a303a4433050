"""Concurrent, verified reading of planned windows.

Pages of all windows of a chunk are requested concurrently (bounded). Each window is checked
when its last page arrives: it is complete only when the distinct ids read reach the service's
latest `pagination.total` for it. Events inserted while paging can shift an offset-paged result
in any order the service likes, so a short window is read again, and a window that grew past
the depth the service allows is split. Nothing here assumes an order of results.

An event belongs to the one window its createdAt falls in, so only the reads of that window
(and of the parts it was split into) repeat it: the ids yielded are remembered per planned
window and forgotten once it is read, so memory holds the ids of the windows being read, not of
every event read. An id the service serves in two windows (its createdAt changed between their
reads, or two events share it) is yielded by both; the extract notices it (extract.py) and the
sync re-merges those days reading with `exact=True`, which remembers every id of the read.

A service that serves one id twice within a window and counts both copies would keep that
window short of its total forever, and the mark before it. When a re-read serves the same ids
twice again and those copies account exactly for the total, the window is complete: each such
id is loaded once and recorded (`repeated_id`, `accepted`) in `event_anomalies`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime

from tfy_audit._core.errors import OffsetRefusedError, ResponseTooLargeError
from tfy_audit._core.memory import MemoryGate, release_free_memory
from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind
from tfy_audit._service.budget import ByteBudget, Hold
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.pages import DecodedPage, decode_page, decode_released
from tfy_audit._service.rows import EventBatch
from tfy_audit._service.windows import PlannedWindow, Window

logger = logging.getLogger(__name__)

# A window still short of its total after this many full reads is reported, not retried forever.
MAX_READS = 4

# Decoding a page builds its rows from Python objects several times the body's size: bodies
# being decoded at once hold this many bytes together at most (budget.py), so pages of large
# events (a page of ordinary events is about 1 MB) are decoded one at a time, and the peak
# does not grow with the number of connections.
LARGE_BODY_BYTES = 4 * 1024 * 1024

# Pages being read, or decoded and not yet handed on, hold this many bytes at most, and the one
# page asked for first beyond it (budget.py): a body's bytes count as they arrive, a decoded
# page's rows until the reader takes it. Fewer pages are also asked for at once once pages are
# known to be large (each counts as the largest page decoded so far), so that connections do not
# sit waiting on the budget, while pages of ordinary events keep every connection busy.
IN_FLIGHT_BYTES = 32 * 1024 * 1024

# A page of several events is decoded from a body of at most this many bytes: one past it is
# given up as it arrives and its events asked for in two halves, as a page over the body cap
# is. Decoding builds Python objects and Arrow columns many times the body's size (the most for
# text that is not ASCII), so this, not the body cap, bounds what decoding one page adds to the
# peak; only a page of one event (up to MAX_EVENT_BYTES) is larger. Pages are then asked for
# with as many events as the last page answered says fit in PAGE_FILL of it (never more than
# the page size; fewer after a page was given up), so a read of large events does not give up
# every page first, and one of ordinary events (about 1 MB a page) is asked for as before.
PAGE_BYTES = 8 * 1024 * 1024
PAGE_FILL = 0.75


@dataclass
class WindowReport:
    """What reading one window found; one row of `sync_windows`."""

    window: Window
    planned_count: int
    service_total: int = 0
    rows: int = 0
    pages: int = 0
    reads: int = 1
    complete: bool = True


class _Family:
    """A planned window and the parts it is split into: the ids their pages have yielded.

    Referenced only by the states of its windows, so it is freed with the last of them."""

    __slots__ = ("__weakref__", "yielded")

    def __init__(self) -> None:
        self.yielded: set[str] = set()


@dataclass
class _WindowState:
    window: Window
    planned_count: int
    max_events: int
    page_size: int
    family: _Family
    report: WindowReport = field(init=False)
    ids: set[str] = field(default_factory=set)
    # events too large for any response, set aside and recorded: by id, else by offset
    set_aside: set[str] = field(default_factory=set)
    total: int = 0
    requested_until: int = 0  # offsets below this have been requested in the current read
    outstanding: int = 0  # requested or queued, not yet answered
    refused: bool = False
    # the current read: ids served, how many entries, and the ids served more than once; the
    # repeated ids of the read before, which a read must match to confirm them
    read_ids: set[str] = field(default_factory=set)
    read_served: int = 0
    read_repeated: set[str] = field(default_factory=set)
    earlier_repeated: set[str] | None = None

    def __post_init__(self) -> None:
        self.report = WindowReport(self.window, self.planned_count)

    def offsets_for(self, total: int) -> list[int]:
        """Offsets not yet requested in this read, for a window holding `total` events."""
        wanted = min(total, self.max_events)
        offsets = list(range(self.requested_until, wanted, self.page_size))
        if offsets:
            self.requested_until = offsets[-1] + self.page_size
        return offsets

    def note_read(self, ids: list[str]) -> None:
        """A page of the current read arrived with these ids (one per event served)."""
        self.read_served += len(ids)
        for event_id in ids:
            if event_id in self.read_ids:
                self.read_repeated.add(event_id)
            else:
                self.read_ids.add(event_id)

    def confirmed_repeats(self) -> set[str]:
        """Ids the service served twice in this read and in the read before, which account
        for exactly the events its total counts beyond the distinct ids read: the service
        counts one event twice, and the window is complete. Empty otherwise."""
        repeated = self.read_repeated
        if not repeated or repeated != self.earlier_repeated:
            return set()
        copies = self.read_served - len(self.read_ids)
        if len(self.read_ids) != len(self.ids) or len(self.ids) + copies != self.total:
            return set()
        return set(repeated)

    def restart(self) -> list[int]:
        self.report.reads += 1
        self.requested_until = 0
        self.earlier_repeated = self.read_repeated
        self.read_ids, self.read_served, self.read_repeated = set(), 0, set()
        return self.offsets_for(max(self.total, 1))


@dataclass
class PageOfWindow:
    window: Window
    page: DecodedPage


# An `Anomaly` item records an event the fetcher could not hand over as rows (anomalies.py).
Item = PageOfWindow | WindowReport | Anomaly


class WindowFetcher:
    """Reads windows through a shared executor; yields pages as they arrive, then a report per
    window once it is verified complete (or given up on)."""

    def __init__(
        self,
        client: AuditLogClient,
        filters: AuditLogFilters,
        executor: Executor,
        *,
        page_size: int,
        max_offset: int,
        max_in_flight: int,
        decoder: Executor | None = None,
        exact: bool = False,
        decode: Callable[[bytes, datetime, datetime], DecodedPage] | None = None,
        memory: MemoryGate | None = None,
    ) -> None:
        """`decoder`: where pages are parsed and normalized (a process pool), else in the
        fetching thread. `exact`: no id is yielded twice in the whole read (for small reads).
        `decode`: `decode_page` (None), or `decode_ids` for pages of ids only (verify --ids).
        `memory`: the gate that holds reading to one page at a time while the process holds
        too much (memory.py); None asks the process's own."""
        self._memory = memory if memory is not None else MemoryGate.for_this_process()
        self.decoder = decoder
        self._decode = decode
        self._one_family = _Family() if exact else None
        self.client = client
        self.filters = filters
        self.executor = executor
        self.page_size = page_size
        self.max_offset = max_offset
        self.max_in_flight = max(1, max_in_flight)
        self._decoding = ByteBudget(LARGE_BODY_BYTES)  # bodies being decoded
        self._in_flight = ByteBudget(IN_FLIGHT_BYTES)  # pages read, not yet handed on
        self._largest_page = 0  # bytes of rows of the largest page decoded so far
        # the most events a page is asked for now (PAGE_BYTES): `page_size` until pages are
        # known to be large
        self._page_limit = page_size
        # Events whose createdAt did not parse are kept by every window whose query returns
        # them (they cannot be placed in one), so their ids are remembered for the whole read.
        self.undated = set() if self._one_family is None else self._one_family.yielded

    @property
    def peak_bytes(self) -> int:
        """The most bytes pages held at once, by the budget's count (IN_FLIGHT_BYTES)."""
        return self._in_flight.peak

    def fetch(self, windows: Sequence[PlannedWindow]) -> Iterator[Item]:
        try:
            yield from self._fetch(windows)
        finally:
            # threads still reading pages no one will take stop at their next piece
            self._in_flight.close()

    def _fetch(self, windows: Sequence[PlannedWindow]) -> Iterator[Item]:
        # (window, offset, limit): a limit of None asks for a whole page
        queue: deque[tuple[_WindowState, int, int | None]] = deque()

        def enqueue(items: Iterable[tuple[_WindowState, int]], limit: int | None = None) -> None:
            for state, offset in items:
                state.outstanding += 1
                queue.append((state, offset, limit))

        for planned in windows:
            family = self._one_family if self._one_family is not None else _Family()
            state = self._state(planned.window, planned.count, family)
            enqueue((state, o) for o in state.offsets_for(max(planned.count, 1)))
        in_flight: dict[Future[DecodedPage], tuple[_WindowState, int, int, Hold | None]] = {}

        while queue or in_flight:
            while queue and len(in_flight) < self._pages_in_flight():
                if in_flight and self._memory.over(self._coming()):
                    break  # one page at a time while the process holds too much (memory.py)
                state, offset, asked = queue.popleft()
                wanted = min(asked or self.page_size, max(self.max_offset - offset, 0))
                if wanted > self._page_limit:
                    # pages this large passed PAGE_BYTES: the rest of these offsets come next
                    # (none past the depth the service allows, which would split the window)
                    state.outstanding += 1
                    queue.appendleft((state, offset + self._page_limit, wanted - self._page_limit))
                    wanted = self._page_limit
                # never ask past the depth the service allows
                limit = min(wanted, self.max_offset - offset)
                if offset >= self.max_offset:
                    # queued before the service's lower limit was learnt: refused without asking
                    skipped: Future[DecodedPage] = Future()
                    skipped.set_exception(OffsetRefusedError(f"offset {offset} is past the limit"))
                    in_flight[skipped] = (state, offset, limit, None)
                    continue
                start, end = state.window.query_bounds()
                hold = self._in_flight.hold()
                future = self.executor.submit(
                    self.client.list_page,
                    self.filters,
                    start,
                    end,
                    offset=offset,
                    limit=limit,
                    decode=self._decode_for(state.window, hold),
                    hold=hold,
                    page_bytes=PAGE_BYTES,
                )
                in_flight[future] = (state, offset, limit, hold)
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                state, offset, limit, held = in_flight.pop(future)
                try:
                    yield from self._answered(future, state, offset, limit, enqueue)
                finally:
                    if held is not None:
                        held.release()  # handed on, or dropped
            if self._memory.over(self._coming()):
                # what the pages handed on freed, given back before the next is asked for
                release_free_memory()

    def _answered(
        self,
        future: Future[DecodedPage],
        state: _WindowState,
        offset: int,
        limit: int,
        enqueue: Callable[..., None],
    ) -> Iterator[Item]:
        """What the answer to one request yields, and what it asks for next."""
        state.outstanding -= 1
        try:
            page = future.result()
        except ResponseTooLargeError as exc:
            if not exc.holds_event:
                raise  # no page of events: a wrong host or a hostile one
            if limit > 1:
                # the same offsets again, in two smaller pages, and none larger until a page
                # answered says how many fit
                half = limit // 2
                if half < self._page_limit:
                    self._page_limit = half
                    logger.info(
                        "%s: a page of %d events is larger than %g MB; asking for %d a page",
                        state.window,
                        limit,
                        exc.cap / 2**20,
                        half,
                    )
                enqueue([(state, offset)], half)
                enqueue([(state, offset + half)], limit - half)
            else:
                yield self._set_aside(state, offset, exc)
        except OffsetRefusedError as exc:
            logger.info("%s: %s; splitting the window", state.window, exc)
            state.refused = True
            # The service's depth limit is lower than configured: learn it.
            self.max_offset = max(self.page_size, min(self.max_offset, offset))
        else:
            if page.batch is not None:
                self._largest_page = max(self._largest_page, batch_size(page.batch))
            self._size_pages_by(page)
            state.report.pages += 1
            # Responses of concurrent pages arrive in any order: the largest total is
            # the latest (a closed window only grows).
            state.total = max(state.total, page.total)
            state.ids.update(page.ids)
            state.note_read(page.ids)
            batch = None if page.batch is None else self._not_yielded(page.batch, state.family)
            if batch is not None:
                yield PageOfWindow(state.window, replace(page, batch=batch))
            elif page.dated_ids is not None:
                yield PageOfWindow(state.window, page)  # ids only: no rows to dedupe
            if page.total > self.max_offset and state.window.can_split():
                # The window grew past what the service lets us page through.
                state.refused = True
            elif not state.refused:
                enqueue((state, o) for o in state.offsets_for(page.total))
        if state.outstanding:
            return
        if state.refused and state.window.can_split():
            enqueue(self._split(state))
            return
        report = self._finish(state)
        if report is None:
            enqueue((state, o) for o in state.restart())
        else:
            yield from self._repeat_records(state)
            yield report

    def _repeat_records(self, state: _WindowState) -> Iterator[Anomaly]:
        """An accepted repeated id's record, once per window read."""
        if state.report.complete and len(state.ids) < state.total:
            for event_id in sorted(state.confirmed_repeats()):
                yield _repeat_anomaly(state, event_id)

    def _size_pages_by(self, page: DecodedPage) -> None:
        """Ask for as many events a page as fit in PAGE_FILL of PAGE_BYTES by this page's size
        per event (at least one, at most the page size)."""
        if not page.ids or not page.body_bytes:
            return
        fit = int(PAGE_BYTES * PAGE_FILL * len(page.ids) / page.body_bytes)
        self._page_limit = max(1, min(self.page_size, fit))

    def _coming(self) -> int:
        """What the pages asked for and not handed on will hold, at most: what they hold now
        (the budget's count) and, for the next one, as much as the largest page decoded."""
        return self._in_flight.held + self._largest_page

    def _pages_in_flight(self) -> int:
        """How many pages may be requested at once: `max_in_flight`, fewer once pages are
        known to be large (IN_FLIGHT_BYTES), never fewer than one."""
        by_bytes = IN_FLIGHT_BYTES // max(self._largest_page, 1)
        return max(1, min(self.max_in_flight, by_bytes))

    def _set_aside(self, state: _WindowState, offset: int, exc: ResponseTooLargeError) -> Anomaly:
        """The record of an event no response may hold, at `offset` of `state`'s window. It
        counts as read: the window completes and the high-water mark moves past it, and
        `event_anomalies` holds it (by id when its first bytes give one)."""
        logger.warning(
            "%s: the event at offset %d (%s) is larger than %g MB by itself; set aside and "
            "recorded in event_anomalies (raise --max-response-mb to load it)",
            state.window,
            offset,
            exc.event_id or "id unknown",
            exc.cap / 2**20,
        )
        state.set_aside.add(exc.event_id if exc.event_id is not None else f"@{offset}")
        return Anomaly(
            AnomalyKind.EVENT_TOO_LARGE,
            AnomalyAction.NOT_LOADED,
            exc.event_id,
            "$",
            f"one event's response is larger than {exc.cap / 2**20:g} MB decompressed "
            "(--max-response-mb)",
            window_start=state.window.start,
            window_end=state.window.end,
            page_offset=offset,
        )

    def _decode_for(self, window: Window, hold: Hold) -> Callable[[bytes], DecodedPage]:
        pool, decode_with = self.decoder, self._decode or decode_page
        start, end = window.start, window.end

        def decode(body: bytes) -> DecodedPage:
            # a large body is decoded here, one at a time: sent to a worker it would be copied
            # there and its rows copied back, and the worker would keep its decoding's peak
            if pool is None or len(body) >= LARGE_BODY_BYTES:
                return decode_released(decode_with, body, start, end, LARGE_BODY_BYTES)
            task = pool.submit(decode_released, decode_with, body, start, end, LARGE_BODY_BYTES)
            return task.result()

        def decode_bounded(body: bytes) -> DecodedPage:
            decoding = self._decoding.hold()
            try:
                decoding.grow(len(body))  # waits while other bodies are being decoded
                page = decode(body)
            finally:
                decoding.release()
            # the body is dropped once this returns: what the page holds now is its rows
            hold.set(0 if page.batch is None else batch_size(page.batch))
            return replace(page, body_bytes=len(body))

        return decode_bounded

    def _state(self, window: Window, count: int, family: _Family) -> _WindowState:
        return _WindowState(window, count, self.max_offset, self.page_size, family)

    def _not_yielded(self, batch: EventBatch, family: _Family) -> EventBatch | None:
        """The batch without the events its window family (or, undated, the read) yielded
        already: a window read again, or a page overlapping another as results moved."""
        audit_logs, ids = batch.audit_logs, batch.ids
        created = audit_logs.column("created_at")
        if created.null_count == 0:
            if family.yielded.isdisjoint(ids):
                family.yielded.update(ids)
                return batch
            dated = [True] * len(ids)
        else:
            dated = created.is_valid().to_pylist()
        repeated: set[str] = set()
        for event_id, has_date in zip(ids, dated, strict=True):
            held = family.yielded if has_date else self.undated
            if event_id in held:
                repeated.add(event_id)
            else:
                held.add(event_id)
        if not repeated:
            return batch
        if len(repeated) == len(ids):
            return None
        return batch.without(repeated)

    def _split(self, state: _WindowState) -> list[tuple[_WindowState, int]]:
        parts = max(2, math.ceil(max(state.total, 1) / (self.max_offset * 0.6)))
        items: list[tuple[_WindowState, int]] = []
        for window in state.window.split(parts):
            child = self._state(window, 0, state.family)
            # Unknown count: read the first page, whose total says how many more to read.
            items.extend((child, o) for o in child.offsets_for(1))
        return items

    def _finish(self, state: _WindowState) -> WindowReport | None:
        """The report of a window whose read is over, or None if it must be read again."""
        # an event set aside (too large to read) is accounted for: recorded, not missing
        seen = len(state.ids | state.set_aside)
        repeats = state.confirmed_repeats() if seen < state.total else set()
        if repeats or seen >= state.total or state.refused or state.report.reads >= MAX_READS:
            report = state.report
            report.service_total = state.total
            report.rows = len(state.ids)
            report.complete = seen >= state.total or bool(repeats)
            if repeats:
                logger.info(
                    "%s: the service served %d id(s) twice in two reads and counts each copy "
                    "(%d distinct events of %d counted): the window is complete",
                    state.window,
                    len(repeats),
                    seen,
                    state.total,
                )
            elif not report.complete:
                logger.error(
                    "%s: read %d distinct events of the %d the service counts, in %d read(s); "
                    "the high-water mark stays before this window, so the next run reads it "
                    "again",
                    state.window,
                    seen,
                    state.total,
                    report.reads,
                )
            return report
        logger.info(
            "%s: %d of %d events after read %d (%s); reading again",
            state.window,
            seen,
            state.total,
            state.report.reads,
            f"{len(state.read_repeated)} id(s) served twice"
            if state.read_repeated
            else "results moved while paging",
        )
        return None


def _repeat_anomaly(state: _WindowState, event_id: str) -> Anomaly:
    return Anomaly(
        AnomalyKind.REPEATED_ID,
        AnomalyAction.ACCEPTED,
        event_id,
        "$.id",
        detail=(
            "served twice in one read of its window, again in a second read, and counted "
            "twice by the service; loaded once"
        ),
        window_start=state.window.start,
        window_end=state.window.end,
    )


def read_windows(
    client: AuditLogClient,
    filters: AuditLogFilters,
    windows: Sequence[PlannedWindow],
    *,
    page_size: int,
    concurrency: int,
    max_offset: int,
    decoder: Executor | None = None,
    exact: bool = False,
    decode: Callable[[bytes, datetime, datetime], DecodedPage] | None = None,
) -> Iterator[Item]:
    """Pages and window reports of `windows`, read with `concurrency` connections."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfy-fetch") as pool:
        fetcher = WindowFetcher(
            client,
            filters,
            pool,
            page_size=page_size,
            max_offset=max_offset,
            max_in_flight=concurrency * 2,
            decoder=decoder,
            exact=exact,
            decode=decode,
        )
        yield from fetcher.fetch(windows)


def batch_size(batch: EventBatch) -> int:
    """Bytes of a batch's rows."""
    size: int = batch.audit_logs.get_total_buffer_size()
    return size + int(batch.metadata.get_total_buffer_size())


def item_size(item: Item) -> int:
    """Bytes an item holds, as far as reading ahead is concerned: its rows."""
    if isinstance(item, PageOfWindow) and item.page.batch is not None:
        return batch_size(item.page.batch)
    return 0
