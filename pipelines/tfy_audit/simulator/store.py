"""The simulator's event store: sorted by createdAt, served from pre-serialized bytes.

Reads never take the lock: every mutation builds a new immutable `Snapshot` and swaps it in,
so a request pages over one consistent version while events arrive. Time ranges are two
bisects; filtered or shuffled windows are computed once per store version and cached, so
paging through a window does not rescan it for every page.
"""

from __future__ import annotations

import bisect
import json
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any, Final, NamedTuple

import orjson

from tfy_audit.simulator.config import Order
from tfy_audit.simulator.history import gc_paused
from tfy_audit.simulator.timestamps import parse_ts, to_epoch_us

_CACHE_SIZE: Final = 16
# Marks the store's second row of an event served twice (`add_twin`); never served.
TWIN_SUFFIX: Final = "\x00twin"
# Below this many new events, inserting into copies of the sorted lists beats re-sorting.
_INSORT_MAX: Final = 256


class StoredEvent(NamedTuple):
    """One stored event. Tuples compare field by field and ids are unique in a store, so the
    natural order of rows is (createdAt, id): sorting needs no key function."""

    key: int  # createdAt, microseconds since the epoch
    id: str
    blob: bytes  # the event exactly as served
    exotic: bool  # written by the stdlib json (integers beyond 64 bits); read back with it
    action: object
    resource_id: object
    resource_type: object
    resource_name: object
    resource_fqn: object
    cluster_id: object
    workspace_id: object
    subject_slug: object
    message: object


# Query parameter -> the stored field it matches exactly.
FILTER_FIELDS: Final[Mapping[str, str]] = {
    "action": "action",
    "resourceId": "resource_id",
    "resourceType": "resource_type",
    "resourceName": "resource_name",
    "resourceFqn": "resource_fqn",
    "clusterId": "cluster_id",
    "workspaceId": "workspace_id",
}
_SEARCHED: Final = attrgetter("message", "action", "resource_name", "resource_fqn")


@dataclass(frozen=True, slots=True)
class Query:
    """What a request asks for, already validated. Bounds are epoch microseconds."""

    filters: tuple[tuple[str, str], ...] = ()
    search: str | None = None
    subject_slugs: frozenset[str] | None = None
    start_us: int | None = None
    end_us: int | None = None
    start_inclusive: bool = True
    end_inclusive: bool = True

    @property
    def has_predicates(self) -> bool:
        return bool(self.filters) or self.search is not None or self.subject_slugs is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    keys: list[int]
    rows: list[StoredEvent]
    # events the service holds without a time it can place (see `EventStore.add_raw`)
    unplaced: tuple[StoredEvent, ...] = ()


def to_row(event: Mapping[str, Any]) -> StoredEvent:
    """Validate the few fields the store relies on and serialize the event once."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id:
        raise ValueError(f"event without a string id: {str(event)[:200]}")
    created = event.get("createdAt")
    try:
        key = to_epoch_us(parse_ts(created))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ValueError(f"event {event_id}: invalid createdAt {created!r}") from exc
    exotic = False
    try:
        # orjson hands back its whole growth buffer (about 8 KiB for a 1 KiB event); `%b`
        # copies it into an exact-size object, which keeps a million events near 1 GB.
        blob = b"%b" % orjson.dumps(event)
    except TypeError:
        # orjson stops at 64-bit integers; JSON itself does not.
        blob = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        exotic = True
    subject = event.get("subject")
    return StoredEvent(
        key,
        event_id,
        blob,
        exotic,
        event.get("action"),
        event.get("resourceId"),
        event.get("resourceType"),
        event.get("resourceName"),
        event.get("resourceFqn"),
        event.get("clusterId"),
        event.get("workspaceId"),
        subject.get("subjectSlug") if isinstance(subject, dict) else None,
        event.get("message"),
    )


class EventStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = Snapshot(0, [], [])
        self._ids: set[str] = set()
        self._cache: OrderedDict[tuple[Any, ...], list[int]] = OrderedDict()
        self._cache_lock = threading.Lock()
        # Windows scanned for predicates or shuffled; a cached window is not scanned again.
        self.scans = 0

    # -- writes --------------------------------------------------------------------------------

    def add(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Add events; an event whose id is already stored replaces it. Returns the ids."""
        with gc_paused():
            by_id = {row.id: row for row in map(to_row, events)}
            if not by_id:
                return []
            new_rows = sorted(by_id.values())
            with self._lock:
                self._merge(new_rows, self._ids.intersection(by_id))
        return [r.id for r in new_rows]

    def remove(self, ids: Iterable[str]) -> list[str]:
        """Stop serving these events (a service expiring old events, or losing one); returns
        the ids that were stored. Counts and pages agree at once: both read the snapshot."""
        wanted = set(ids)
        with self._lock:
            gone = self._ids & wanted
            if gone:
                old = self._snapshot
                rows = [r for r in old.rows if r.id not in gone]
                unplaced = tuple(r for r in old.unplaced if r.id not in gone)
                self._ids -= gone
                self._snapshot = Snapshot(old.version + 1, [r.key for r in rows], rows, unplaced)
        return sorted(gone)

    def add_raw(self, event_id: str, created_at: datetime | None, blob: bytes) -> None:
        """Store `blob` as served, as is: bytes a JSON encoder would not write (invalid UTF-8,
        nesting deeper than any encoder follows, a createdAt that is no time). `created_at` is
        where the service files it; None is an event it cannot place, which every list and count
        query without predicates returns, after the placed events."""
        if created_at is None:
            row = StoredEvent(0, event_id, blob, True, *([None] * 9))
            with self._lock:
                old = self._snapshot
                kept = tuple(r for r in old.unplaced if r.id != event_id)
                self._snapshot = Snapshot(old.version + 1, old.keys, old.rows, (*kept, row))
            return
        row = StoredEvent(to_epoch_us(created_at), event_id, blob, True, *([None] * 9))
        with self._lock:
            self._merge([row], self._ids.intersection({event_id}))

    def _merge(self, new_rows: list[StoredEvent], replaced: set[str]) -> None:
        old = self._snapshot
        if not replaced and len(new_rows) <= _INSORT_MAX:
            keys, rows = list(old.keys), list(old.rows)
            for row in new_rows:
                at = bisect.bisect_right(rows, row)
                rows.insert(at, row)
                keys.insert(at, row.key)
        else:
            base = [r for r in old.rows if r.id not in replaced] if replaced else old.rows
            # Two sorted runs: timsort merges them in linear time.
            rows = base + new_rows
            rows.sort()
            keys = [r.key for r in rows]
        self._ids.update(r.id for r in new_rows)
        self._snapshot = Snapshot(old.version + 1, keys, rows, old.unplaced)

    def add_twin(self, event_id: str) -> None:
        """Serve the stored event `event_id` twice from now on: a second row with the same
        bytes (so the same id), counted and paged like any row, as a service whose query joins
        a row twice would. `ids()` names it once."""
        with self._lock:
            (row,) = [r for r in self._snapshot.rows if r.id == event_id]
            self._merge([row._replace(id=event_id + TWIN_SUFFIX)], set())

    # -- reads ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def __len__(self) -> int:
        return len(self._snapshot.rows)

    def ids(self) -> set[str]:
        return {r.id.removesuffix(TWIN_SUFFIX) for r in self._snapshot.rows}

    def events(self) -> list[dict[str, Any]]:
        """Every event, oldest first, decoded afresh from the served bytes; events stored raw
        (`add_raw`) that no JSON parser reads as they are (invalid UTF-8, deep nesting) are
        left out."""
        out = []
        for r in self._snapshot.rows:
            try:
                out.append(json.loads(r.blob) if r.exotic else orjson.loads(r.blob))
            except (ValueError, RecursionError):
                continue
        return out

    def key_range(self) -> tuple[int, int] | None:
        keys = self._snapshot.keys
        return (keys[0], keys[-1]) if keys else None

    def count(self, query: Query) -> int:
        snap = self._snapshot
        lo, hi = _bounds(snap.keys, query)
        if not query.has_predicates:
            return hi - lo + len(snap.unplaced)  # two bisects, whatever the store's size
        return len(self._matching(snap, lo, hi, query))

    def page(
        self, query: Query, order: Order, offset: int, limit: int, salt: str
    ) -> tuple[int, list[bytes]]:
        """(total matching, the serialized events of one page in `order`)."""
        snap = self._snapshot
        total, blobs = self._placed_page(snap, query, order, offset, limit, salt)
        if not snap.unplaced or query.has_predicates:
            return total, blobs
        # the unplaced events come after the placed ones
        first = max(0, offset - total)
        extra = [r.blob for r in snap.unplaced[first : first + limit - len(blobs)]]
        return total + len(snap.unplaced), blobs + extra

    def _placed_page(
        self, snap: Snapshot, query: Query, order: Order, offset: int, limit: int, salt: str
    ) -> tuple[int, list[bytes]]:
        rows = snap.rows
        lo, hi = _bounds(snap.keys, query)
        if not query.has_predicates and order != "shuffled":
            total = hi - lo
            if order == "asc":
                first = lo + offset
                return total, [r.blob for r in rows[first : min(hi, first + limit)]]
            last = hi - offset  # exclusive; desc walks backwards from here
            first = max(lo, last - limit)
            return total, [r.blob for r in reversed(rows[first:last])] if last > first else []
        positions = self._ordered(snap, lo, hi, query, order, salt)
        return len(positions), [rows[p].blob for p in positions[offset : offset + limit]]

    # -- internals -----------------------------------------------------------------------------

    def _cached(self, key: tuple[Any, ...]) -> list[int] | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _remember(self, key: tuple[Any, ...], value: list[int]) -> list[int]:
        with self._cache_lock:
            self._cache[key] = value
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return value

    def _matching(self, snap: Snapshot, lo: int, hi: int, query: Query) -> list[int]:
        """Positions in [lo, hi) whose event matches the query's predicates, ascending."""
        if not query.has_predicates:
            return list(range(lo, hi))
        key = ("match", snap.version, lo, hi, query.filters, query.search, query.subject_slugs)
        hit = self._cached(key)
        if hit is not None:
            return hit
        self.scans += 1
        rows = snap.rows
        getters = [(attrgetter(FILTER_FIELDS[name]), value) for name, value in query.filters]
        needle = query.search.lower() if query.search is not None else None
        slugs = query.subject_slugs
        out = []
        for pos in range(lo, hi):
            row = rows[pos]
            if any(get(row) != value for get, value in getters):
                continue
            if slugs is not None and row.subject_slug not in slugs:
                continue
            if needle is not None and not any(
                isinstance(text, str) and needle in text.lower() for text in _SEARCHED(row)
            ):
                continue
            out.append(pos)
        return self._remember(key, out)

    def _ordered(
        self, snap: Snapshot, lo: int, hi: int, query: Query, order: Order, salt: str
    ) -> list[int]:
        key = (
            "order",
            order,
            salt,
            snap.version,
            lo,
            hi,
            query.filters,
            query.search,
            query.subject_slugs,
        )
        hit = self._cached(key)
        if hit is not None:
            return hit
        matching = self._matching(snap, lo, hi, query)
        if order == "asc":
            return matching  # already cached as such
        if order == "desc":
            return self._remember(key, matching[::-1])
        self.scans += 1
        rows = snap.rows
        salt_bytes = salt.encode()

        def scramble(pos: int) -> tuple[int, str]:
            event_id = rows[pos].id
            return zlib.crc32(salt_bytes + event_id.encode()), event_id

        return self._remember(key, sorted(matching, key=scramble))


def _bounds(keys: list[int], query: Query) -> tuple[int, int]:
    """[lo, hi) positions of createdAt within the query's bounds."""
    lo, hi = 0, len(keys)
    if query.start_us is not None:
        side = bisect.bisect_left if query.start_inclusive else bisect.bisect_right
        lo = side(keys, query.start_us)
    if query.end_us is not None:
        side = bisect.bisect_right if query.end_inclusive else bisect.bisect_left
        hi = side(keys, query.end_us)
    return lo, max(lo, hi)
