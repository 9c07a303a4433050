"""`tfy-audit verify --ids`: the service's event ids per UTC day against the warehouse's.

Counts can be equal while ids differ (an event the service no longer returns, another new on
the same day), so this compares the ids themselves. The range is planned into windows by the
service's counts and paged like a sync (planning.py, fetch.py), but pages are decoded to ids
only (`decode_ids`): no rows are built. Its cost is the sync's reading cost: about
`ceil(events / 1000)` list requests (a page holds at most 1,000 events, and the spec offers no
way to ask for the id field alone), one more per planned window, and the counts that plan the
windows (a few per 10,000 events; an empty stretch of history costs one count). The work is
done chunk by chunk (`IDS_CHUNK_EVENTS` planned events, with the warehouse's ids of the same
range), so memory follows a chunk, not the history.

Per day: ids the service returns and the warehouse lacks are *missing* (`--repair` re-syncs
those days through the normal sync, which merges, so nothing doubles); ids the warehouse holds
that the service no longer returns are *gone from the service* (services expire old events)
and are kept, never deleted: the warehouse is the archive. An id the service returns on two days
(two events share it) is held once by the warehouse: *held on another day*, not missing. A day
whose window could not be read completely is *unread*: its gone ids are not claimed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Final

import pyarrow as pa
import pyarrow.compute as pc

from tfy_audit._core.settings import MAX_PAGE_SIZE
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.fetch import PageOfWindow, WindowReport, read_windows
from tfy_audit._service.pages import decode_ids
from tfy_audit._service.planning import RunRange, chunk_plan, plan_run
from tfy_audit._warehouse.readback import read_warehouse_events

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

# Planned events compared at a time: the ids held in memory at once, on both sides.
IDS_CHUNK_EVENTS: Final = 200_000


@dataclass
class DayIds:
    """One UTC day's comparison: distinct ids on each side, and those on one side only."""

    day: date
    service: int = 0
    warehouse: int = 0
    missing: list[str] = field(default_factory=list)  # the service's, not in the warehouse
    gone_from_service: list[str] = field(default_factory=list)  # kept in the warehouse
    complete: bool = True  # False: the service's ids of the day could not all be read
    # the service's ids of this day that the warehouse holds on another day, with that day:
    # an id two events share (the warehouse keeps one row per id), or a createdAt that changed
    elsewhere: list[tuple[str, date]] = field(default_factory=list)

    @property
    def fails(self) -> bool:
        """What makes verify fail: events the warehouse lacks, or a day it could not read."""
        return bool(self.missing) or not self.complete

    @property
    def differs(self) -> bool:
        return self.fails or bool(self.gone_from_service) or bool(self.elsewhere)


@dataclass
class IdsResult:
    start: datetime
    end: datetime
    days: list[DayIds]  # every day with events on either side, in order
    requests: int = 0
    pages: int = 0
    # ids the service returned with a createdAt that does not parse: on no day
    undated: list[str] = field(default_factory=list)

    @property
    def differing(self) -> list[DayIds]:
        return [d for d in self.days if d.differs]

    @property
    def failing(self) -> list[DayIds]:
        return [d for d in self.days if d.fails]

    @property
    def missing(self) -> int:
        return sum(len(d.missing) for d in self.days)

    @property
    def gone_from_service(self) -> int:
        return sum(len(d.gone_from_service) for d in self.days)

    # what `verify_runs` records (verify_log.py)
    @property
    def differing_days(self) -> int:
        return len(self.failing)

    @property
    def missing_events(self) -> int:
        return self.missing


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _days_of(start: datetime, end: datetime) -> list[date]:
    """The UTC days `[start, end)` touches."""
    first, last = _day(start), _day(end - timedelta(microseconds=1))
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def warehouse_ids(
    pipeline: dlt.Pipeline, filters: AuditLogFilters, start: datetime, end: datetime
) -> dict[date, set[str]]:
    """The warehouse's ids per UTC day of `[start, end)`, with the endpoint's filters applied."""
    from tfy_audit._engine.verify import filter_mask

    filtered = bool(filters.as_dict())
    table = read_warehouse_events(pipeline, start, end, with_ids=True, filtered=filtered)
    if table.num_rows and filtered:
        mask = filter_mask(table, filters)
        if mask is not None:
            table = table.filter(mask)
    created = pc.cast(table["created_at"], pa.timestamp("us", tz="UTC"))
    inside = pc.and_kleene(
        pc.greater_equal(created, pa.scalar(start, pa.timestamp("us", tz="UTC"))),
        pc.less(created, pa.scalar(end, pa.timestamp("us", tz="UTC"))),
    )
    table = table.filter(pc.fill_null(inside, False))
    created = pc.cast(table["created_at"], pa.timestamp("us", tz="UTC"))
    days: dict[date, set[str]] = {}
    for event_id, at in zip(table["id"].to_pylist(), created.to_pylist(), strict=True):
        days.setdefault(_day(at), set()).add(str(event_id))
    return days


def verify_ids_range(
    client: AuditLogClient,
    pipeline: dlt.Pipeline,
    filters: AuditLogFilters,
    start: datetime,
    end: datetime,
    *,
    concurrency: int,
    page_size: int = MAX_PAGE_SIZE,
    max_offset: int,
) -> IdsResult:
    if end <= start:  # e.g. --end at or before the first sync's start: nothing to compare
        return IdsResult(start, end, [])
    before = client.stats.requests
    run = RunRange(start, end, advances_state=False)
    windows = plan_run(client, filters, run, max_offset=max_offset, concurrency=concurrency)
    by_day: dict[date, DayIds] = {}
    result = IdsResult(start, end, [])
    chunks = chunk_plan(run, windows, IDS_CHUNK_EVENTS)
    for chunk in chunks:
        service: dict[date, set[str]] = {}
        unread: set[date] = set()
        if chunk.windows:
            for item in read_windows(
                client,
                filters,
                chunk.windows,
                page_size=page_size,
                concurrency=concurrency,
                max_offset=max_offset,
                decode=decode_ids,
            ):
                if isinstance(item, PageOfWindow):
                    result.pages += 1
                    for event_id, at in item.page.dated_ids or ():
                        service.setdefault(_day(at), set()).add(event_id)
                    result.undated.extend(item.page.undated_ids)
                elif isinstance(item, WindowReport) and not item.complete:
                    unread.update(_days_of(item.window.start, item.window.end))
        held = warehouse_ids(pipeline, filters, chunk.start, chunk.end)
        for day in sorted(set(service) | set(held) | unread):
            ours, theirs = service.get(day, set()), held.get(day, set())
            entry = by_day.setdefault(day, DayIds(day))
            entry.service += len(ours)
            entry.warehouse += len(theirs)
            entry.missing.extend(sorted(ours - theirs))
            if day in unread:
                entry.complete = False
            else:
                entry.gone_from_service.extend(sorted(theirs - ours))
    for entry in by_day.values():
        if not entry.complete:
            entry.gone_from_service.clear()
    _place_elsewhere(by_day, [(c.start, c.end) for c in chunks], pipeline, filters)
    result.days = [by_day[d] for d in sorted(by_day)]
    result.undated = sorted(set(result.undated))
    result.requests = client.stats.requests - before
    if result.undated:
        logger.warning(
            "%d event(s) the service returned have a createdAt that does not parse, so no day "
            "to compare them on (first: %s); their rows were loaded as the service sent them",
            len(result.undated),
            result.undated[0],
        )
    return result


def _place_elsewhere(
    by_day: dict[date, DayIds],
    ranges: Sequence[tuple[datetime, datetime]],
    pipeline: dlt.Pipeline,
    filters: AuditLogFilters,
) -> None:
    """A missing id the warehouse holds on another day where the service returns it too is not
    missing: two events share the id, and the warehouse keeps one row per id (re-syncing would
    never settle it). It is listed apart and does not fail verify. An id the service no longer
    returns on the warehouse's day moved (its createdAt changed): it stays missing on its new
    day, which a re-sync merges. Only when something is missing is the warehouse read again,
    range by range, for them."""
    wanted = {i: d.day for d in by_day.values() for i in d.missing}
    if not wanted:
        return
    held_on: dict[str, date] = {}
    for lo, hi in ranges:
        for day, ids in warehouse_ids(pipeline, filters, lo, hi).items():
            for event_id in ids & wanted.keys():
                if day != wanted[event_id]:
                    held_on[event_id] = day
    for event_id, day in held_on.items():
        other = by_day.get(day)
        if other is not None and event_id in other.gone_from_service:
            continue  # its createdAt moved: missing on its new day, which a re-sync merges
        entry = by_day[wanted[event_id]]
        entry.missing.remove(event_id)
        entry.elsewhere.append((event_id, day))
    for entry in by_day.values():
        entry.elsewhere.sort()


def summarize(items: Sequence[str], shown: int = 5) -> str:
    """The first few of a long list and how many more: one line, whatever its length."""
    head = ", ".join(items[:shown])
    more = len(items) - shown
    return f"{head} (+{more:,} more; --json lists them all)" if more > 0 else head
