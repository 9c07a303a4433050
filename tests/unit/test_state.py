"""The run's range from the state: lookback, explicit bounds, marks that never over-reach."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tfy_audit._core.errors import UsageError
from tfy_audit._core.settings import HISTORY_START
from tfy_audit._service.client import AuditLogFilters
from tfy_audit._service.planning import Chunk
from tfy_audit._source.state import (
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


# -- filter-set keys ---------------------------------------------------------------------------

AMBIGUOUS = AuditLogFilters(action="CREATE_APP&resource_type=application")
SPLIT = AuditLogFilters(action="CREATE_APP", resource_type="application")


def _legacy_key(filters: AuditLogFilters) -> str:
    """The key as tfy-audit wrote it before keys were escaped: `&`-joined `k=v`, raw."""
    d = filters.as_dict()
    return "&".join(f"{k}={d[k]}" for k in sorted(d)) if d else "all"


def _entry(filters: AuditLogFilters, mark: datetime) -> dict[str, object]:
    return {"filters": filters.as_dict(), "covered_until": mark.isoformat()}


def test_filter_set_keys_are_unambiguous_for_every_value() -> None:
    tricky = ["a", "a&b", "a=b", "a%26b", "a%b", "%", "&", "=", "a&action=b", "x y", "ü", "a%3Db"]
    sets = [AMBIGUOUS, SPLIT, AuditLogFilters()]
    sets += [AuditLogFilters(action=v) for v in tricky]
    sets += [AuditLogFilters(action="a", search=v) for v in tricky]
    sets += [AuditLogFilters(search=v) for v in tricky]
    keys = [f.key for f in sets]
    assert len(set(keys)) == len(sets), keys
    assert AMBIGUOUS.key != SPLIT.key


def test_a_key_without_special_characters_is_unchanged_by_the_upgrade() -> None:
    for filters in (
        AuditLogFilters(),
        AuditLogFilters(action="CREATE_APP"),
        SPLIT,
        AuditLogFilters(search="deploy ml-model", cluster_id="c-1"),
    ):
        assert filters.key == _legacy_key(filters)


def test_a_mark_stored_under_a_legacy_key_is_kept() -> None:
    """State written before keys were escaped: each filter set finds its own mark, and one
    whose legacy key collided with another set's never takes that set's mark."""
    percent = AuditLogFilters(search="100%")
    state: dict[str, object] = {
        "streams": {
            _legacy_key(AMBIGUOUS): _entry(AMBIGUOUS, NOW),
            _legacy_key(percent): _entry(percent, datetime(2026, 1, 2, tzinfo=UTC)),
        }
    }
    assert _legacy_key(AMBIGUOUS) == _legacy_key(SPLIT)  # what the old keys could not tell apart
    assert covered_until(stream_state(state, SPLIT)) is None
    assert covered_until(stream_state(state, AMBIGUOUS)) == NOW
    assert covered_until(stream_state(state, percent)) == datetime(2026, 1, 2, tzinfo=UTC)
    streams = state["streams"]
    assert isinstance(streams, dict)
    assert set(streams) == {AMBIGUOUS.key, SPLIT.key, percent.key}
    assert streams[SPLIT.key]["filters"] == SPLIT.as_dict()


def test_a_set_synced_under_both_keys_keeps_its_later_mark_and_hands_none_on() -> None:
    later = NOW + timedelta(days=1)
    state: dict[str, object] = {
        "streams": {
            _legacy_key(AMBIGUOUS): _entry(AMBIGUOUS, later),
            AMBIGUOUS.key: _entry(AMBIGUOUS, NOW),
        }
    }
    assert covered_until(stream_state(state, SPLIT)) is None
    assert covered_until(stream_state(state, AMBIGUOUS)) == later
