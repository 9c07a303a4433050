"""`tfy-audit verify`: the service's own counts per UTC day against the warehouse's.

The service is counted with `metric=count` over day buckets found by splitting the range on day
boundaries (empty spans are dropped after one request). The spec does not say whether `start`
and `end` are inclusive, so verify first asks the service, with three counts around each of a
few instants that hold warehouse events and have none within a millisecond; where the readings
agree, each day is queried so that the service counts exactly `[day start, day end)`, and must
match the warehouse's events of the day. A side whose reading could not be learnt is queried
padded, like a sync window (`day_start - 1 ms .. day_end`), and the warehouse's events on that
padded bound may or may not be counted: there, an event on the bound can hide a missing one.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from tfy_audit._core.options import client_limits
from tfy_audit._core.settings import HISTORY_START, MIN_WINDOW
from tfy_audit._engine.verify_ids import IdsResult, verify_ids_range
from tfy_audit._service.client import AuditLogClient, AuditLogFilters
from tfy_audit._service.windows import floor_ms
from tfy_audit._warehouse.readback import (
    read_warehouse_events,
    recorded_repeated_ids,
    recorded_set_aside,
)

if TYPE_CHECKING:
    import dlt

logger = logging.getLogger(__name__)

DAY = timedelta(days=1)


@dataclass(frozen=True)
class BoundReading:
    """Whether the service's `start` and `end` include events exactly on them; None: unknown."""

    start_inclusive: bool | None = None
    end_inclusive: bool | None = None

    def query_bounds(self, start: datetime, end: datetime) -> tuple[datetime, datetime]:
        """`start`/`end` that make the service count exactly `[start, end)` where the reading
        is known; padded by a millisecond before `start` where it is not."""
        return (
            start if self.start_inclusive is True else start - MIN_WINDOW,
            end - MIN_WINDOW if self.end_inclusive is True else end,
        )


@dataclass(frozen=True)
class DayBucket:
    day: date
    start: datetime
    end: datetime

    def query_bounds(self, bounds: BoundReading = BoundReading()) -> tuple[datetime, datetime]:
        return bounds.query_bounds(self.start, self.end)


@dataclass(frozen=True)
class WarehouseDay:
    inside: int  # events in [start, end)
    on_start: int  # exactly on the padded start, start - 1 ms
    on_end: int  # exactly on end

    def counted(self, bounds: BoundReading) -> tuple[int, int]:
        """The least and the most of these events the service's count of the day includes,
        queried with `bounds.query_bounds()`: the day's own, plus, on a side whose reading is
        unknown (queried padded), maybe the events on that side's padded bound."""
        high = self.inside
        if bounds.start_inclusive is None:
            high += self.on_start
        if bounds.end_inclusive is None:
            high += self.on_end
        return self.inside, high


@dataclass(frozen=True)
class DayComparison:
    day: date
    service: int
    warehouse: int  # the warehouse's events the service's count should include, at least
    warehouse_most: int  # ... and at most (more only where a bound's reading is unknown)

    @property
    def matches(self) -> bool:
        return self.warehouse <= self.service <= self.warehouse_most

    @property
    def missing(self) -> int:
        """Events the warehouse lacks (negative: events the service no longer counts)."""
        if self.matches:
            return 0
        if self.service > self.warehouse_most:
            return self.service - self.warehouse_most
        return self.service - self.warehouse


@dataclass
class VerifyResult:
    start: datetime
    end: datetime
    days: list[DayComparison]
    requests: int = 0
    bounds: BoundReading = BoundReading()
    # ids the service serves twice, as a sync recorded them (event_anomalies), in the range
    repeated_ids: list[str] = dataclasses.field(default_factory=list)
    # events a sync set aside as too large (event_anomalies) and never loaded, by each day
    # their window overlaps: why such a day lacks them
    set_aside: dict[date, int] = dataclasses.field(default_factory=dict)

    @property
    def differing(self) -> list[DayComparison]:
        return [d for d in self.days if not d.matches]

    @property
    def failing(self) -> list[DayComparison]:
        """The days that fail verify (and `--repair` re-syncs): every day that differs."""
        return self.differing

    # what `verify_runs` records (verify_log.py)
    @property
    def differing_days(self) -> int:
        return len(self.differing)

    @property
    def missing_events(self) -> int:
        return sum(max(d.missing, 0) for d in self.differing)


def day_buckets(start: datetime, end: datetime) -> list[DayBucket]:
    """UTC days intersected with `[start, end)`."""
    buckets: list[DayBucket] = []
    day_start = datetime(start.year, start.month, start.day, tzinfo=UTC)
    while day_start < end:
        day_end = day_start + DAY
        buckets.append(DayBucket(day_start.date(), max(start, day_start), min(end, day_end)))
        day_start = day_end
    return buckets


def service_day_counts(
    client: AuditLogClient,
    filters: AuditLogFilters,
    buckets: Sequence[DayBucket],
    *,
    concurrency: int,
    bounds: BoundReading = BoundReading(),
) -> dict[date, int]:
    """The service's count for every day bucket with events, by splitting on day boundaries."""

    def count(span: Sequence[DayBucket]) -> int:
        return client.count(filters, *bounds.query_bounds(span[0].start, span[-1].end))

    result: dict[date, int] = {}
    pending: list[Sequence[DayBucket]] = [buckets] if buckets else []
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tfy-verify") as pool:
        while pending:
            counts = list(pool.map(count, pending))
            following: list[Sequence[DayBucket]] = []
            for span, n in zip(pending, counts, strict=True):
                if n == 0:
                    continue
                if len(span) == 1:
                    result[span[0].day] = n
                    continue
                # Split into up to 16 parts: fewer rounds of requests for long, sparse ranges.
                step = max(1, -(-len(span) // 16))
                following.extend(span[i : i + step] for i in range(0, len(span), step))
            pending = following
    return result


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PAD_US = MIN_WINDOW // timedelta(microseconds=1)


def _us(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(microseconds=1)


def sorted_micros(created_at: pa.ChunkedArray | pa.Array) -> list[int]:
    """The non-null timestamps as sorted microseconds since the epoch."""
    values = pc.drop_null(pc.cast(created_at, pa.timestamp("us", tz="UTC")))
    return sorted(pc.cast(values, pa.int64()).to_pylist())


def warehouse_day_counts(
    micros: list[int], buckets: Sequence[DayBucket]
) -> dict[date, WarehouseDay]:
    """Per bucket, its events and those on its two padded bounds, from `sorted_micros()`."""
    counts: dict[date, WarehouseDay] = {}
    for b in buckets:
        lo, hi = _us(b.start), _us(b.end)
        day = WarehouseDay(
            inside=bisect.bisect_left(micros, hi) - bisect.bisect_left(micros, lo),
            on_start=bisect.bisect_left(micros, lo) - bisect.bisect_left(micros, lo - _PAD_US),
            on_end=bisect.bisect_right(micros, hi) - bisect.bisect_left(micros, hi),
        )
        if day.inside or day.on_start or day.on_end:
            counts[b.day] = day
    return counts


# How many instants read_bounds() asks about; their readings must agree.
BOUND_PROBES = 3


def read_bounds(
    client: AuditLogClient, filters: AuditLogFilters, micros: list[int]
) -> BoundReading:
    """How the service reads `start` and `end`, from the latest BOUND_PROBES instants `t` that
    hold warehouse events with none within a millisecond of them; three counts each:
    `[t - 1 ms, t + 1 ms]` must hold them whatever the reading (else the service lacks them),
    `[t, t + 1 ms]` holds them if `start` is inclusive, `[t - 1 ms, t]` if `end` is. A side is
    known only if every probe agrees (an event the service moved by a millisecond would fool
    one probe); otherwise, or with no such instant, it stays unknown."""
    readings: list[BoundReading] = []
    for t, n in _isolated_instants(micros, BOUND_PROBES):
        at = _EPOCH + timedelta(microseconds=t)
        if client.count(filters, at - MIN_WINDOW, at + MIN_WINDOW) != n:
            return BoundReading()
        readings.append(
            BoundReading(
                start_inclusive=_reading(client.count(filters, at, at + MIN_WINDOW), n),
                end_inclusive=_reading(client.count(filters, at - MIN_WINDOW, at), n),
            )
        )
    if not readings:
        return BoundReading()
    starts = {r.start_inclusive for r in readings}
    ends = {r.end_inclusive for r in readings}
    return BoundReading(
        start_inclusive=starts.pop() if len(starts) == 1 else None,
        end_inclusive=ends.pop() if len(ends) == 1 else None,
    )


def _isolated_instants(micros: list[int], wanted: int) -> list[tuple[int, int]]:
    """Up to `wanted` (instant, events on it), latest first, with no other event within a
    millisecond of the instant."""
    found: list[tuple[int, int]] = []
    i = len(micros)
    while i > 0 and len(found) < wanted:
        t = micros[i - 1]
        first = bisect.bisect_left(micros, t)
        i = first
        before_clear = first == 0 or micros[first - 1] < t - _PAD_US
        after_clear = bisect.bisect_right(micros, t + _PAD_US) == bisect.bisect_right(micros, t)
        if before_clear and after_clear:
            found.append((t, bisect.bisect_right(micros, t) - first))
    return found


def _reading(count: int, held: int) -> bool | None:
    return True if count == held else False if count == 0 else None


def filter_mask(table: pa.Table, filters: AuditLogFilters) -> pa.ChunkedArray | None:
    """The endpoint's filters applied to warehouse rows, so both sides count the same events."""
    columns = {
        "action": "action",
        "resource_id": "resource_id",
        "resource_type": "resource_type",
        "resource_name": "resource_name",
        "resource_fqn": "resource_fqn",
        "cluster_id": "cluster_id",
        "workspace_id": "workspace_id",
    }
    mask: Any = None

    def both(a: Any, b: Any) -> Any:
        return b if a is None else pc.and_kleene(a, b)

    for name, value in filters.as_dict().items():
        if name in columns:
            cond = pc.equal(table[columns[name]], value)
        elif name == "subject_slug":
            slugs = pa.array([s.strip() for s in value.split(",") if s.strip()])
            cond = pc.is_in(table["subject__subject_slug"], value_set=slugs)
        else:  # search: case-insensitive substring of message, action, resource name/fqn
            cond = None
            for col in ("message", "action", "resource_name", "resource_fqn"):
                hit = pc.match_substring(table[col], value, ignore_case=True)
                cond = hit if cond is None else pc.or_kleene(cond, hit)
        mask = both(mask, pc.fill_null(cond, False))
    return mask


def compare(
    service: dict[date, int],
    warehouse: dict[date, WarehouseDay],
    buckets: Sequence[DayBucket],
    bounds: BoundReading = BoundReading(),
) -> list[DayComparison]:
    days: list[DayComparison] = []
    for b in buckets:
        s = service.get(b.day, 0)
        low, high = warehouse.get(b.day, WarehouseDay(0, 0, 0)).counted(bounds)
        if s or high:
            days.append(DayComparison(b.day, s, low, high))
    return days


def verify_range(
    client: AuditLogClient,
    pipeline: dlt.Pipeline,
    filters: AuditLogFilters,
    start: datetime,
    end: datetime,
    *,
    concurrency: int,
) -> VerifyResult:
    buckets = day_buckets(start, end)
    before = client.stats.requests
    table = read_warehouse_events(pipeline, start, end)
    if table.num_rows and filters.as_dict():
        mask = filter_mask(table, filters)
        if mask is not None:
            table = table.filter(mask)
    micros = sorted_micros(table["created_at"])
    # learnt first, so each day is counted as exactly [day start, day end) where it can be
    bounds = read_bounds(client, filters, micros)
    logger.info("the service reads start/end as inclusive: %s/%s", *dataclasses.astuple(bounds))
    service = service_day_counts(client, filters, buckets, concurrency=concurrency, bounds=bounds)
    warehouse = warehouse_day_counts(micros, buckets)
    repeated = recorded_repeated_ids(pipeline, start, end)
    # a filtered count may not include an event set aside: only said of an unfiltered one
    set_aside = (
        {} if filters.as_dict() else set_aside_days(recorded_set_aside(pipeline, start, end))
    )
    return VerifyResult(
        start,
        end,
        # a filtered count may not hold a recorded id at all: its day is compared as counted
        _less_repeats(
            compare(service, warehouse, buckets, bounds),
            {} if filters.as_dict() else repeated,
        ),
        client.stats.requests - before,
        bounds,
        sorted(repeated),
        set_aside,
    )


def set_aside_days(windows: Sequence[tuple[datetime, datetime]]) -> dict[date, int]:
    """How many events set aside lie on each day: an event's day is not recorded (its body
    was never read), only its window, so each event counts on every UTC day its window
    overlaps (a window of one day, the usual case for a page that large, names the day)."""
    days: dict[date, int] = {}
    for start, end in windows:
        day = start.astimezone(UTC).date()
        last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
        while day <= last:
            days[day] = days.get(day, 0) + 1
            day += timedelta(days=1)
    return days


def _less_repeats(days: list[DayComparison], repeated: dict[str, datetime]) -> list[DayComparison]:
    """A day that differs only by the second copies of ids a sync recorded as served twice
    (the service counts both copies; the warehouse holds one) matches, counted without them."""
    copies: dict[date, int] = {}
    for created in repeated.values():
        day = created.astimezone(UTC).date()
        copies[day] = copies.get(day, 0) + 1
    out: list[DayComparison] = []
    for d in days:
        if not d.matches and d.day in copies:
            less = dataclasses.replace(d, service=d.service - copies[d.day])
            if less.matches:
                d = less
        out.append(d)
    return out


# Why verify starts where it does (`FirstDay.why`).
FROM_START = "start"  # a one-off --start
FROM_FIRST_SYNC = "first_sync"  # where the first sync started (its --since), as recorded
FROM_RUN_HISTORY = "run_history"  # the same, from sync_runs: state of an older version
FROM_HISTORY = "history"  # the first sync read the whole history, from HISTORY_START
FROM_SINCE = "since"  # no start recorded (state of an older version): --since
FROM_UNRECORDED = "unrecorded"  # no start recorded and no --since: HISTORY_START

_WHY_TEXT: Final = {
    FROM_START: "--start",
    FROM_FIRST_SYNC: "where the first sync started (its --since)",
    FROM_RUN_HISTORY: "where the first sync started (its --since), from the run history",
    FROM_HISTORY: "the documented lower bound of history, where the first sync started",
    FROM_SINCE: "--since (no first sync's start is recorded)",
    FROM_UNRECORDED: "the documented lower bound of history (no first sync's start is recorded)",
}


@dataclass(frozen=True)
class FirstDay:
    """The first instant verify checks, and why there."""

    start: datetime
    why: str

    @property
    def text(self) -> str:
        day = self.start.date().isoformat()
        return f"verify checks from {day} ({self.start.isoformat()}): {_WHY_TEXT[self.why]}"


def first_day(
    options: Any, recorded: datetime | None, now: datetime, *, from_runs: datetime | None = None
) -> FirstDay:
    """Where verify starts: `--start`; else where the first sync started (`recorded` in the
    state), so a history skipped on purpose (`sync --since`) is never reported missing; else,
    for state that predates the record, the run history's (`from_runs`), `--since`, or the
    documented lower bound."""
    if options.start is not None:
        return FirstDay(floor_ms(options.start), FROM_START)
    if recorded is not None:
        return FirstDay(
            floor_ms(recorded), FROM_HISTORY if recorded <= HISTORY_START else FROM_FIRST_SYNC
        )
    if from_runs is not None and from_runs > HISTORY_START:
        return FirstDay(floor_ms(from_runs), FROM_RUN_HISTORY)
    if options.since is not None:
        return FirstDay(floor_ms(options.first_run_start(now)), FROM_SINCE)
    return FirstDay(HISTORY_START, FROM_UNRECORDED)


@dataclass
class VerifyOutcome:
    first: VerifyResult | IdsResult
    repaired_days: list[date]
    after_repair: VerifyResult | IdsResult | None = None
    first_day: FirstDay | None = None

    @property
    def final(self) -> VerifyResult | IdsResult:
        return self.after_repair or self.first


def run_verify(
    options: Any,
    *,
    repair: bool,
    ids: bool = False,
    transport: httpx.BaseTransport | None = None,
) -> VerifyOutcome:
    """Verify the options' pipeline against the service, by counts or with `ids` by event ids
    (verify_ids.py); with `repair`, re-sync the days that fail (each run of consecutive days
    as one sync) and verify again."""
    from tfy_audit._compat.dlt import pipeline_source_state
    from tfy_audit._core.settings import SOURCE_NAME
    from tfy_audit._engine.sync import sync
    from tfy_audit._source.config import resolve_api_key, resolve_checked_host
    from tfy_audit._source.state import covered_until, first_start, stream_state
    from tfy_audit._warehouse.destination import make_pipeline, reading_pipeline, write_refusal
    from tfy_audit._warehouse.run_log import first_run_start
    from tfy_audit._warehouse.verify_log import record_verify_run

    # the host first: a bad one is a usage error before anything is read or said
    host = resolve_checked_host(options.host, allow_insecure_http=options.allow_insecure_http)
    # without --repair it only reads (its record aside): a file that refuses writes will do
    read_only = not repair and write_refusal(options.target) is not None
    pipeline = reading_pipeline(options.target) if not repair else make_pipeline(options.target)
    if pipeline.has_pending_data:
        logger.warning("an interrupted sync left data to load; the next sync will load it first")
    pipeline.sync_destination()
    require_loaded(pipeline)
    entry = stream_state(pipeline_source_state(pipeline, SOURCE_NAME), options.filters)
    # on whole milliseconds, the service's precision, as the sync's ranges are
    recorded = first_start(entry)
    from_runs = None if recorded else first_run_start(pipeline, options.filters)
    begin = first_day(options, recorded, datetime.now(UTC), from_runs=from_runs)
    logger.info("%s", begin.text)
    start = begin.start
    end = floor_ms(options.end or covered_until(entry) or datetime.now(UTC))
    client = AuditLogClient(
        host,
        resolve_api_key(options.api_key, host),
        retry=options.retry,
        max_connections=options.concurrency,
        transport=transport,
        **client_limits(options, time.monotonic()),
    )

    def check(pipeline: dlt.Pipeline) -> VerifyResult | IdsResult:
        if ids:
            return verify_ids_range(
                client,
                pipeline,
                options.filters,
                start,
                end,
                concurrency=options.concurrency,
                page_size=options.page_size,
                max_offset=options.max_offset,
            )
        return verify_range(
            client, pipeline, options.filters, start, end, concurrency=options.concurrency
        )

    with client:
        first = check(pipeline)
        outcome = VerifyOutcome(first, [], first_day=begin)
        if not repair or not first.failing:
            if read_only:
                logger.warning(
                    "the verify result is not recorded in verify_runs: %s refuses writes",
                    options.target.db,
                )
            else:
                record_verify_run(pipeline, outcome.final)
            return outcome
        days = sorted(d.day for d in first.failing)
        for run_start, run_end in _day_runs(days, start, end):
            logger.info("repairing %s .. %s", run_start.isoformat(), run_end.isoformat())
            sync(dataclasses.replace(options, start=run_start, end=run_end), transport=transport)
        outcome.repaired_days = days
        pipeline = make_pipeline(options.target)
        outcome.after_repair = check(pipeline)
    record_verify_run(pipeline, outcome.final)
    return outcome


def summarize_days(days: Sequence[date], limit: int = 10) -> str:
    """Days for one line of text: three or more in a row as `first..last`, and past `limit`
    items the count of the rest (a verify of years may find thousands of days)."""
    items: list[str] = []
    ordered = sorted(days)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] - ordered[j] == timedelta(days=1):
            j += 1
        if j - i >= 2:
            items.append(f"{ordered[i].isoformat()}..{ordered[j].isoformat()}")
        else:
            items.extend(d.isoformat() for d in ordered[i : j + 1])
        i = j + 1
    if len(items) <= limit:
        return ", ".join(items)
    rest = sum(_days_in(item) for item in items[limit:])
    return ", ".join(items[:limit]) + f" and {rest} more day(s) (--json lists them all)"


def _days_in(item: str) -> int:
    first, _, last = item.partition("..")
    return (date.fromisoformat(last or first) - date.fromisoformat(first)).days + 1


def require_loaded(pipeline: dlt.Pipeline) -> None:
    """Verify compares what a sync loaded: with nothing loaded, it refuses in one line rather
    than report every day of the history as missing."""
    from tfy_audit._core.errors import UsageError
    from tfy_audit._core.settings import AUDIT_LOGS_TABLE
    from tfy_audit._warehouse.readback import table_loaded

    if not table_loaded(pipeline, AUDIT_LOGS_TABLE):
        raise UsageError(
            f"nothing was synced into dataset {pipeline.dataset_name!r} of this destination "
            "yet; run `tfy-audit sync` first, or pass the --dataset/--db it used"
        )


def _day_runs(
    days: Sequence[date], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    """Consecutive days merged into ranges, clipped to [start, end)."""
    runs: list[tuple[datetime, datetime]] = []
    for d in days:
        day_start = datetime(d.year, d.month, d.day, tzinfo=UTC)
        lo, hi = max(start, day_start), min(end, day_start + DAY)
        if runs and runs[-1][1] == lo:
            runs[-1] = (runs[-1][0], hi)
        else:
            runs.append((lo, hi))
    return runs
