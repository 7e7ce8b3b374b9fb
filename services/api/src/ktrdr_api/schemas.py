"""The HTTP contract: request and response bodies of the REST API.

These are the gateway's own shapes, never the wire messages: the wire may
grow fields (evolution is additive) without the REST contract changing, and
the REST contract can say things in REST terms (links, RFC 3339 everywhere,
rows instead of columns). Every timestamp in and out is RFC 3339; a naive one
is refused with a 400 naming the field. Converters to and from the wire live
in the controllers.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import msgspec
from ktrdr_shared.messages import ContractSpec, DayState, IbStatus, ProgressReason, SymbolInfo
from ktrdr_shared.messages.base import check_range
from ktrdr_shared.types import (
    InstrumentType,
    IsoDate,
    JobId,
    LoadMode,
    Symbol,
    SymbolKey,
    Timeframe,
    WhatToShow,
)
from msgspec import Meta

from ktrdr_api.jobs import JobStatus

# RFC 3339 with an offset; the gateway always answers in UTC ("Z").
Timestamp = Annotated[
    datetime,
    Meta(
        tz=True,
        description="RFC 3339 timestamp with an offset (answers are UTC, 'Z').",
        examples=["2024-01-02T14:30:00Z"],
    ),
]
Count = Annotated[int, Meta(ge=0)]
Rate = Annotated[float, Meta(ge=0)]


class Struct(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A request or response body: unknown fields in a request are an error, not ignored."""


# ---------------------------------------------------------------- health


class ComponentState(enum.StrEnum):
    """How one part of the system answered the health check."""

    UP = "up"
    DOWN = "down"
    DEGRADED = "degraded"


class OverallState(enum.StrEnum):
    """The system's health: ok (all up), degraded (some service missing or IB down), down."""

    OK = "ok"
    DEGRADED = "degraded"
    DOWN = "down"


class ServiceHealth(Struct, frozen=True, kw_only=True):
    """One service as ``$SRV.PING`` (and its status endpoint) sees it."""

    name: str
    status: ComponentState
    version: str | None = None
    detail: str = ""


class NatsHealth(Struct, frozen=True, kw_only=True):
    """The gateway's NATS connection."""

    status: ComponentState
    server: str | None = None
    rtt_ms: float | None = None


class Health(Struct, frozen=True, kw_only=True):
    """The gateway, NATS and each service, with an overall status."""

    status: OverallState
    version: str
    nats: NatsHealth
    services: list[ServiceHealth]


class HealthSummary(Struct, frozen=True, kw_only=True):
    """The overall status alone: what ``/health`` shows a caller without the gateway's key."""

    status: OverallState


# ---------------------------------------------------------------- ib


class IbStatusOut(IbStatus, frozen=True, kw_only=True):
    """The IB connection as the ib-connector holds it (the fields of ``ktrdr.ib.status``)."""


class IbHealthOut(Struct, frozen=True, kw_only=True):
    """Whether the ib-connector can fetch from IB now."""

    healthy: bool
    connected: bool
    detail: str
    last_error: str | None = None


class ValidateSymbolIn(Struct, frozen=True, kw_only=True):
    """A symbol to look up at IB; without a type CASH, then STK, then FUT are tried."""

    symbol: Symbol
    instrument_type: InstrumentType | None = None


class SymbolOut(SymbolInfo, frozen=True, kw_only=True):
    """What IB knows of an instrument (the fields of ``ktrdr.ib.validate``'s answer)."""


class HeadTimestampOut(Struct, frozen=True, kw_only=True):
    """The earliest bar IB has for a symbol (the same for every bar size)."""

    symbol: str
    what_to_show: WhatToShow
    head_timestamp: Timestamp
    timeframe: Timeframe | None = None


# ---------------------------------------------------------------- data


class LoadIn(Struct, frozen=True, kw_only=True):
    """What to load: ``mode`` picks the range unless ``start``/``end`` override it."""

    symbol: Symbol
    timeframe: Timeframe
    mode: LoadMode = LoadMode.TAIL
    start: Timestamp | None = None
    end: Timestamp | None = None
    instrument_type: InstrumentType | None = None
    what_to_show: WhatToShow | None = None
    contract: ContractSpec | None = None  # which contract, where the symbol is ambiguous
    use_rth: bool = False  # regular trading hours only (IB's useRTH)

    def __post_init__(self) -> None:
        check_range(self.start, self.end)


class JobLinks(Struct, frozen=True, kw_only=True):
    """Where to follow a job."""

    self: str
    events: str
    cancel: str


class FailedSegmentOut(Struct, frozen=True, kw_only=True):
    """A range a partial load could not fetch."""

    segment_id: str
    start: Timestamp
    end: Timestamp
    code: str
    message: str


class JobError(Struct, frozen=True, kw_only=True):
    """Why a job failed."""

    code: str
    message: str


class LoadOut(Struct, frozen=True, kw_only=True):
    """A load job: the old ``/data/load`` answer, plus the job's id and links.

    Without ``wait`` only ``job_id``, ``status`` (``queued``) and ``links`` are
    filled; with ``wait`` the counts are filled as far as the job has got.
    """

    job_id: JobId
    status: JobStatus
    links: JobLinks
    fetched_bars: Count | None = None
    cached_before: Annotated[
        Count | None,
        Meta(
            description=(
                "Bars already stored inside the planned range, not the dataset's total: a tail "
                "load starts at the last stored bar, so it is usually 1 there. The notes give the "
                "total."
            )
        ),
    ] = None
    gaps_analyzed: Count | None = None
    segments_fetched: Count | None = None
    ib_requests_made: Count | None = None
    execution_time_s: float | None = None
    failed_segments: list[FailedSegmentOut] = msgspec.field(default_factory=list)
    error: JobError | None = None
    notes: Annotated[
        list[str],
        Meta(
            description=(
                "What the plan assumed and left out, in sentences: the start taken when none was "
                "given and why, the bars already stored, extended hours, IB's history limits."
            )
        ),
    ] = msgspec.field(default_factory=list)


class RangeOut(Struct, frozen=True, kw_only=True):
    """A half-open range ``[start, end)``."""

    start: Timestamp
    end: Timestamp


class CoverageDayOut(Struct, frozen=True, kw_only=True):
    """One calendar date: the date a session is named after, and what the store holds of it.

    ``stored``: every bar of the session, or what is not IB answered empty. ``partial``: some
    bars, and a gap a load would fill. ``gap``: no bars, and a gap. ``empty``: no bars, IB
    answered empty. ``closed``: no session that date (a weekend or a holiday of the market's
    calendar). ``none``: a session outside what the dataset covers or was asked.
    """

    date: IsoDate
    state: DayState


class CoverageOut(Struct, frozen=True, kw_only=True):
    """What is stored, what is missing, and what IB already answered empty.

    ``days`` (with ``?days=true``, else null): every calendar date of the range asked for,
    else of the dataset's bars, gaps and answered-empty ranges, up to now, oldest first; at
    most 20 years of dates (a longer range keeps its latest).
    """

    symbol: str
    timeframe: Timeframe
    rows: Count
    first: Timestamp | None = None
    last: Timestamp | None = None
    stored: list[RangeOut] = msgspec.field(default_factory=list)
    gaps: list[RangeOut] = msgspec.field(default_factory=list)
    answered_empty: list[RangeOut] = msgspec.field(default_factory=list)
    days: list[CoverageDayOut] | None = None


class DatasetOut(Struct, frozen=True, kw_only=True):
    """One stored (symbol, timeframe) dataset; ``coverage`` when asked for.

    ``damaged`` names a file of the dataset that cannot be read and the problem; its bars and
    coverage then answer 409 ``dataset_damaged`` until the file is moved aside.

    ``bytes``: the size of its bar files on disk. ``use_rth``: its bars are of regular trading
    hours only (true) or include extended hours (false), as its loads asked. ``quarantined``:
    how many quarantined batches came for it (``GET /api/v1/quarantine?symbol=&timeframe=``).
    """

    symbol: str
    timeframe: Timeframe
    rows: Count
    first: Timestamp | None = None
    last: Timestamp | None = None
    damaged: str | None = None
    bytes: Count = 0
    use_rth: bool | None = None
    quarantined: Count = 0
    links: dict[str, str] = msgspec.field(default_factory=dict)
    coverage: CoverageOut | None = None


class DatasetsOut(Struct, frozen=True, kw_only=True):
    """Every stored dataset."""

    datasets: list[DatasetOut]


class QuarantinedOut(Struct, frozen=True, kw_only=True):
    """One bar batch ingest rejected and kept whole, with the reason it was rejected.

    ``id`` is the ``quarantine_id`` of its ``batch_rejected`` event; ``bytes`` is the size of
    the kept payload. ``symbol`` (the store's key, as in ``GET /api/v1/data``) and
    ``timeframe`` name the dataset of its bar subject; ``start``/``end`` the window its bar
    batch covered, when the payload decodes as far as that. Each is null where it cannot be
    told.
    """

    id: str
    subject: str
    code: str
    message: str
    job_id: str | None = None
    received: Timestamp
    bytes: Count
    symbol: SymbolKey | None = None
    timeframe: Timeframe | None = None
    start: Timestamp | None = None
    end: Timestamp | None = None
    links: dict[str, str] = msgspec.field(default_factory=dict)


class QuarantineOut(Struct, frozen=True, kw_only=True):
    """Every quarantined batch, newest first."""

    entries: list[QuarantinedOut]


class QuarantineReleasedOut(Struct, frozen=True, kw_only=True):
    """A quarantined batch sent back on its subject; ingest checks it again.

    After a fix it is stored; if it still fails it is quarantined again (same ``id``).
    """

    id: str
    subject: str


class RepairOut(Struct, frozen=True, kw_only=True):
    """What a repair did to one dataset.

    ``moved``: its unreadable files (relative to the data directory), now kept under
    ``damaged/<UTC stamp>/`` with the same path. ``forgotten``: the answered ranges dropped
    (a moved ledger forgets every range, none of which can be listed). ``job_id``/``links``:
    the load that fetches the lost range again; absent when nothing was moved.
    """

    symbol: Symbol
    timeframe: Timeframe
    moved: list[str]
    forgotten: list[RangeOut]
    job_id: JobId | None = None
    links: JobLinks | None = None


class Bar(Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One bar, stamped with its open."""

    ts: Timestamp
    open: float
    high: float
    low: float
    close: float
    volume: float
    wap: float | None = None
    count: int | None = None


class BarsOut(Struct, frozen=True, kw_only=True):
    """One page of bars in ``[start, end)``; ``links.next`` fetches the next page."""

    symbol: str
    timeframe: Timeframe
    bars: list[Bar]
    next_cursor: str | None = None
    links: dict[str, str] = msgspec.field(default_factory=dict)


# ---------------------------------------------------------------- jobs


class Progress(Struct, frozen=True, kw_only=True):
    """How far a job has got, in its own unit (segments, percent, bars, epochs), and why.

    ``reason`` says why a running job is where it is (``fetching``, ``pacing`` until
    ``until``, ``ib_disconnected`` since ``since``, ``no_connector``, ``queued``,
    ``storing``, ``cancelling``, ``training``); an ended job's reads ``done``.
    """

    done: float | None = None
    total: float | None = None
    unit: str | None = None
    percent: float | None = None
    message: str = ""
    reason: Annotated[ProgressReason | None, Meta(description="Why the job is where it is.")] = None
    since: Annotated[Timestamp | None, Meta(description="IB lost since (ib_disconnected).")] = None
    until: Annotated[Timestamp | None, Meta(description="IB's pacing window opens (pacing).")] = (
        None
    )
    eta: Annotated[
        Timestamp | None, Meta(description="The estimated end, at the current rate.")
    ] = None
    rate: Annotated[Rate | None, Meta(description="Bars per second, lately.")] = None
    bars: Annotated[Count | None, Meta(description="Bars fetched so far.")] = None
    requests_done: Annotated[
        Count | None, Meta(description="Requests sent to IB so far, retries included.")
    ] = None
    requests_planned: Annotated[
        Count | None, Meta(description="Requests to IB the plan needs (at least).")
    ] = None


class JobOut(Struct, frozen=True, kw_only=True):
    """A job's state, folded from its events."""

    job_id: JobId
    kind: str | None
    status: JobStatus
    params: dict[str, Any]
    created: Timestamp | None
    updated: Timestamp | None
    events: Count
    progress: Progress
    links: JobLinks
    execution_time_s: float | None = None
    segments_planned: Count | None = None
    segments_fetched: Count = 0
    segments_failed: Count = 0
    bars_fetched: Count = 0
    ib_requests: Count = 0
    last_epoch: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: JobError | None = None
    cancel_reason: str | None = None
    notes: list[str] = msgspec.field(default_factory=list)


class JobSummary(Struct, frozen=True, kw_only=True):
    """A job in a list (counters need the job's full history: see the job itself)."""

    job_id: JobId
    kind: str | None
    status: JobStatus
    symbol: str | None
    timeframe: str | None
    created: Timestamp | None
    updated: Timestamp | None
    progress: Progress
    links: JobLinks


class JobsOut(Struct, frozen=True, kw_only=True):
    """Jobs, newest first."""

    jobs: list[JobSummary]


class CancelIn(Struct, frozen=True, kw_only=True):
    """Why the job should stop (recorded in its events)."""

    reason: Annotated[str, Meta(max_length=500)] = "cancelled through the REST API"
