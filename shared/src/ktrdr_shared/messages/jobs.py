"""Job events: data loads and training runs are both jobs.

A job's state is a fold of its events (``ktrdr.evt.job.<kind>.<job_id>.<type>``);
nothing about a job lives only in one process's memory.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from ktrdr_shared.messages.base import Event, Message
from ktrdr_shared.types import (
    InstrumentType,
    JobId,
    ModelId,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    SegmentId,
    UtcDatetime,
    WhatToShow,
    utc_now,
)


class JobKind(enum.StrEnum):
    """What a job does."""

    DATA_LOAD = "data_load"
    TRAINING = "training"


class JobEventBase(Event, frozen=True, kw_only=True):
    """Fields every job event has: whose it is and when it happened."""

    job_id: JobId
    ts: UtcDatetime = msgspec.field(default_factory=utc_now)


class ProgressReason(enum.StrEnum):
    """Why a running job is where it is (``JobProgress.reason``, ``SegmentProgress.state``)."""

    PLANNING = "planning"  # asking the connector for the instrument, IB's clock, the head
    QUEUED = "queued"  # segments sent; the connector is busy with other jobs' segments
    FETCHING = "fetching"  # requests are going out to IB
    PACING = "pacing"  # waiting for IB's pacing window (``until`` says when it opens)
    IB_DISCONNECTED = "ib_disconnected"  # the connector has lost IB (``since`` says when)
    NO_CONNECTOR = "no_connector"  # no ib-connector answers on NATS
    STORING = "storing"  # every segment is in; waiting for the bars to become durable
    CANCELLING = "cancelling"  # cancel requested; waiting for the connector to stop
    STORAGE_FULL = "storage_full"  # the data directory's disk is full; resumes once freed
    TRAINING = "training"  # a training run's epochs
    DONE = "done"  # the job is finished (the last progress event of a load)


class JobAccepted(JobEventBase, frozen=True, kw_only=True, tag="accepted"):
    """A service took the job on; ``params`` echoes the command that started it."""

    kind: JobKind
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class PlannedSegment(Message, frozen=True, kw_only=True):
    """One contiguous missing range the data-store will ask the connector for."""

    segment_id: SegmentId
    start: UtcDatetime
    end: UtcDatetime


class JobPlanned(JobEventBase, frozen=True, kw_only=True, tag="planned"):
    """Gaps analysed: the segments to fetch (empty when nothing is missing).

    For a data load it also records what the plan rests on, so a restarted data-store
    resumes the job from its events alone: the load's range and the instrument it fetches.
    ``cached_before`` counts the bars already stored inside ``[start, end)``, not the
    dataset's total (a tail load starts at the last stored bar, so it is usually 1 there).
    ``notes`` say in sentences what the load assumed (its start when none was given, extended
    hours without ``use_rth``) and what the plan left out (bars older than IB keeps).
    """

    gaps_analyzed: NonNegativeInt
    cached_before: NonNegativeInt
    segments: list[PlannedSegment] = msgspec.field(default_factory=list)
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    instrument_type: InstrumentType | None = None
    exchange: str = ""
    what_to_show: WhatToShow | None = None
    notes: list[str] = msgspec.field(default_factory=list)


class SegmentsDispatched(JobEventBase, frozen=True, kw_only=True, tag="segments_dispatched"):
    """The data-store sent ``FetchBars`` for these segments (the work queue holds them).

    A restarted data-store never sends a recorded segment again: the queue keeps it until
    the connector reports on it.
    """

    segment_ids: list[SegmentId]


class SegmentProgress(JobEventBase, frozen=True, kw_only=True, tag="segment_progress"):
    """The connector's account of one running segment (at most about once a second).

    ``ib_requests`` counts every request sent to IB for the segment, retries included,
    since the connector took it; ``until`` is when IB's pacing window lets the segment's
    next request go (``state`` pacing), ``since`` when IB was lost (``ib_disconnected``).
    """

    segment_id: SegmentId
    state: ProgressReason
    chunks: NonNegativeInt
    chunks_done: NonNegativeInt
    bars: NonNegativeInt
    ib_requests: NonNegativeInt
    until: UtcDatetime | None = None
    since: UtcDatetime | None = None


class SegmentFetched(JobEventBase, frozen=True, kw_only=True, tag="segment_fetched"):
    """The connector published every chunk of a segment."""

    segment_id: SegmentId
    chunks: NonNegativeInt
    bars: NonNegativeInt
    ib_requests: NonNegativeInt


class SegmentFailed(JobEventBase, frozen=True, kw_only=True, tag="segment_failed"):
    """A segment could not be fetched (``code`` classifies, ``ib_code`` is IB's own)."""

    segment_id: SegmentId
    code: str
    message: str
    retryable: bool = False
    ib_code: int | None = None
    # What the segment did before it stopped (a cancelled segment's bars were published).
    chunks_done: NonNegativeInt = 0
    bars: NonNegativeInt = 0
    ib_requests: NonNegativeInt = 0


class JobProgress(JobEventBase, frozen=True, kw_only=True, tag="progress"):
    """Throttled progress: ``done`` of ``total`` ``unit`` (segments, chunks, bars, epochs)."""

    done: NonNegativeFloat
    total: NonNegativeFloat
    unit: str
    message: str = ""
    reason: ProgressReason | None = None
    since: UtcDatetime | None = None  # IB lost since (ib_disconnected), or state since
    until: UtcDatetime | None = None  # the pacing window opens (pacing)
    eta: UtcDatetime | None = None  # the estimated end, at the current rate
    rate: NonNegativeFloat | None = None  # bars per second over the last interval
    bars: NonNegativeInt | None = None  # bars fetched so far
    requests_done: NonNegativeInt | None = None  # IB requests sent so far, retries included
    requests_planned: NonNegativeInt | None = None  # IB requests the plan needs (at least)


class EpochCompleted(JobEventBase, frozen=True, kw_only=True, tag="epoch_completed"):
    """One training epoch finished."""

    epoch: PositiveInt
    epochs: PositiveInt
    train_loss: float
    val_loss: float
    val_accuracy: float
    samples_per_s: NonNegativeFloat
    device: str


class CancelRequested(JobEventBase, frozen=True, kw_only=True, tag="cancel_requested"):
    """Someone asked the job to stop; its services stop and publish ``cancelled``."""

    reason: str = ""


class FailedSegment(Message, frozen=True, kw_only=True):
    """A segment a partial load missed, named in its result."""

    segment_id: SegmentId
    start: UtcDatetime
    end: UtcDatetime
    code: str
    message: str


class LoadResult(Message, frozen=True, kw_only=True, tag_field="kind", tag="data_load"):
    """The result of a data load (the shape the old REST API returned)."""

    fetched_bars: NonNegativeInt
    cached_before: NonNegativeInt
    gaps_analyzed: NonNegativeInt
    segments_fetched: NonNegativeInt
    ib_requests_made: NonNegativeInt
    failed_segments: list[FailedSegment] = msgspec.field(default_factory=list)


class TrainingResult(Message, frozen=True, kw_only=True, tag_field="kind", tag="training"):
    """The result of a training run."""

    model_id: ModelId
    device: str
    metrics: dict[str, Any] = msgspec.field(default_factory=dict)


class JobCompleted(JobEventBase, frozen=True, kw_only=True, tag="completed"):
    """The job finished; a partial load completes too and names what it missed."""

    result: LoadResult | TrainingResult


class JobFailed(JobEventBase, frozen=True, kw_only=True, tag="failed"):
    """The job could not finish."""

    code: str
    message: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class JobCancelled(JobEventBase, frozen=True, kw_only=True, tag="cancelled"):
    """The job stopped on request; ``result`` says what a load did before it stopped."""

    reason: str = ""
    result: LoadResult | TrainingResult | None = None


JobEvent = (
    JobAccepted
    | JobPlanned
    | SegmentsDispatched
    | SegmentProgress
    | SegmentFetched
    | SegmentFailed
    | JobProgress
    | EpochCompleted
    | CancelRequested
    | JobCompleted
    | JobFailed
    | JobCancelled
)

# Events only one kind of job has; the rest (progress, cancel_requested, failed, …) say
# nothing of their job's kind.
_LOAD_EVENTS = (JobPlanned, SegmentsDispatched, SegmentProgress, SegmentFetched, SegmentFailed)


def implied_kind(event: JobEventBase) -> JobKind | None:
    """Return the kind of job an event itself names (None: the event does not say)."""
    if isinstance(event, JobAccepted):
        return event.kind
    if isinstance(event, _LOAD_EVENTS):
        return JobKind.DATA_LOAD
    if isinstance(event, EpochCompleted):
        return JobKind.TRAINING
    result = event.result if isinstance(event, JobCompleted | JobCancelled) else None
    if isinstance(result, LoadResult):
        return JobKind.DATA_LOAD
    if isinstance(result, TrainingResult):
        return JobKind.TRAINING
    return None


TERMINAL_JOB_EVENTS: tuple[type[JobEventBase], ...] = (JobCompleted, JobFailed, JobCancelled)
