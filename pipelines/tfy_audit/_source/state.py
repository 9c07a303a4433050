"""The sync's incremental state and how a run's time range follows from it.

State lives in dlt's source state, one entry per filter set (`AuditLogFilters.key`), so a
filtered sync never moves the high-water mark of an unfiltered one. The mark, `covered_until`,
means: every event created before it had been read when that chunk was loaded. It is only
moved by a range that starts at or before it, so a one-off `--start` in the future of the mark
never makes the gap before it look loaded.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tfy_audit._core.errors import UsageError
from tfy_audit._core.settings import HISTORY_START
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._service.planning import Chunk, RunRange
from tfy_audit._service.windows import floor_ms

if TYPE_CHECKING:
    from tfy_audit._core.options import SyncOptions

logger = logging.getLogger(__name__)

STREAMS_KEY = "streams"


def stream_state(
    source_state: MutableMapping[str, Any], filters: AuditLogFilters
) -> dict[str, Any]:
    streams = source_state.setdefault(STREAMS_KEY, {})
    _rekey(streams)
    entry: dict[str, Any] = streams.setdefault(filters.key, {"filters": filters.as_dict()})
    return entry


def _rekey(streams: MutableMapping[str, Any]) -> None:
    """Move each entry to the key of the filters it records. Keys written before values were
    escaped (`AuditLogFilters.key`) could be shared by two filter sets (`action=a&b` alone, or
    `action=a` with `b`): an entry stays with the filters it was made for, so an upgrade keeps
    every mark and never hands one set's mark to another."""
    for key in list(streams):
        entry = streams[key]
        recorded = entry.get("filters") if isinstance(entry, dict) else None
        if not isinstance(recorded, dict):
            continue
        try:
            own = AuditLogFilters.from_mapping(recorded).key
        except UsageError:  # a filter this version does not know: left where it is
            continue
        if own == key:
            continue
        moved = streams.pop(key)
        kept = streams.setdefault(own, moved)
        if kept is not moved:  # that set synced under both keys: its later mark holds for it
            marks = [m for m in (covered_until(kept), covered_until(moved)) if m is not None]
            if marks:
                kept["covered_until"] = max(marks).isoformat()
        logger.info("filter set %r: its mark moved from key %r to %r", recorded, key, own)


def covered_until(entry: MutableMapping[str, Any]) -> datetime | None:
    value = entry.get("covered_until")
    if not value:
        return None
    return datetime.fromisoformat(value).astimezone(UTC)


FIRST_START_KEY = "first_start"


def first_start(entry: MutableMapping[str, Any]) -> datetime | None:
    """Where the filter set's first sync started (its `--since`, or the start of history):
    what `verify`, `status` and `report` take as the first day the warehouse holds. Set with
    the first chunk that moves the mark, in the same load package, so the destination's copy
    of the state carries it to another machine. None for state older than this key."""
    value = entry.get(FIRST_START_KEY)
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def covered_from(entry: MutableMapping[str, Any]) -> datetime | None:
    """Where the range read without a gap up to the mark starts (from the first run, or a range
    reaching back to it); None for a state written before it was recorded."""
    value = entry.get("covered_from")
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


LOADED_UNTIL_KEY = "loaded_until"


def loaded_until(source_state: MutableMapping[str, Any]) -> datetime | None:
    """No row loaded by any sync of this pipeline (any filters) has a createdAt at or after
    this; None when nothing was loaded yet."""
    value = source_state.get(LOADED_UNTIL_KEY)
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


LAST_CHUNK_START_KEY = "last_chunk_start"


def last_chunk_start(source_state: MutableMapping[str, Any]) -> datetime | None:
    """Where the most recently loaded chunk began: a crash can only have doubled rows after it."""
    value = source_state.get(LAST_CHUNK_START_KEY)
    return datetime.fromisoformat(value).astimezone(UTC) if value else None


def advance(
    source_state: MutableMapping[str, Any],
    filters: AuditLogFilters,
    chunk: Chunk,
    *,
    incomplete_from: datetime | None = None,
) -> None:
    """Record a chunk as loaded; called last while extracting it, so the change is committed
    in the same load package as its rows. The mark stops at `incomplete_from`, the start of the
    first window that could not be read completely, so the next run reads it again."""
    seen_until = loaded_until(source_state)
    if seen_until is None or chunk.end > seen_until:
        source_state[LOADED_UNTIL_KEY] = chunk.end.isoformat()
    source_state[LAST_CHUNK_START_KEY] = chunk.start.isoformat()
    if not chunk.advances_state:
        return
    entry = stream_state(source_state, filters)
    current = covered_until(entry)
    if current is None and FIRST_START_KEY not in entry:
        entry[FIRST_START_KEY] = chunk.start.isoformat()
    mark = min(chunk.end, incomplete_from) if incomplete_from else chunk.end
    # the range read without a gap up to the mark: it starts with the first chunk that moves
    # the mark, and grows back only by a chunk that joins it (a state from before it was
    # recorded gets none: status then reads the windows alone)
    since = covered_from(entry)
    first = current is None and mark > chunk.start
    if first or (since is not None and chunk.start < since <= chunk.end):
        entry["covered_from"] = chunk.start.isoformat()
    if current is None or mark > current:
        entry["covered_until"] = mark.isoformat()


def run_range(entry: MutableMapping[str, Any], options: SyncOptions, now: datetime) -> RunRange:
    """The range `options` ask of a filter set whose state is `entry`, at `now`: what
    `tfy-audit sync` and the plain source both read."""
    return resolve_range(
        entry,
        start=options.start,
        end=options.end,
        lookback=options.lookback,
        now=now,
        first_start=options.first_run_start(now),
    )


def resolve_range(
    entry: MutableMapping[str, Any],
    *,
    start: datetime | None,
    end: datetime | None,
    lookback: timedelta,
    now: datetime | None = None,
    first_start: datetime = HISTORY_START,
) -> RunRange:
    """The range of this run: explicit bounds, else from the mark minus the lookback to now.
    An `end` in the future is cut to now: the mark must never pass events not yet created."""
    now = now or datetime.now(UTC)
    explicit_end = end
    end = floor_ms(min(end, now) if end else now)
    mark = covered_until(entry)
    if start is None:
        start = first_start if mark is None else mark - lookback
        advances = True
    else:
        advances = (start <= mark) if mark is not None else (start <= first_start)
    if end <= start:
        if explicit_end is None:
            raise UsageError(
                f"--start ({start.isoformat()}) is in the future; pass a --start before now"
            )
        raise UsageError(
            f"--end ({end.isoformat()}) is not after --start ({start.isoformat()}); pass an --end "
            "later than --start"
        )
    return RunRange(start=start, end=end, advances_state=advances)
