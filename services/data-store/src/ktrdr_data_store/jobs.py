"""A data load's state, folded from its events alone (pure).

The data-store keeps nothing about a job that is not in the event log: a restart folds
``ktrdr.evt.job.>`` again and every unfinished load carries on from where its events say
it was. Events may repeat (at-least-once publication); folding one twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
from ktrdr_shared.messages import (
    TERMINAL_JOB_EVENTS,
    CancelRequested,
    FailedSegment,
    JobAccepted,
    JobEvent,
    JobKind,
    JobPlanned,
    LoadData,
    LoadResult,
    PlannedSegment,
    SegmentFailed,
    SegmentFetched,
)
from ktrdr_shared.types import to_unix_nanos

Range = tuple[int, int]


@dataclass
class LoadState:
    """Everything known of one data load, from its events."""

    job_id: str
    command: LoadData
    planned: JobPlanned | None = None
    outcomes: dict[str, SegmentFetched | SegmentFailed] = field(default_factory=dict)
    cancel: CancelRequested | None = None
    finished: bool = False

    @property
    def segments(self) -> list[PlannedSegment]:
        """Return the planned segments (none before planning)."""
        return [] if self.planned is None else self.planned.segments

    def pending_segments(self) -> list[PlannedSegment]:
        """Return the segments the connector has not reported on yet."""
        return [s for s in self.segments if s.segment_id not in self.outcomes]

    def fetched(self) -> list[tuple[PlannedSegment, SegmentFetched]]:
        """Return the fetched segments with their reports."""
        return [(s, o) for s in self.segments
                if isinstance(o := self.outcomes.get(s.segment_id), SegmentFetched)]  # fmt: skip

    def failed(self) -> list[tuple[PlannedSegment, SegmentFailed]]:
        """Return the failed segments with their reports."""
        return [(s, o) for s in self.segments
                if isinstance(o := self.outcomes.get(s.segment_id), SegmentFailed)]  # fmt: skip


def accept(event: JobAccepted) -> LoadState | None:
    """Return the state a load starts in, or None for another kind of job.

    Raises:
        msgspec.ValidationError: if the event's params are not a ``LoadData``.
    """
    if event.kind is not JobKind.DATA_LOAD:
        return None
    command = msgspec.convert(event.params, LoadData)
    return LoadState(job_id=event.job_id, command=command)


def apply(state: LoadState, event: JobEvent) -> None:
    """Fold one event into the state of its job (the first report of a segment stands)."""
    if isinstance(event, JobPlanned) and state.planned is None:
        state.planned = event
    elif isinstance(event, SegmentFetched | SegmentFailed):
        state.outcomes.setdefault(event.segment_id, event)
    elif isinstance(event, CancelRequested) and state.cancel is None:
        state.cancel = event
    elif isinstance(event, TERMINAL_JOB_EVENTS):
        state.finished = True


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
    return [s for s, _ in state.fetched()
            if covered(answered, span := segment_range(s)) < span[1] - span[0]]  # fmt: skip


def load_result(state: LoadState, not_stored: list[PlannedSegment]) -> LoadResult:
    """Return a finished load's result; segments never fully stored count as failed."""
    assert state.planned is not None
    missing = {s.segment_id for s in not_stored}
    fetched = [(s, o) for s, o in state.fetched() if s.segment_id not in missing]
    failed = [FailedSegment(segment_id=s.segment_id, start=s.start, end=s.end, code=o.code,
                            message=o.message) for s, o in state.failed()]  # fmt: skip
    failed += [FailedSegment(segment_id=s.segment_id, start=s.start, end=s.end, code="not_stored",
                             message="the connector sent the bars but not all became durable; "
                             "run the load again") for s in not_stored]  # fmt: skip
    return LoadResult(
        fetched_bars=sum(o.bars for _, o in fetched),
        cached_before=state.planned.cached_before,
        gaps_analyzed=state.planned.gaps_analyzed,
        segments_fetched=len(fetched),
        ib_requests_made=sum(o.ib_requests for _, o in state.fetched()),
        failed_segments=failed,
    )
