"""Wide tables go to dlt in slices of about YIELD_BYTES (extract.py), so a load file holds at
most about the file cut plus one slice."""

from __future__ import annotations

import pyarrow as pa
from tfy_audit._source import extract


def test_a_wide_table_is_handed_over_in_slices_of_yield_bytes() -> None:
    wide = pa.table({"id": [f"e{i}" for i in range(100)], "v": ["x" * 400_000] * 100})
    pieces = list(extract._slices(wide))
    assert len(pieces) >= 5
    assert all(p.num_rows * 400_000 <= extract.YIELD_BYTES for p in pieces)
    assert pa.concat_tables(pieces).equals(wide)  # every row once, in order


def test_a_narrow_table_and_a_single_large_row_are_handed_over_whole() -> None:
    narrow = pa.table({"id": ["a", "b"], "v": ["x", "y"]})
    assert list(extract._slices(narrow)) == [narrow]
    one = pa.table({"id": ["big"], "v": ["x" * (2 * extract.YIELD_BYTES)]})
    assert list(extract._slices(one)) == [one]
