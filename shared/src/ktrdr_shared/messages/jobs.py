"""Job events: data loads and training runs are both jobs.

A job's state is a fold of its events (``ktrdr.evt.job.<job_id>.<type>``);
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
    """

    gaps_analyzed: NonNegativeInt
    cached_before: NonNegativeInt
    segments: list[PlannedSegment] = msgspec.field(default_factory=list)
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    instrument_type: InstrumentType | None = None
    exchange: str = ""
    what_to_show: WhatToShow | None = None


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


class JobProgress(JobEventBase, frozen=True, kw_only=True, tag="progress"):
    """Throttled progress: ``done`` of ``total`` ``unit`` (segments, chunks, bars, epochs)."""

    done: NonNegativeFloat
    total: NonNegativeFloat
    unit: str
    message: str = ""


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
    """The job stopped on request."""

    reason: str = ""


JobEvent = (
    JobAccepted
    | JobPlanned
    | SegmentFetched
    | SegmentFailed
    | JobProgress
    | EpochCompleted
    | CancelRequested
    | JobCompleted
    | JobFailed
    | JobCancelled
)

TERMINAL_JOB_EVENTS: tuple[type[JobEventBase], ...] = (JobCompleted, JobFailed, JobCancelled)
