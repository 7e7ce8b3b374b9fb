"""Split a range ``[start, end)`` into the fewest IB-legal historical requests (pure).

Each request is an ``endDateTime`` plus a duration counted back from it. The
duration is always **rounded up** (never down), so the union of the requests
covers the range; each chunk then keeps only the bars whose open time falls
in its own ``[start, end)``, so adjacent chunks share no bar and lose none.

Units are chosen for unambiguous, clock-time windows: seconds (``S``) and
weeks (``W``) count back in clock time, and years (``Y``) in calendar years,
which are never shorter than 365 days. IB's ``D`` counts trading sessions and
``M`` calendar months, so they are avoided. Per-request sizes follow IB's
step-size tables, kept to a few thousand bars a request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ktrdr_shared.ib_chunks import CHUNK_RULES
from ktrdr_shared.types import Timeframe

NANOS = 1_000_000_000

# Timeframe -> IB barSizeSetting.
BAR_SIZE: dict[Timeframe, str] = {
    Timeframe.S1: "1 secs", Timeframe.S5: "5 secs", Timeframe.S15: "15 secs",
    Timeframe.S30: "30 secs", Timeframe.M1: "1 min", Timeframe.M5: "5 mins",
    Timeframe.M15: "15 mins", Timeframe.M30: "30 mins", Timeframe.H1: "1 hour",
    Timeframe.H4: "4 hours", Timeframe.D1: "1 day", Timeframe.W1: "1 week",
}  # fmt: skip


@dataclass(frozen=True)
class Chunk:
    """One IB request and the slice of the range it is responsible for.

    Attributes:
        start: first instant (ns) whose bars this chunk keeps.
        end: the request's ``endDateTime`` (ns); bars opening before it are kept.
        duration: IB ``durationStr`` (e.g. ``"1800 S"``, ``"1 W"``, ``"2 Y"``).
        bar_size: IB ``barSizeSetting``.
    """

    start: int
    end: int
    duration: str
    bar_size: str

    @property
    def end_text(self) -> str:
        """Return ``endDateTime`` as IB's explicit-UTC form ``yyyyMMdd-HH:mm:ss``."""
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=math.ceil(self.end / NANOS))
        return moment.strftime("%Y%m%d-%H:%M:%S")


def plan_chunks(timeframe: Timeframe, start: int, end: int) -> list[Chunk]:
    """Return the fewest IB-legal requests covering ``[start, end)`` (ns), oldest first.

    Raises:
        ValueError: for an empty or inverted range.
    """
    if not start < end:
        raise ValueError(f"empty range: start {start} is not before end {end}")
    rule, bar_size = CHUNK_RULES[timeframe], BAR_SIZE[timeframe]
    max_span = rule.span_ns
    chunks: list[Chunk] = []
    chunk_end = end
    while chunk_end > start:
        chunk_start = max(start, chunk_end - max_span)
        reach_s = math.ceil((chunk_end - chunk_start) / NANOS) + rule.lead_s
        units = max(rule.min_units, math.ceil(reach_s / rule.unit_s))
        chunks.append(Chunk(chunk_start, chunk_end, f"{units} {rule.unit}", bar_size))
        chunk_end = chunk_start
    chunks.reverse()
    return chunks


def is_hard_paced(timeframe: Timeframe) -> bool:
    """Return whether IB's hard pacing rules apply (bars of 30 seconds or less)."""
    return timeframe.seconds <= 30
