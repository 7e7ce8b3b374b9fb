"""Spreading a segment over connectors sends IB exactly the requests one connector would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_data_store.spread import spread
from ktrdr_ib_connector.chunking import plan_chunks
from ktrdr_shared.types import Timeframe

NANOS = 10**9
SPAN_2024 = (1_704_067_200 * NANOS, 1_735_689_600 * NANOS)


@settings(max_examples=300, deadline=None)
@given(
    timeframe=st.sampled_from(list(Timeframe)),
    start=st.integers(*SPAN_2024),
    length=st.integers(1, 400 * 86_400 * NANOS),
    per_piece=st.integers(1, 20),
)
def test_the_pieces_requests_are_the_whole_segments(
    timeframe: Timeframe, start: int, length: int, per_piece: int
) -> None:
    whole = plan_chunks(timeframe, start, start + length)
    pieces = spread(timeframe, [(start, start + length)], per_piece=per_piece)
    assert [c for a, b in pieces for c in plan_chunks(timeframe, a, b)] == whole
    assert all(len(plan_chunks(timeframe, a, b)) <= per_piece for a, b in pieces)
