"""Chunking: fewest IB-legal requests, rounded up, covering the range exactly once."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_ib_connector.chunking import BAR_SIZE, CHUNK_RULES, plan_chunks
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

NS = 1_000_000_000
T0 = 1_704_205_800 * NS  # 2024-01-02 14:30 UTC


def test_every_timeframe_maps_to_an_ib_bar_size() -> None:
    assert set(BAR_SIZE) == set(Timeframe) == set(CHUNK_RULES)
    assert BAR_SIZE[Timeframe.M1] == "1 min"
    assert BAR_SIZE[Timeframe.S30] == "30 secs"


@pytest.mark.parametrize(
    ("timeframe", "span_s", "expected"),
    [
        (Timeframe.S1, 1_800, ["1800 S"]),
        (Timeframe.S1, 1_801, ["30 S", "1800 S"]),  # the remainder rounds up to IB's minimum
        (Timeframe.S1, 3_600, ["1800 S", "1800 S"]),
        (Timeframe.S30, 86_400, ["28800 S"] * 3),
        (Timeframe.M1, 86_400, ["1 W"]),
        (Timeframe.M1, 8 * 86_400, ["1 W", "1 W"]),
        (Timeframe.H1, 365 * 86_400, ["1 W", "52 W"]),
        (Timeframe.D1, 3 * 365 * 86_400, ["4 Y"]),  # 3 years plus the lead, rounded up
    ],
)
def test_chunk_durations(timeframe: Timeframe, span_s: int, expected: list[str]) -> None:
    chunks = plan_chunks(timeframe, T0, T0 + span_s * NS)
    assert [c.duration for c in chunks] == expected


def test_end_text_is_explicit_utc() -> None:
    [chunk] = plan_chunks(Timeframe.M1, T0, T0 + 3600 * NS)
    assert chunk.end_text == "20240102-15:30:00"
    assert chunk.bar_size == "1 min"


def test_empty_range_is_refused() -> None:
    with pytest.raises(ValueError, match="empty range"):
        plan_chunks(Timeframe.M1, T0, T0)


@settings(deadline=None)
@given(
    st.sampled_from(list(Timeframe)),
    st.integers(min_value=0, max_value=10 * 365 * 86_400),
    st.integers(min_value=1, max_value=3 * 365 * 86_400),
)
def test_chunks_tile_the_range_and_each_request_reaches_its_start(
    timeframe: Timeframe, offset_s: int, span_s: int
) -> None:
    start, end = T0 + offset_s * NS, T0 + (offset_s + span_s) * NS
    chunks = plan_chunks(timeframe, start, end)
    rule = CHUNK_RULES[timeframe]
    assert chunks[0].start == start
    assert chunks[-1].end == end
    for before, after in itertools.pairwise(chunks):
        assert before.end == after.start  # adjacent: no overlap, no hole
    for chunk in chunks:
        count, unit = chunk.duration.split()
        assert unit == rule.unit
        assert rule.min_units <= int(count) <= max(rule.max_units + 1, rule.min_units)
        reach = int(count) * rule.unit_s * NS
        assert chunk.end - reach <= chunk.start  # rounded up: the request covers its slice
    full = math.ceil((end - start) / (rule.max_units * rule.unit_s * NS))
    assert len(chunks) == full  # the fewest requests
