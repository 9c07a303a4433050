"""The window reader yields an event once per window (once per read if exact), and lets go of a
window's ids once it is read."""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
from tfy_audit._core.errors import OffsetRefusedError, ResponseTooLargeError
from tfy_audit._service import fetch
from tfy_audit._service.budget import Hold
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._service.fetch import Item, PageOfWindow, WindowFetcher, WindowReport
from tfy_audit._service.windows import PlannedWindow, Window

from tests.conftest import SerialExecutor

T = TypeVar("T")

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(event_id: str, created: datetime | str) -> dict[str, Any]:
    stamp = created if isinstance(created, str) else _iso(created)
    return {"id": event_id, "createdAt": stamp, "action": "APPLY"}


class FakeService:
    """Answers `list_page` like the endpoint: events of `[start, end]` (both inclusive), in
    the order held, sliced by offset. `on_page` may change the events between pages;
    `undated` are returned by every query, as a service would that placed them where we
    cannot; offsets from `refuse_from` on are refused."""

    def __init__(self, events: list[dict[str, Any]], *, refuse_from: int | None = None) -> None:
        self.events = events
        self.undated: list[dict[str, Any]] = []
        self.refuse_from = refuse_from
        self.on_page: Callable[[FakeService, int], None] | None = None
        self.pages = 0
        self.asked: list[tuple[int, int]] = []  # (offset, limit) of every page asked for
        self.refused: list[tuple[int, int]] = []  # those refused as past `page_bytes`
        self.answered: list[tuple[int, int, int]] = []  # (offset, limit, body bytes)

    def list_page(
        self,
        filters: AuditLogFilters,
        start: datetime,
        end: datetime,
        *,
        offset: int,
        limit: int,
        decode: Callable[[bytes], T],
        hold: Hold | None = None,
        page_bytes: int | None = None,
    ) -> T:
        self.asked.append((offset, limit))
        if self.refuse_from is not None and offset >= self.refuse_from:
            raise OffsetRefusedError(f"offset {offset} is too deep")
        self.pages += 1
        if self.on_page is not None:
            self.on_page(self, offset)
        matching = [
            e for e in self.events if start <= datetime.fromisoformat(e["createdAt"]) <= end
        ] + self.undated
        body = {"data": matching[offset : offset + limit], "pagination": {"total": len(matching)}}
        raw = json.dumps(body).encode()
        if page_bytes is not None and limit > 1 and len(raw) > page_bytes:
            # as the client gives up a page of several events past `page_bytes`
            self.refused.append((offset, limit))
            raise ResponseTooLargeError("too large", holds_event=True, cap=page_bytes)
        self.answered.append((offset, limit, len(raw)))
        if hold is not None:  # as the client counts a body it reads
            hold.reset()
            hold.grow(len(raw))
        return decode(raw)


def read(
    service: FakeService,
    windows: list[Window],
    *,
    page_size: int,
    max_offset: int = 10_000,
    exact: bool = False,
) -> Iterator[Item]:
    fetcher = WindowFetcher(
        service,  # type: ignore[arg-type]
        AuditLogFilters(),
        SerialExecutor(),
        page_size=page_size,
        max_offset=max_offset,
        max_in_flight=1,
        exact=exact,
    )
    planned = [PlannedWindow(w, sum(1 for _ in service.events)) for w in windows]
    return fetcher.fetch(planned)


def yielded_ids(items: list[Item]) -> list[str]:
    ids: list[str] = []
    for item in items:
        if isinstance(item, PageOfWindow):
            assert item.page.batch is not None
            batch = item.page.batch
            ids += batch.audit_logs.column("id").to_pylist()
            # the leaves follow their events
            assert set(batch.metadata.column("audit_log_id").to_pylist()) <= set(ids)
    return ids


def at(ms: int) -> datetime:
    return T0 + timedelta(milliseconds=ms)


def test_a_window_read_again_yields_each_event_once() -> None:
    events = [event(f"e{i:03d}", at(10 * i)) for i in range(30)]
    service = FakeService(events)
    inserted: list[dict[str, Any]] = []

    def insert_at_front(s: FakeService, offset: int) -> None:
        # once, between pages: a late event at the front shifts every later offset by one
        if offset == 10 and not inserted:
            inserted.append(event("late", at(1)))
            s.events.insert(0, inserted[0])

    service.on_page = insert_at_front
    items = list(read(service, [Window(T0, at(1_000))], page_size=10))

    ids = yielded_ids(items)
    assert sorted(ids) == sorted(e["id"] for e in events)  # `events` holds "late" too
    assert len(ids) == len(set(ids)) == 31
    (report,) = [i for i in items if isinstance(i, WindowReport)]
    assert (report.reads, report.rows, report.service_total, report.complete) == (2, 31, 31, True)


def test_the_parts_of_a_split_window_do_not_yield_its_events_again() -> None:
    events = [event(f"e{i:03d}", at(7 * i)) for i in range(40)]
    # the planner thought 40 could be paged; the service refuses past offset 20
    service = FakeService(events, refuse_from=20)
    items = list(read(service, [Window(T0, at(1_000))], page_size=10, max_offset=40))

    ids = yielded_ids(items)
    assert sorted(ids) == sorted(e["id"] for e in events)
    assert len(ids) == len(set(ids)) == 40
    reports = [i for i in items if isinstance(i, WindowReport)]
    assert len(reports) >= 2 and all(r.complete for r in reports)
    assert sum(r.rows for r in reports) == 40


def test_an_undated_event_is_yielded_once_by_all_the_windows_that_return_it() -> None:
    events = [event(f"e{i:03d}", at(10 * i)) for i in range(20)]
    service = FakeService(events)
    service.undated = [event("undated", "not a time")]
    windows = [Window(T0, at(100)), Window(at(100), at(200))]
    items = list(read(service, windows, page_size=50))

    ids = yielded_ids(items)
    assert sorted(ids) == sorted([e["id"] for e in events] + ["undated"])
    assert len(ids) == len(set(ids))


def test_an_id_in_two_windows_is_yielded_by_both_unless_the_read_is_exact() -> None:
    # ids are remembered per window: an id the service serves in two windows (an event that
    # moved, or two sharing an id) comes from both, which the extract notices (test_sync.py);
    # an exact read, which the re-merge of such days uses, remembers every id
    events = [event("a", at(10)), event("b", at(20)), event("a", at(150))]
    windows = [Window(T0, at(100)), Window(at(100), at(200))]
    assert sorted(yielded_ids(list(read(FakeService(events), windows, page_size=50)))) == [
        "a",
        "a",
        "b",
    ]
    exact = read(FakeService(events), windows, page_size=50, exact=True)
    assert sorted(yielded_ids(list(exact))) == ["a", "b"]


def test_an_exact_read_yields_an_id_once_dated_or_not() -> None:
    events = [event("d", at(10))]
    service = FakeService(events)
    service.undated = [event("d", "not a time")]
    windows = [Window(T0, at(100)), Window(at(100), at(200))]
    assert yielded_ids(list(read(service, windows, page_size=50, exact=True))) == ["d"]


def test_the_ids_of_a_window_are_let_go_once_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    families: list[weakref.ref[Any]] = []

    class Tracked(fetch._Family):
        __slots__ = ()

        def __init__(self) -> None:
            super().__init__()
            families.append(weakref.ref(self))

    monkeypatch.setattr(fetch, "_Family", Tracked)
    events = [event(f"e{i:03d}", at(i)) for i in range(300)]
    service = FakeService(events)
    windows = [Window(at(100 * k), at(100 * (k + 1))) for k in range(3)]
    first_items_of: dict[Window, int] = {}
    alive_then: dict[Window, list[bool]] = {}
    for item in read(service, windows, page_size=40):
        if isinstance(item, PageOfWindow) and item.window not in first_items_of:
            first_items_of[item.window] = len(first_items_of)
            alive_then[item.window] = [ref() is not None for ref in families]
    # when the second and third windows start yielding, the ones before are read and freed
    assert alive_then[windows[1]] == [False, True, True]
    assert alive_then[windows[2]] == [False, False, True]


def test_an_id_served_twice_in_two_reads_is_accepted_and_recorded() -> None:
    from tfy_audit._service.anomalies import Anomaly, AnomalyAction, AnomalyKind

    events = [event(f"e{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    events.insert(3, event("e2", T0 + timedelta(seconds=2)))  # served twice, counted twice
    window = Window(T0, T0 + timedelta(minutes=1))
    items = list(read(FakeService(events), [window], page_size=2))
    anomalies = [i for i in items if isinstance(i, Anomaly)]
    (report,) = [i for i in items if isinstance(i, WindowReport)]
    assert anomalies == [
        Anomaly(
            AnomalyKind.REPEATED_ID,
            AnomalyAction.ACCEPTED,
            "e2",
            "$.id",
            detail=anomalies[0].detail,
            window_start=window.start,
            window_end=window.end,
        )
    ]
    assert (report.complete, report.reads, report.rows, report.service_total) == (True, 2, 5, 6)
    # the rows hold each id once
    assert sorted(yielded_ids(items)) == ["e0", "e1", "e2", "e3", "e4"]


def test_a_repeat_that_moves_between_reads_is_not_accepted() -> None:
    from tfy_audit._service.anomalies import Anomaly

    base = [event(f"e{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    window = Window(T0, T0 + timedelta(minutes=1))
    service = FakeService(list(base))
    reads = [0]

    def repeat_another_id_each_read(s: FakeService, offset: int) -> None:
        if offset == 0:
            reads[0] += 1
            twin = base[reads[0] % 5]
            s.events = [*base, twin]

    service.on_page = repeat_another_id_each_read
    items = list(read(service, [window], page_size=10))
    assert [i for i in items if isinstance(i, Anomaly)] == []
    (report,) = [i for i in items if isinstance(i, WindowReport)]
    assert (report.complete, report.reads) == (False, fetch.MAX_READS)


def test_large_bodies_are_decoded_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every body is counted in the fetcher's decoding budget of LARGE_BODY_BYTES while it is
    decoded, so a body that large or more is decoded alone (budget.py), whatever the
    connections; and once decoded, its page counts its rows, not its body, until handed on."""
    events = [event(f"e{i:03d}", at(i)) for i in range(20)]
    events[7]["metaData"] = {"manifest": "x" * 3000}  # on the second page of 5
    service = FakeService(events)
    monkeypatch.setattr(fetch, "LARGE_BODY_BYTES", 2048)
    fetcher = WindowFetcher(
        service,  # type: ignore[arg-type]
        AuditLogFilters(),
        SerialExecutor(),
        page_size=5,
        max_offset=10_000,
        max_in_flight=4,
    )
    original = fetch.decode_page
    held: list[tuple[bool, int]] = []  # (large body, bytes counted beside it) per page decoded

    def decode_page(body: bytes, start: datetime, end: datetime) -> Any:
        held.append((len(body) >= 2048, fetcher._decoding.held - len(body)))
        return original(body, start, end)

    monkeypatch.setattr(fetch, "decode_page", decode_page)
    items = list(fetcher.fetch([PlannedWindow(Window(at(0), at(100)), 20)]))
    assert sorted(yielded_ids(items)) == [e["id"] for e in events]
    assert held == [(False, 0), (True, 0), (False, 0), (False, 0)]
    # everything handed on: nothing is counted any more
    assert fetcher._decoding.held == 0
    assert fetcher._in_flight.held == 0


def test_large_bodies_are_decoded_in_this_process_ordinary_ones_in_the_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With decoder workers, a body of LARGE_BODY_BYTES or more is decoded in the fetching
    thread: sent to a worker it would be copied there, its rows copied back, and the worker's
    decoding peak would stay in a second process; smaller bodies go to the workers."""
    events = [event(f"e{i:03d}", at(i)) for i in range(20)]
    events[7]["metaData"] = {"manifest": "x" * 3000}  # on the second page of 5
    service = FakeService(events)
    monkeypatch.setattr(fetch, "LARGE_BODY_BYTES", 2048)
    sizes: list[int] = []  # the bodies the workers were given

    class Workers(SerialExecutor):
        def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
            sizes.append(len(args[1]))  # decode_released(decode_with, body, ...)
            return super().submit(fn, *args, **kwargs)

    fetcher = WindowFetcher(
        service,  # type: ignore[arg-type]
        AuditLogFilters(),
        SerialExecutor(),
        page_size=5,
        max_offset=10_000,
        max_in_flight=4,
        decoder=Workers(),
    )
    items = list(fetcher.fetch([PlannedWindow(Window(at(0), at(100)), 20)]))
    assert sorted(yielded_ids(items)) == [e["id"] for e in events]
    assert len(sizes) == 3 and all(size < 2048 for size in sizes), sizes


def test_pages_past_page_bytes_are_asked_for_in_smaller_pages_from_then_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A page of several events whose body passes PAGE_BYTES is asked for again in halves;
    later pages are asked for with as many events as the last answer says fit in PAGE_FILL of
    it. Each event is yielded once, the pages answered cover the offsets planned exactly once,
    none larger than PAGE_BYTES, and only the first pages are given up."""
    wide = [{**event(f"w{i:03d}", at(i)), "metaData": {"manifest": "x" * 1000}} for i in range(40)]
    service = FakeService(wide)
    page_bytes = 4_500  # about four of these events
    monkeypatch.setattr(fetch, "PAGE_BYTES", page_bytes)
    items = list(read(service, [Window(at(0), at(40))], page_size=16))
    assert sorted(yielded_ids(items)) == sorted(e["id"] for e in wide)
    (report,) = [i for i in items if isinstance(i, WindowReport)]
    assert report.complete and report.rows == 40
    # a page of 16 is given up, then one of 8; the pages answered after them partition the
    # offsets planned (three pages of 16), each within PAGE_BYTES
    assert service.refused == [(0, 16), (16, 8)]
    covered = sorted((offset, offset + limit) for offset, limit, _ in service.answered)
    assert covered[0][0] == 0 and covered[-1][1] == 48
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    assert max(size for _, _, size in service.answered) <= page_bytes
    # sized by the answers: after a page of 4 events in 4,463 bytes, 3 fit in 3/4 of 4,500
    assert service.answered[0][1:] == (4, 4_463) and service.answered[1][1] == 3


def test_a_page_of_small_events_asks_for_the_page_size_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page size follows the events: after pages of large events, a page of small ones
    lets the reader ask for whole pages again."""
    monkeypatch.setattr(fetch, "PAGE_BYTES", 4_500)
    events = [
        {**event(f"w{i:03d}", at(i)), "metaData": {"manifest": "x" * 1000}} for i in range(8)
    ] + [event(f"s{i:03d}", at(100 + i)) for i in range(64)]
    service = FakeService(events)
    items = list(read(service, [Window(at(0), at(200))], page_size=16))
    assert sorted(yielded_ids(items)) == sorted(e["id"] for e in events)
    assert service.refused == [(0, 16), (0, 8)]
    assert max(size for _, _, size in service.answered) <= 4_500
    covered = sorted((offset, offset + limit) for offset, limit, _ in service.answered)
    assert covered[0][0] == 0 and covered[-1][1] == 80  # five pages of 16 planned
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
    # once pages of small events answered, whole pages are asked for again
    assert (32, 48) in covered and (48, 64) in covered


def test_the_memory_gate_holds_reading_to_one_page_at_a_time() -> None:
    """While the process holds more than its share (counting the pages coming), a page is
    asked for only once the pages in flight are handed on; below it, as many as allowed."""
    from concurrent.futures import ThreadPoolExecutor

    from tfy_audit._core.memory import MemoryGate

    class CountingService(FakeService):
        def __init__(self, events: list[dict[str, Any]]) -> None:
            super().__init__(events)
            self.at_once = 0
            self.most_at_once = 0
            self._lock = threading.Lock()

        def list_page(self, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.at_once += 1
                self.most_at_once = max(self.most_at_once, self.at_once)
            try:
                return super().list_page(*args, **kwargs)
            finally:
                with self._lock:
                    self.at_once -= 1

    events = [event(f"e{i:03d}", at(i)) for i in range(60)]
    for resident, expected in ((10**6, 1), (10, None)):
        service = CountingService(events)
        gate = MemoryGate(10**6, resident=lambda r=resident: r)  # threshold: half of it
        with ThreadPoolExecutor(4) as pool:
            fetcher = WindowFetcher(
                service,  # type: ignore[arg-type]
                AuditLogFilters(),
                pool,
                page_size=5,
                max_offset=10_000,
                max_in_flight=4,
                memory=gate,
            )
            items = list(fetcher.fetch([PlannedWindow(Window(at(0), at(60)), 60)]))
        assert sorted(yielded_ids(items)) == sorted(e["id"] for e in events)
        assert gate.closed_once is (expected == 1)
        if expected == 1:
            assert service.most_at_once == 1


def test_smaller_pages_stop_at_the_depth_the_service_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With pages made smaller by PAGE_BYTES, the rest of a planned page is never asked for
    past `max_offset` (it is not a multiple of the page size here): the window is read once,
    not split as if the service had refused an offset."""
    wide = [{**event(f"w{i:03d}", at(i)), "metaData": {"manifest": "x" * 1000}} for i in range(40)]
    service = FakeService(wide, refuse_from=40)
    monkeypatch.setattr(fetch, "PAGE_BYTES", 4_500)
    items = list(read(service, [Window(at(0), at(40))], page_size=16, max_offset=40))
    assert sorted(yielded_ids(items)) == sorted(e["id"] for e in wide)
    (report,) = [i for i in items if isinstance(i, WindowReport)]
    assert report.complete and report.rows == 40
    covered = sorted((offset, offset + limit) for offset, limit, _ in service.answered)
    assert covered[0][0] == 0 and covered[-1][1] == 40
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered))
