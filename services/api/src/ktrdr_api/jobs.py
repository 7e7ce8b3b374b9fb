"""A job's state as a fold of its events (no NATS here: the tests bite hardest).

Replaying ``ktrdr.evt.job.<id>.>`` in order and folding each event into a
``JobState`` gives the job's status, progress and result; nothing about a job
lives in the gateway's memory. The first terminal event (completed, failed,
cancelled) ends the job: later events cannot reopen it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from ktrdr_shared.messages import (
    CancelRequested,
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobPlanned,
    JobProgress,
    LoadResult,
    SegmentFailed,
    SegmentFetched,
    TrainingResult,
)


class JobStatus(enum.StrEnum):
    """Where a job stands: submitted and waiting, under way, or ended (the last three)."""

    QUEUED = "queued"
    ACCEPTED = "accepted"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Return True once the job has ended."""
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass
class JobState:
    """Everything the event log says about one job."""

    job_id: str
    status: JobStatus = JobStatus.QUEUED
    kind: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created: datetime | None = None
    updated: datetime | None = None
    ended: datetime | None = None
    events: int = 0
    progress_done: float | None = None
    progress_total: float | None = None
    progress_unit: str | None = None
    progress_message: str = ""
    gaps_analyzed: int | None = None
    cached_before: int | None = None
    segments_planned: int | None = None
    segments_fetched: int = 0
    segments_failed: int = 0
    bars_fetched: int = 0
    ib_requests: int = 0
    epoch: int | None = None
    epochs: int | None = None
    last_epoch: dict[str, Any] | None = None
    result: LoadResult | TrainingResult | None = None
    error_code: str | None = None
    error_message: str | None = None
    cancel_reason: str | None = None

    @property
    def execution_time_s(self) -> float | None:
        """Return the seconds from the first event to the end, once ended."""
        if self.created is None or self.ended is None:
            return None
        return max(0.0, (self.ended - self.created).total_seconds())

    @property
    def percent(self) -> float | None:
        """Return progress in percent, when a total is known."""
        if self.status is JobStatus.COMPLETED:
            return 100.0
        if self.progress_total and self.progress_done is not None:
            return round(min(100.0, 100.0 * self.progress_done / self.progress_total), 1)
        return None


def fold(job_id: str, events: Iterable[JobEvent]) -> JobState:
    """Return the state of ``job_id`` after ``events`` (in log order)."""
    state = JobState(job_id=job_id)
    for event in events:
        apply(state, event)
    return state


def apply(state: JobState, event: JobEvent) -> None:
    """Fold one event into ``state`` (events after the job ended are counted, not applied)."""
    state.events += 1
    if state.created is None or event.ts < state.created:
        state.created = event.ts
    if state.updated is None or event.ts > state.updated:
        state.updated = event.ts
    if state.status.is_terminal:
        return
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        handler(state, event)
    if state.status in (JobStatus.QUEUED, JobStatus.ACCEPTED) and not isinstance(
        event, JobAccepted | CancelRequested
    ):
        state.status = JobStatus.RUNNING
    if state.status.is_terminal:
        state.ended = event.ts


def _accepted(state: JobState, e: JobAccepted) -> None:
    state.kind = e.kind.value
    state.params = dict(e.params)
    if state.status is JobStatus.QUEUED:
        state.status = JobStatus.ACCEPTED


def _planned(state: JobState, e: JobPlanned) -> None:
    state.gaps_analyzed = e.gaps_analyzed
    state.cached_before = e.cached_before
    state.segments_planned = len(e.segments)


def _segment_fetched(state: JobState, e: SegmentFetched) -> None:
    state.segments_fetched += 1
    state.bars_fetched += e.bars
    state.ib_requests += e.ib_requests


def _segment_failed(state: JobState, e: SegmentFailed) -> None:
    state.segments_failed += 1


def _progress(state: JobState, e: JobProgress) -> None:
    state.progress_done, state.progress_total = e.done, e.total
    state.progress_unit, state.progress_message = e.unit, e.message


def _epoch(state: JobState, e: EpochCompleted) -> None:
    state.epoch, state.epochs = e.epoch, e.epochs
    state.last_epoch = msgspec.structs.asdict(e) | {"ts": e.ts}
    for key in ("type", "job_id"):
        state.last_epoch.pop(key, None)
    if state.progress_unit in (None, "epochs"):
        state.progress_done, state.progress_total, state.progress_unit = e.epoch, e.epochs, "epochs"


def _cancel_requested(state: JobState, e: CancelRequested) -> None:
    state.cancel_reason = e.reason
    state.status = JobStatus.CANCELLING


def _completed(state: JobState, e: JobCompleted) -> None:
    state.result = e.result
    state.status = JobStatus.COMPLETED
    if state.progress_total is not None:  # the last progress event may predate the end
        state.progress_done = state.progress_total
    if isinstance(e.result, LoadResult):
        state.gaps_analyzed = e.result.gaps_analyzed
        state.cached_before = e.result.cached_before


def _failed(state: JobState, e: JobFailed) -> None:
    state.error_code, state.error_message = e.code, e.message
    state.status = JobStatus.FAILED


def _cancelled(state: JobState, e: JobCancelled) -> None:
    state.cancel_reason = e.reason or state.cancel_reason
    state.status = JobStatus.CANCELLED


_HANDLERS: dict[type, Any] = {
    JobAccepted: _accepted,
    JobPlanned: _planned,
    SegmentFetched: _segment_fetched,
    SegmentFailed: _segment_failed,
    JobProgress: _progress,
    EpochCompleted: _epoch,
    CancelRequested: _cancel_requested,
    JobCompleted: _completed,
    JobFailed: _failed,
    JobCancelled: _cancelled,
}
