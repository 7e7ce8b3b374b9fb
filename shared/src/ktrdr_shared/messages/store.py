"""The data-store's family: the load command, queries, coverage, datasets, stored events."""

from __future__ import annotations

import enum

import msgspec

from ktrdr_shared.messages.base import Event, Message, check_range, upper_symbols
from ktrdr_shared.messages.common import TimeRange
from ktrdr_shared.messages.contract import ContractSpec
from ktrdr_shared.types import (
    InstrumentType,
    IsoDate,
    JobId,
    LoadMode,
    NonNegativeInt,
    Symbol,
    SymbolKey,
    Timeframe,
    UnixNanos,
    UtcDatetime,
    WhatToShow,
    utc_now,
)


class LoadData(Message, frozen=True, kw_only=True):
    """Command on ``ktrdr.cmd.data.load``: make the store hold this symbol's bars.

    Published by hand without ``job_id``, the data-store assigns one and
    announces it in ``JobAccepted``. ``mode`` picks the range unless
    ``start``/``end`` override it.
    """

    job_id: JobId | None = None
    symbol: Symbol
    timeframe: Timeframe
    mode: LoadMode = LoadMode.TAIL
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    instrument_type: InstrumentType | None = None
    what_to_show: WhatToShow | None = None
    # Which contract, where the symbol is ambiguous (currency, listing, futures month, conId).
    contract: ContractSpec | None = None
    # Regular trading hours only (IB's useRTH); by default extended hours are included.
    use_rth: bool = False

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")
        check_range(self.start, self.end)


class QueryFormat(enum.StrEnum):
    """How ``ktrdr.store.query`` returns a page: JSON columns or an Arrow IPC stream."""

    JSON = "json"
    ARROW = "arrow"


class QueryBars(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.store.query``: a page of stored bars in ``[start, end)``."""

    symbol: Symbol
    timeframe: Timeframe
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    limit: int = msgspec.field(default=10_000)
    cursor: str | None = None
    format: QueryFormat = QueryFormat.JSON

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")
        check_range(self.start, self.end)
        if not 1 <= self.limit <= 100_000:
            raise ValueError(f"'limit' must be between 1 and 100000, got {self.limit}")


class BarsPage(Message, frozen=True, kw_only=True):
    """Reply to ``QueryBars`` in JSON form: columns plus the cursor of the next page."""

    symbol: Symbol
    timeframe: Timeframe
    ts: list[UnixNanos]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]
    wap: list[float | None] | None = None
    count: list[int | None] | None = None
    next_cursor: str | None = None


class CoverageRequest(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.store.coverage``; ``days`` asks for ``Coverage.days`` as well."""

    symbol: Symbol
    timeframe: Timeframe
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None
    days: bool = False

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")
        check_range(self.start, self.end)


class DayState(enum.StrEnum):
    """What the store holds of a date's session (``CoverageDay`` says what each means)."""

    STORED = "stored"
    PARTIAL = "partial"
    GAP = "gap"
    EMPTY = "empty"
    CLOSED = "closed"
    NONE = "none"


class CoverageDay(Message, frozen=True, kw_only=True):
    """One calendar date of a dataset's coverage: the date a session is named after.

    ``state``: ``stored`` (every bar of the session is stored, or what is not IB answered
    empty), ``partial`` (some bars stored, and a gap a load would fill), ``gap`` (no bar
    stored, and a gap), ``empty`` (no bar stored, IB answered empty), ``closed`` (no session
    that date: a weekend or a holiday of the market's calendar) or ``none`` (a session outside
    what the dataset covers or was asked: neither stored nor missing).
    """

    date: IsoDate
    state: DayState


class Coverage(Message, frozen=True, kw_only=True):
    """What is stored, what is missing, and what IB already answered empty.

    ``days`` (only when the request asked for it) gives every calendar date of the range,
    oldest first, with its ``DayState``.
    """

    symbol: Symbol
    timeframe: Timeframe
    rows: NonNegativeInt
    first: UtcDatetime | None = None
    last: UtcDatetime | None = None
    stored: list[TimeRange] = msgspec.field(default_factory=list)
    gaps: list[TimeRange] = msgspec.field(default_factory=list)
    answered_empty: list[TimeRange] = msgspec.field(default_factory=list)
    days: list[CoverageDay] | None = None


class DatasetInfo(Message, frozen=True, kw_only=True):
    """One stored (symbol, timeframe) dataset.

    ``damaged`` names a file of the dataset that cannot be read and the problem
    (``"bars/AAPL/1h/2024.parquet: Parquet magic bytes not found ..."``); ``rows``, ``first``
    and ``last`` then count only the files that can be read.

    ``bytes`` is the size of its bar files on disk; ``use_rth`` the hours its profile records
    (regular trading hours only, or extended; None from a data-store that does not say);
    ``quarantined`` how many quarantined batches came on its bar subject.
    """

    symbol: Symbol
    timeframe: Timeframe
    rows: NonNegativeInt
    first: UtcDatetime | None = None
    last: UtcDatetime | None = None
    damaged: str | None = None
    bytes: NonNegativeInt = 0
    use_rth: bool | None = None
    quarantined: NonNegativeInt = 0


class DatasetList(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.store.datasets``."""

    datasets: list[DatasetInfo]


class ListQuarantine(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.store.quarantine``: every batch ingest rejected and kept."""


class QuarantinedBatch(Message, frozen=True, kw_only=True):
    """One rejected message kept whole in the data-store's quarantine.

    ``id`` is the ``quarantine_id`` its ``BatchRejected`` carried; ``bytes`` is the size of the
    kept payload; ``received`` is when ingest first rejected it.

    ``symbol`` (the store's key, as ``DatasetInfo.symbol``) and ``timeframe`` name the dataset
    of its bar subject (``ktrdr.bars.<symbol>.<timeframe>``); ``start``/``end`` are the window
    ``[start, end)`` the kept ``BarBatch`` covered, when its payload decodes as far as that.
    Each is None where it cannot be told.
    """

    id: str
    subject: str
    code: str
    message: str
    job_id: str | None = None
    received: UtcDatetime
    bytes: NonNegativeInt
    symbol: SymbolKey | None = None
    timeframe: Timeframe | None = None
    start: UtcDatetime | None = None
    end: UtcDatetime | None = None


class QuarantineList(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.store.quarantine``: the quarantined batches, newest first."""

    entries: list[QuarantinedBatch]


class DeleteQuarantined(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.store.quarantine.delete``: forget one quarantined batch.

    An unknown ``id`` answers ``not_found``.
    """

    id: str


class QuarantineDeleted(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.store.quarantine.delete``: the entry is gone."""

    id: str


class ReleaseQuarantined(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.store.quarantine.release``: send one quarantined batch through again.

    The data-store republishes the payload byte for byte on its original subject (headers kept,
    ``Nats-Msg-Id`` replaced by ``release.<id>.<unix ms>``), waits for JetStream's ack, then
    deletes the entry. Ingest checks the batch again: after a fix it is stored; if it still
    fails it lands in the quarantine again. An unknown ``id`` answers ``not_found``.
    """

    id: str


class QuarantineReleased(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.store.quarantine.release``: the batch is back on ``subject``."""

    id: str
    subject: str


class RepairDataset(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.store.repair``: move a dataset's unreadable files aside and reload.

    An unknown dataset answers ``not_found``; a dataset with nothing unreadable answers
    ``DatasetRepaired`` with nothing moved and no job.
    """

    symbol: Symbol
    timeframe: Timeframe

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")


class DatasetRepaired(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.store.repair``.

    Attributes:
        moved: the unreadable files, relative to the data directory, now kept under
            ``damaged/<UTC stamp>/`` with the same relative path (never deleted).
        forgotten: the answered ranges dropped from the ledger (the moved year files' span);
            when the ledger itself was unreadable and moved, every range is forgotten and
            none can be listed.
        job_id: the ``LoadData`` (mode ``full``) that reloads what was moved, or None when
            nothing was.
    """

    symbol: Symbol
    timeframe: Timeframe
    moved: list[str] = msgspec.field(default_factory=list)
    forgotten: list[TimeRange] = msgspec.field(default_factory=list)
    job_id: JobId | None = None


class StoreEventBase(Event, frozen=True, kw_only=True):
    """Events of the store family (``ktrdr.evt.store.<type>``)."""


class BarsStored(StoreEventBase, frozen=True, kw_only=True, tag="bars_stored"):
    """Event on ``ktrdr.evt.store.bars_stored``: bars became durable in the store.

    The hook for users' own services: follow it to react to new data.
    """

    symbol: Symbol
    timeframe: Timeframe
    first: UtcDatetime
    last: UtcDatetime
    bars_written: NonNegativeInt
    job_id: JobId | None = None
    ts: UtcDatetime = msgspec.field(default_factory=utc_now)

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")


class BatchRejected(StoreEventBase, frozen=True, kw_only=True, tag="batch_rejected"):
    """Event on ``ktrdr.evt.store.batch_rejected``: a bar batch that can never be stored.

    The message was kept whole in the data-store's quarantine (``quarantine_id``), then
    terminated (not retried); ``message`` names the problem.
    """

    subject: str
    code: str
    message: str
    job_id: JobId | None = None
    quarantine_id: str | None = None
    ts: UtcDatetime = msgspec.field(default_factory=utc_now)


StoreEvent = BarsStored | BatchRejected
