"""How `tfy-audit status` writes a lag."""

from __future__ import annotations

import pytest
from tfy_audit._cli.commands.status import format_lag


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45.9, "45s"),
        (750, "12m 30s"),
        (3 * 3600 + 5 * 60 + 7, "3h 05m"),
        (2 * 86_400 + 4 * 3600 + 59, "2d 4h"),
    ],
)
def test_format_lag(seconds: float, text: str) -> None:
    assert format_lag(seconds) == text


def test_covered_ranges_are_the_windows_read_and_the_range_up_to_the_mark() -> None:
    from datetime import UTC, datetime

    from tfy_audit._engine.status import covered_ranges

    def d(day: int, hour: int = 0) -> datetime:
        return datetime(2026, 11, day, hour, tzinfo=UTC)

    one_off, first_run = (d(1), d(8)), (d(20), d(25))
    # a no-op run recorded no window but moved the mark from the 25th to the 27th
    assert covered_ranges([first_run, one_off], d(27), d(20)) == [one_off, (d(20), d(27))]
    # windows that touch or overlap are one range (the lookback re-reads the mark's tail)
    touching = [(d(1), d(2)), (d(2), d(3)), (d(2, 12), d(4))]
    assert covered_ranges(touching, d(4), d(1)) == [(d(1), d(4))]
    # a state from before `covered_from`: the windows, the last one reaching the mark
    assert covered_ranges([one_off, first_run], d(27), None) == [one_off, (d(20), d(27))]
    assert covered_ranges([], None, None) == []


def test_the_text_names_the_gaps_between_the_ranges() -> None:
    from tfy_audit._cli.commands.status import ranges_text as _ranges_text

    ranges = [{"start": "a", "end": "b"}, {"start": "c", "end": "d"}]
    assert _ranges_text(ranges) == "a .. b, c .. d (not read: b .. c)"
    assert _ranges_text(ranges[:1]) == "a .. b"
    assert _ranges_text([]) == "nothing yet"
