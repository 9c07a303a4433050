"""The run's range from the state: lookback, explicit bounds, marks that never over-reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tfy_audit.client import AuditLogFilters
from tfy_audit.errors import UsageError
from tfy_audit.planning import Chunk
from tfy_audit.settings import HISTORY_START
from tfy_audit.state import (
    advance,
    covered_until,
    first_start,
    loaded_until,
    resolve_range,
    stream_state,
)

NOW = datetime(2026, 11, 25, 12, 0, 0, 123_456, tzinfo=UTC)
LOOKBACK = timedelta(minutes=10)


def test_first_run_reads_the_whole_history_up_to_now() -> None:
    run = resolve_range({}, start=None, end=None, lookback=LOOKBACK, now=NOW)
    assert (run.start, run.end, run.advances_state) == (
        HISTORY_START,
        NOW.replace(microsecond=123_000),
        True,
    )


def test_later_runs_start_a_lookback_behind_the_mark() -> None:
    entry = {"covered_until": (NOW - timedelta(hours=1)).isoformat()}
    run = resolve_range(entry, start=None, end=None, lookback=LOOKBACK, now=NOW)
    assert run.start == NOW - timedelta(hours=1) - LOOKBACK


def test_an_end_in_the_future_is_cut_to_now() -> None:
    run = resolve_range(
        {}, start=NOW - timedelta(hours=1), end=NOW + timedelta(days=1), lookback=LOOKBACK, now=NOW
    )
    assert run.end == NOW.replace(microsecond=123_000)


def test_a_range_after_the_mark_does_not_move_it() -> None:
    entry = {"covered_until": (NOW - timedelta(days=2)).isoformat()}
    run = resolve_range(entry, start=NOW - timedelta(days=1), end=None, lookback=LOOKBACK, now=NOW)
    assert not run.advances_state
    with pytest.raises(UsageError, match="not after"):
        resolve_range({}, start=NOW, end=NOW - timedelta(days=1), lookback=LOOKBACK, now=NOW)


def test_advance_keeps_marks_per_filter_set_and_one_loaded_bound() -> None:
    state: dict[str, object] = {}
    secrets = AuditLogFilters(resource_type="secret")
    advance(state, secrets, Chunk(HISTORY_START, NOW, [], advances_state=True))
    assert covered_until(stream_state(state, secrets)) == NOW
    assert covered_until(stream_state(state, AuditLogFilters())) is None
    assert loaded_until(state) == NOW
    # a one-off range that does not advance still raises the loaded bound
    later = NOW + timedelta(hours=1)
    advance(state, AuditLogFilters(), Chunk(NOW, later, [], advances_state=False))
    assert covered_until(stream_state(state, AuditLogFilters())) is None
    assert loaded_until(state) == later


def test_a_start_in_the_future_says_so() -> None:
    with pytest.raises(UsageError, match="is in the future"):
        resolve_range({}, start=NOW + timedelta(days=1), end=None, lookback=LOOKBACK, now=NOW)


def test_the_first_chunk_that_moves_the_mark_records_where_the_first_sync_started() -> None:
    state: dict[str, object] = {}
    filters = AuditLogFilters()
    since = NOW - timedelta(days=30)
    # a one-off range that leaves the mark alone records nothing
    advance(state, filters, Chunk(NOW - timedelta(days=2), NOW, [], advances_state=False))
    assert first_start(stream_state(state, filters)) is None
    advance(state, filters, Chunk(since, NOW - timedelta(days=1), [], advances_state=True))
    advance(state, filters, Chunk(NOW - timedelta(days=1), NOW, [], advances_state=True))
    assert first_start(stream_state(state, filters)) == since
    # another filter set keeps its own
    assert first_start(stream_state(state, AuditLogFilters(action="x"))) is None
