"""A job's state as a fold of its events (no NATS here: the tests bite hardest).

Replaying ``ktrdr.evt.job.*.<id>.>`` in order and folding each event into a
``JobState`` gives the job's status, progress and result; nothing about a job
lives in the gateway's memory. The fold itself is the shared job projection
(``ktrdr_shared.job_log``: keyed by segment id, the first report of a segment, the
first plan and cancel and the first terminal event stand, and later events cannot
reopen an ended job); this module adds what only the api shows: the status word and
the progress an owner last reported, in words once the job ends.

Counts are the segments' own: a segment that ended (fetched, failed or cancelled)
counts the bars and IB requests it reported, once; a running segment counts its
latest ``segment_progress`` until it ends, so live counts neither lag nor double.
An event type this gateway does not know is counted and otherwise ignored.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from ktrdr_shared.job_log import JobProjection, evolve
from ktrdr_shared.messages import (
    CancelRequested,
    EpochCompleted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobKind,
    JobProgress,
    LoadResult,
    ProgressReason,
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


@dataclass(kw_only=True)
class JobState(JobProjection):
    """Everything the event log says about one job, as the api shows it."""

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
    epoch: int | None = None
    epochs: int | None = None
    last_epoch: dict[str, Any] | None = None

    @property
    def status(self) -> JobStatus:
        """Return where the job stands: its end, a cancel, a sign of work, or its accept."""
        if self.terminal is not None:
            return _ENDED[type(self.terminal)]
        if self.cancel is not None:
            return JobStatus.CANCELLING
        if self.started:
            return JobStatus.RUNNING
        return JobStatus.QUEUED if self.accepted is None else JobStatus.ACCEPTED

    @property
    def kind(self) -> str | None:
        """Return the job's kind, once accepted."""
        return None if self.accepted is None else self.accepted.kind.value

    @property
    def params(self) -> dict[str, Any]:
        """Return the job's parameters, once accepted."""
        return {} if self.accepted is None else dict(self.accepted.params)

    @property
    def notes(self) -> list[str]:
        """Return what the plan says it assumed or left out."""
        return [] if self.planned is None else list(self.planned.notes)

    @property
    def segments_planned(self) -> int | None:
        """Return how many segments the plan holds (None before a plan)."""
        return None if self.planned is None else len(self.planned.segments)

    @property
    def result(self) -> LoadResult | TrainingResult | None:
        """Return the job's result: a completed job's, or what a cancelled one did."""
        end = self.terminal
        return end.result if isinstance(end, JobCompleted | JobCancelled) else None

    @property
    def gaps_analyzed(self) -> int | None:
        """Return the gaps the load analysed: its result's, else its plan's."""
        if isinstance(self.result, LoadResult):
            return self.result.gaps_analyzed
        return None if self.planned is None else self.planned.gaps_analyzed

    @property
    def cached_before(self) -> int | None:
        """Return the bars stored before the load: its result's, else its plan's."""
        if isinstance(self.result, LoadResult):
            return self.result.cached_before
        return None if self.planned is None else self.planned.cached_before

    @property
    def error_code(self) -> str | None:
        """Return a failed job's code."""
        return self.terminal.code if isinstance(self.terminal, JobFailed) else None

    @property
    def error_message(self) -> str | None:
        """Return a failed job's message."""
        return self.terminal.message if isinstance(self.terminal, JobFailed) else None

    @property
    def cancel_reason(self) -> str | None:
        """Return why the job was cancelled: the end's reason, else the request's."""
        if isinstance(self.terminal, JobCancelled) and self.terminal.reason:
            return self.terminal.reason
        return None if self.cancel is None else self.cancel.reason

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
    ended = state.terminal is not None
    evolve(state, event)
    render = None if ended else _RENDER.get(type(event))
    if render is not None:
        render(state, event)


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


def _cancel_requested(state: JobState, _: CancelRequested) -> None:
    state.progress_reason = ProgressReason.CANCELLING


def _completed(state: JobState, e: JobCompleted) -> None:
    ran = e.result.metrics.get("epochs_run") if isinstance(e.result, TrainingResult) else None
    if isinstance(ran, int) and ran > 0 and state.progress_unit == "epochs":
        state.progress_total = ran  # stopped early: the epochs that ran are the whole run
    if state.progress_total is not None:  # the last progress event may predate the end
        state.progress_done = state.progress_total
    _finish(state)


def _ended(state: JobState, _: JobFailed | JobCancelled) -> None:
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


_ENDED: dict[type, JobStatus] = {
    JobCompleted: JobStatus.COMPLETED,
    JobFailed: JobStatus.FAILED,
    JobCancelled: JobStatus.CANCELLED,
}
_RENDER: dict[type, Callable[[JobState, Any], None]] = {
    JobProgress: _progress,
    EpochCompleted: _epoch,
    CancelRequested: _cancel_requested,
    JobCompleted: _completed,
    JobFailed: _ended,
    JobCancelled: _ended,
}
