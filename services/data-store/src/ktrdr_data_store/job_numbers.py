"""A load's numbers, from its state alone (pure): what it fetched, sent and made durable.

Counts are what happened, never what was hoped: bars the connector published (a cancelled
or failed segment's too) and every request it sent to IB, retries included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ktrdr_shared.messages import FailedSegment, LoadResult, PlannedSegment, SegmentFetched
from ktrdr_shared.types import to_unix_nanos

if TYPE_CHECKING:
    from ktrdr_data_store.jobs import LoadState

Range = tuple[int, int]


def planned_requests(state: LoadState) -> int | None:
    """Return the requests the plan needs, once the connector has chunked every segment."""
    chunks: list[int] = []
    for segment in state.segments:
        outcome = state.outcomes.get(segment.segment_id)
        running = state.running.get(segment.segment_id)
        if isinstance(outcome, SegmentFetched):
            chunks.append(outcome.chunks)
        elif running is not None:
            chunks.append(running.chunks)
        elif outcome is None:
            return None
    return sum(chunks)


def segment_range(segment: PlannedSegment) -> Range:
    """Return a segment as a ns range."""
    return to_unix_nanos(segment.start), to_unix_nanos(segment.end)


def covered(ranges: list[Range], span: Range) -> int:
    """Return how many ns of ``span`` the sorted, disjoint ``ranges`` cover."""
    start, end = span
    return sum(max(0, min(end, b) - max(start, a)) for a, b in ranges)


def stored_fraction(state: LoadState, answered: list[Range]) -> float:
    """Return the share of the planned time that is durable in the store (0..1)."""
    spans = [segment_range(s) for s in state.segments]
    total = sum(b - a for a, b in spans)
    if total == 0:
        return 1.0
    return sum(covered(answered, span) for span in spans) / total


def unstored(state: LoadState, answered: list[Range]) -> list[PlannedSegment]:
    """Return the fetched segments whose bars are not all durable yet.

    The connector's chunks tile a segment and the ingest ledger records each chunk's window
    once its bars are durable, so a segment is stored exactly when the ledger covers it.
    """
    return [
        s
        for s, _ in state.fetched()
        if covered(answered, span := segment_range(s)) < span[1] - span[0]
    ]


def load_result(state: LoadState, not_stored: list[PlannedSegment]) -> LoadResult:
    """Return a load's result; segments never fully stored count as failed.

    The counts are what the job did: bars the connector published (a cancelled or failed
    segment's too) and every request it sent to IB, retries included.
    """
    missing = {s.segment_id for s in not_stored}
    fetched = [(s, o) for s, o in state.fetched() if s.segment_id not in missing]
    failed = [
        FailedSegment(
            segment_id=s.segment_id, start=s.start, end=s.end, code=o.code, message=o.message
        )
        for s, o in state.failed()
    ]
    failed += [
        FailedSegment(
            segment_id=s.segment_id,
            start=s.start,
            end=s.end,
            code="not_stored",
            message="the connector sent the bars but not all became durable; run the load again",
        )
        for s in not_stored
    ]
    return LoadResult(
        fetched_bars=state.bars_fetched
        - sum(o.bars for s, o in state.fetched() if s.segment_id in missing),
        cached_before=state.planned.cached_before if state.planned else 0,
        gaps_analyzed=state.planned.gaps_analyzed if state.planned else 0,
        segments_fetched=len(fetched),
        ib_requests_made=state.ib_requests,
        failed_segments=failed,
    )
