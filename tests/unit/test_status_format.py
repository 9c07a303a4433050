"""How `tfy-audit status` writes a lag."""

from __future__ import annotations

import pytest
from tfy_audit.status import format_lag


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
