"""The ib-connector's family: the fetch command, connection events, IB requests."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

from ktrdr_shared.messages.base import Event, Message, check_range, upper_symbols
from ktrdr_shared.messages.contract import ContractSpec
from ktrdr_shared.types import (
    InstrumentType,
    JobId,
    NonNegativeInt,
    SegmentId,
    Symbol,
    Timeframe,
    UtcDatetime,
    WhatToShow,
    utc_now,
)


class FetchBars(Message, frozen=True, kw_only=True):
    """Command on ``ktrdr.cmd.ib.fetch``: one contiguous missing range ``[start, end)``.

    The connector splits it into IB-legal requests, paces them and publishes
    one ``BarBatch`` per chunk, then ``segment_fetched`` or ``segment_failed``.
    """

    job_id: JobId
    segment_id: SegmentId
    symbol: Symbol
    timeframe: Timeframe
    start: UtcDatetime
    end: UtcDatetime
    instrument_type: InstrumentType
    what_to_show: WhatToShow
    use_rth: bool = False
    # which contract (the load's ``LoadData.contract``); none: the defaults
    contract: ContractSpec | None = None
    # Scheduling class in the connector: lower goes first (tail loads 1, backfills 5);
    # jobs of one class share IB's pacing budget round-robin.
    priority: Annotated[int, Meta(ge=0, le=9)] = 5

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")
        check_range(self.start, self.end)


class _ConnectionEvent(Event, frozen=True, kw_only=True):
    host: str
    port: int
    client_id: int
    server_version: int | None = None
    reason: str = ""
    ts: UtcDatetime = msgspec.field(default_factory=utc_now)


class IbConnected(_ConnectionEvent, frozen=True, kw_only=True, tag="connected"):
    """The IB connection is up and a request succeeded."""


class IbDisconnected(_ConnectionEvent, frozen=True, kw_only=True, tag="disconnected"):
    """The IB connection dropped (``reason`` says how it was noticed)."""


class IbReconnecting(_ConnectionEvent, frozen=True, kw_only=True, tag="reconnecting"):
    """A reconnect attempt is scheduled after ``delay_s``."""

    attempt: NonNegativeInt = 0
    delay_s: float = 0.0


class ClientIdConflict(_ConnectionEvent, frozen=True, kw_only=True, tag="client_id_conflict"):
    """IB refused the client id (326); the connector moves to ``next_client_id``."""

    next_client_id: int


class IbLinkLost(_ConnectionEvent, frozen=True, kw_only=True, tag="ib_link_lost"):
    """The gateway lost its link to IB (1100) with the socket still up.

    The connector is not ready: nothing new is sent, requests in flight wait.
    """


class IbLinkRestored(_ConnectionEvent, frozen=True, kw_only=True, tag="ib_link_restored"):
    """The gateway's link to IB is back: 1101 (``data_lost``: requests in flight were
    dropped by IB and are re-issued) or 1102 (kept: they get their answers)."""

    data_lost: bool = False


IbConnectionEvent = (
    IbConnected | IbDisconnected | IbReconnecting | ClientIdConflict | IbLinkLost | IbLinkRestored
)


class IbStatus(Message, frozen=True, kw_only=True):
    """Reply on ``ktrdr.ib.status``: the real state of the IB connection."""

    connected: bool
    host: str
    port: int
    client_id: int
    server_version: int | None = None
    since: UtcDatetime | None = None
    requests_made: NonNegativeInt = 0
    pacing: dict[str, float] = msgspec.field(default_factory=dict)
    # What is wrong now (None when nothing is): cleared when the condition ends.
    last_error: str | None = None
    # IB's own clock (reqCurrentTime) when connected: which bars are complete is IB's call.
    server_time: UtcDatetime | None = None
    # False while the gateway reports its link to IB lost (1100), socket still up.
    link_ok: bool = True
    # IB's data farms as last reported (2103-2108, 2157/2158): name -> ok | broken | inactive.
    farms: dict[str, str] = msgspec.field(default_factory=dict)
    # Since when the link to IB is lost (1100; None while it is up), and since when each farm
    # is in its reported state (the notice that changed it).
    link_lost_since: UtcDatetime | None = None
    farms_since: dict[str, UtcDatetime] = msgspec.field(default_factory=dict)


class ValidateSymbol(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.ib.validate``; without a type it tries CASH, STK, then FUT."""

    symbol: Symbol
    instrument_type: InstrumentType | None = None
    contract: ContractSpec | None = None  # which contract, where the symbol is ambiguous

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")


class SymbolInfo(Message, frozen=True, kw_only=True):
    """Reply to ``ValidateSymbol``: what IB knows of the instrument."""

    symbol: Symbol
    instrument_type: InstrumentType
    exchange: str
    currency: str
    time_zone: str
    trading_hours: str = ""
    liquid_hours: str = ""
    con_id: int | None = None
    description: str = ""
    head_timestamp: UtcDatetime | None = None


class HeadTimestampRequest(Message, frozen=True, kw_only=True):
    """Request on ``ktrdr.ib.head_timestamp``: the earliest bar IB has."""

    symbol: Symbol
    instrument_type: InstrumentType | None = None
    what_to_show: WhatToShow | None = None
    use_rth: bool = False
    contract: ContractSpec | None = None  # which contract, where the symbol is ambiguous

    def __post_init__(self) -> None:
        upper_symbols(self, "symbol")


class HeadTimestamp(Message, frozen=True, kw_only=True):
    """Reply to ``HeadTimestampRequest``."""

    symbol: Symbol
    what_to_show: WhatToShow
    head_timestamp: UtcDatetime
