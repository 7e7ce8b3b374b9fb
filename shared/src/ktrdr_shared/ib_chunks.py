"""How IB's historical requests are cut per bar size: the one table both sides read.

The ib-connector cuts each segment into requests of at most ``ChunkRule.span_ns`` counted
back from the segment's end (``ktrdr_ib_connector.chunking``); the data-store cuts a long
segment into pieces at the same boundaries (``ktrdr_data_store.spread``), so spreading a load
across several connectors sends IB exactly the requests one connector would have sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from ktrdr_shared.types import Timeframe

NANOS = 1_000_000_000


@dataclass(frozen=True)
class ChunkRule:
    """How requests for one bar size are cut.

    Attributes:
        unit: IB duration unit letter (S, W or Y).
        unit_s: the shortest clock length of one unit, in seconds.
        max_units: most units per request.
        min_units: fewest units IB accepts (30 for seconds).
        lead_s: extra look-back so a bar stamped at its session date (daily,
            weekly) but opening the evening before is not cut off at an edge.
    """

    unit: str
    unit_s: int
    max_units: int
    min_units: int = 1
    lead_s: int = 0

    @property
    def span_ns(self) -> int:
        """Return the longest clock span one request covers, in nanoseconds."""
        return self.max_units * self.unit_s * NANOS


_WEEK = 7 * 86_400
_YEAR = 365 * 86_400
CHUNK_RULES: dict[Timeframe, ChunkRule] = {
    Timeframe.S1: ChunkRule("S", 1, 1_800, min_units=30),
    Timeframe.S5: ChunkRule("S", 1, 3_600, min_units=30),
    Timeframe.S15: ChunkRule("S", 1, 14_400, min_units=30),
    Timeframe.S30: ChunkRule("S", 1, 28_800, min_units=30),
    Timeframe.M1: ChunkRule("W", _WEEK, 1),
    Timeframe.M5: ChunkRule("W", _WEEK, 4),
    Timeframe.M15: ChunkRule("W", _WEEK, 13),
    Timeframe.M30: ChunkRule("W", _WEEK, 26),
    Timeframe.H1: ChunkRule("W", _WEEK, 52),
    Timeframe.H4: ChunkRule("W", _WEEK, 52),
    Timeframe.D1: ChunkRule("Y", _YEAR, 10, lead_s=3 * 86_400),
    Timeframe.W1: ChunkRule("Y", _YEAR, 20, lead_s=10 * 86_400),
}


def request_span_ns(timeframe: Timeframe) -> int:
    """Return the longest span one IB request for ``timeframe`` bars covers (ns)."""
    return CHUNK_RULES[timeframe].span_ns


__all__ = ["CHUNK_RULES", "ChunkRule", "request_span_ns"]
