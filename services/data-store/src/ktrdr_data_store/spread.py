"""Cut a load's segments into pieces that several ib-connectors can fetch at once (pure).

A segment is one ``FetchBars``: one connector takes it and sends its IB requests in turn. A
year of 1-minute bars is one segment of 53 requests, so with three gateways in the pool two
of them would idle while the third works through it. ``spread`` cuts long segments into
pieces of at most ``per_piece`` requests each.

The cuts fall on the boundaries the connector itself cuts requests at (``request_span_ns``
counted back from the segment's end), so the pieces together make exactly the requests the
whole segment would have made: spreading costs IB's pacing budget nothing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from ktrdr_shared.ib_chunks import request_span_ns
from ktrdr_shared.types import Timeframe

Range = tuple[int, int]

PIECES_PER_CONNECTOR = 2  # each connector gets work to start on while its other piece waits


def requests_of(timeframe: Timeframe, segment: Range) -> int:
    """Return how many IB requests the connector cuts ``segment`` into."""
    start, end = segment
    return max(1, math.ceil((end - start) / request_span_ns(timeframe)))


def piece_requests(
    timeframe: Timeframe, segments: Sequence[Range], *, connectors: int, max_requests: int
) -> int:
    """Return the requests per piece that give each connector about two pieces of the load.

    Never more than ``max_requests`` (so a long load keeps every connector busy as pieces
    finish) and never fewer than one.
    """
    total = sum(requests_of(timeframe, s) for s in segments)
    wanted = max(1, connectors) * PIECES_PER_CONNECTOR
    return max(1, min(max_requests, math.ceil(total / wanted)))


def spread(timeframe: Timeframe, segments: Sequence[Range], *, per_piece: int) -> list[Range]:
    """Return ``segments`` cut into pieces of at most ``per_piece`` IB requests, in order.

    Each cut lies a whole number of ``per_piece`` request spans before its segment's end, so
    every piece's requests are the ones the connector would have cut from the whole segment.

    Raises:
        ValueError: ``per_piece`` is below 1.
    """
    if per_piece < 1:
        raise ValueError(f"per_piece must be at least 1, not {per_piece}")
    step = per_piece * request_span_ns(timeframe)
    pieces: list[Range] = []
    for start, end in segments:
        cuts = range(end - step, start, -step)
        edges = [start, *reversed(cuts), end]
        pieces.extend(itertools.pairwise(edges))
    return pieces


__all__ = ["PIECES_PER_CONNECTOR", "piece_requests", "requests_of", "spread"]
