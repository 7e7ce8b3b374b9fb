"""A job's state as a fold of its events (no NATS here: the tests bite hardest).

Replaying ``ktrdr.evt.job.*.<id>.>`` in order and folding each event into a
``JobState`` gives the job's status, progress and result; nothing about a job
lives in the gateway's memory. The first terminal event (completed, failed,
cancelled) ends the job: later events cannot reopen it.

Counts are the segments' own: a segment that ended (fetched, failed or cancelled)
counts the bars and IB requests it reported, once; a running segment counts its
latest ``segment_progress`` until it ends, so live counts neither lag nor double.
An event type this gateway does not know is counted and otherwise ignored.
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
    JobKind,
    JobPlanned,
    JobProgress,
    LoadResult,
    ProgressReason,
    SegmentFailed,
    SegmentFetched,
    SegmentProgress,
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
    progress_reason: ProgressReason | None = None
    progress_since: datetime | None = None
    progress_until: datetime | None = None
    progress_eta: datetime | None = None
    progress_rate: float | None = None
    progress_bars: int | None = None
    requests_done: int | None = None
    requests_planned: int | None = None
    notes: list[str] = field(default_factory=list)
    gaps_analyzed: int | None = None
    cached_before: int | None = None
    segments_planned: int | None = None
    segments_fetched: int = 0
    segments_failed: int = 0
    ended_segments_bars: int = 0
    ended_segments_requests: int = 0
    running_segments: dict[str, SegmentProgress] = field(default_factory=dict)
    ended_segments: set[str] = field(default_factory=set)
    epoch: int | None = None
    epochs: int | None = None
    last_epoch: dict[str, Any] | None = None
    result: LoadResult | TrainingResult | None = None
    error_code: str | None = None
    error_message: str | None = None
    cancel_reason: str | None = None

    @property
    def bars_fetched(self) -> int:
        """Return the bars the job's segments published: ended ones, then running ones."""
        return self.ended_segments_bars + sum(p.bars for p in self.running_segments.values())

    @property
    def ib_requests(self) -> int:
        """Return the requests sent to IB for the job's segments, retries included."""
        running = sum(p.ib_requests for p in self.running_segments.values())
        return self.ended_segments_requests + running

    @property
    def bars(self) -> int | None:
        """Return the bars fetched so far: what the job reported or its segments counted."""
        return _larger(self.progress_bars, self.bars_fetched if self._counts_segments else None)

    @property
    def requests(self) -> int | None:
        """Return the IB requests so far: what the job reported or its segments counted."""
        return _larger(self.requests_done, self.ib_requests if self._counts_segments else None)

    @property
    def _counts_segments(self) -> bool:
        return self.kind == JobKind.DATA_LOAD or self.segments_planned is not None

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
    state.notes = list(e.notes)


def _segment_progress(state: JobState, e: SegmentProgress) -> None:
    if e.segment_id not in state.ended_segments:  # a late account of an ended segment
        state.running_segments[e.segment_id] = e


def _segment_ended(state: JobState, segment_id: str, bars: int, ib_requests: int) -> None:
    state.running_segments.pop(segment_id, None)
    state.ended_segments.add(segment_id)
    state.ended_segments_bars += bars
    state.ended_segments_requests += ib_requests


def _segment_fetched(state: JobState, e: SegmentFetched) -> None:
    if e.segment_id in state.ended_segments:  # reported again (a redelivered command): the
        return  # first report counts, as in the data-store's fold
    state.segments_fetched += 1
    _segment_ended(state, e.segment_id, e.bars, e.ib_requests)


def _segment_failed(state: JobState, e: SegmentFailed) -> None:
    if e.segment_id in state.ended_segments:
        return
    state.segments_failed += 1  # a failed or cancelled segment still sent requests
    _segment_ended(state, e.segment_id, e.bars, e.ib_requests)


def _progress(state: JobState, e: JobProgress) -> None:
    state.progress_done, state.progress_total = e.done, e.total
    state.progress_unit, state.progress_message = e.unit, e.message
    cancelling = ProgressReason.CANCELLING if state.status is JobStatus.CANCELLING else None
    state.progress_reason = e.reason or cancelling  # each progress is a whole account
    state.progress_since, state.progress_until, state.progress_eta = e.since, e.until, e.eta
    state.progress_rate, state.progress_bars = e.rate, e.bars
    state.requests_done, state.requests_planned = e.requests_done, e.requests_planned


def _epoch(state: JobState, e: EpochCompleted) -> None:
    state.epoch, state.epochs = e.epoch, e.epochs
    state.last_epoch = msgspec.structs.asdict(e) | {"ts": e.ts}
    for key in ("type", "job_id"):
        state.last_epoch.pop(key, None)
    if state.progress_unit in (None, "epochs"):
        state.progress_done, state.progress_total, state.progress_unit = e.epoch, e.epochs, "epochs"
    if state.status is not JobStatus.CANCELLING:
        state.progress_reason = ProgressReason.TRAINING


def _cancel_requested(state: JobState, e: CancelRequested) -> None:
    state.cancel_reason = e.reason
    state.status = JobStatus.CANCELLING
    state.progress_reason = ProgressReason.CANCELLING


def _completed(state: JobState, e: JobCompleted) -> None:
    state.result = e.result
    state.status = JobStatus.COMPLETED
    ran = e.result.metrics.get("epochs_run") if isinstance(e.result, TrainingResult) else None
    if isinstance(ran, int) and ran > 0 and state.progress_unit == "epochs":
        state.progress_total = ran  # stopped early: the epochs that ran are the whole run
    if state.progress_total is not None:  # the last progress event may predate the end
        state.progress_done = state.progress_total
    if isinstance(e.result, LoadResult):
        state.gaps_analyzed = e.result.gaps_analyzed
        state.cached_before = e.result.cached_before
    _finish(state)


def _failed(state: JobState, e: JobFailed) -> None:
    state.error_code, state.error_message = e.code, e.message
    state.status = JobStatus.FAILED
    _finish(state)


def _cancelled(state: JobState, e: JobCancelled) -> None:
    state.cancel_reason = e.reason or state.cancel_reason
    state.status = JobStatus.CANCELLED
    state.result = e.result or state.result
    _finish(state)


def _finish(state: JobState) -> None:
    """Make the progress of an ended job read done, with what the job did."""
    if isinstance(state.result, LoadResult):
        state.progress_bars = _larger(state.progress_bars, state.result.fetched_bars)
        state.requests_done = _larger(state.requests_done, state.result.ib_requests_made)
    state.progress_bars, state.requests_done = state.bars, state.requests
    owner_said_done = state.progress_reason is ProgressReason.DONE
    state.progress_reason = ProgressReason.DONE
    state.progress_since = state.progress_until = state.progress_eta = None
    state.progress_rate = None
    if not (owner_said_done and state.status is JobStatus.COMPLETED):
        state.progress_message = _summary(state)


def _summary(state: JobState) -> str:
    """Return what an ended job did, in words."""
    if state.status is JobStatus.FAILED:
        head = f"failed ({state.error_code})"
    elif state.status is JobStatus.CANCELLED:
        head = "cancelled"
    else:
        head = "done"
    if state.kind == JobKind.TRAINING or state.epochs is not None:
        return f"{head}: {_epochs_summary(state)}" if state.epoch else head
    parts = []
    if state.segments_planned is not None:
        parts.append(f"{state.segments_fetched} of {state.segments_planned} segment(s) fetched")
    if state.bars is not None:
        parts.append(f"{state.bars:,} bars")
    if state.requests is not None:
        parts.append(f"{state.requests:,} IB requests")
    return f"{head}: {', '.join(parts)}" if parts else head


def _epochs_summary(state: JobState) -> str:
    metrics = state.result.metrics if isinstance(state.result, TrainingResult) else {}
    ran = metrics.get("epochs_run", state.epoch)
    if metrics.get("stopped_early"):
        best = metrics.get("best_epoch")
        return f"stopped early after {ran} of {state.epochs} epochs" + (
            f" (best epoch {best})" if best else ""
        )
    return f"{ran} of {state.epochs} epochs"


def _larger(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


_HANDLERS: dict[type, Any] = {
    JobAccepted: _accepted,
    JobPlanned: _planned,
    SegmentProgress: _segment_progress,
    SegmentFetched: _segment_fetched,
    SegmentFailed: _segment_failed,
    JobProgress: _progress,
    EpochCompleted: _epoch,
    CancelRequested: _cancel_requested,
    JobCompleted: _completed,
    JobFailed: _failed,
    JobCancelled: _cancelled,
}
