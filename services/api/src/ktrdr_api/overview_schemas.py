"""The HTTP contract of the overview: one snapshot of the system (see ``schemas`` for the
conventions). What could not be read is said in words inside the snapshot (``problem``,
``jetstream.problem``, ``missing_services``), so the snapshot itself always answers."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

from ktrdr_api.schemas import Count, IbStatusOut, Struct, Timestamp

Seconds = Annotated[float, Meta(ge=0)]


class PacingOut(Struct, frozen=True, kw_only=True):
    """IB's 10-minute pacing window as the connector runs it (from ``IbStatus.pacing``).

    ``window_s`` and ``next_free_s`` are null when the connector is too old to say them.
    """

    requests_in_window: Count  # hard-paced requests IB counts in the window now (BID_ASK: 2)
    window_max: Count
    window_s: Seconds | None = None  # 600 s, or less where the connector compresses time
    next_free_s: Seconds | None = None  # 0 while the window has room
    waiting_requests: Count
    open_requests: Count
    soft_delay_s: Seconds  # the spacing of requests for bars of 1 min and more


class EndpointStatsOut(Struct, frozen=True, kw_only=True):
    """One request/reply endpoint of a service instance (``$SRV.STATS``)."""

    name: str
    subject: str
    requests: Count
    errors: Count  # error replies, every one (``runtime.ErrorTally``)
    last_error: str | None = None
    average_processing_ms: Seconds


class ServiceStatsOut(Struct, frozen=True, kw_only=True):
    """One running service instance, as it answered ``$SRV.STATS``."""

    name: str
    id: str
    version: str
    started: Timestamp | None = None
    requests: Count  # over every endpoint
    errors: Count
    endpoints: list[EndpointStatsOut]


class StreamOut(Struct, frozen=True, kw_only=True):
    """One JetStream stream.

    ``consumer_pending`` maps each consumer to the messages it has not yet been given, for
    ktrdr's own streams (null for others: not read).
    """

    name: str
    messages: Count
    bytes: Count
    consumers: Count
    consumer_pending: dict[str, Count] | None = None


class AccountOut(Struct, frozen=True, kw_only=True):
    """The JetStream account's totals."""

    memory_bytes: Count
    storage_bytes: Count
    streams: Count
    consumers: Count


class JetStreamOut(Struct, frozen=True, kw_only=True):
    """Every stream of the account; ``problem`` says what could not be read."""

    streams: list[StreamOut]
    account: AccountOut | None = None
    problem: str | None = None


class OverviewOut(Struct, frozen=True, kw_only=True):
    """The system at one instant: IB, its pacing, every service and JetStream."""

    ts: Timestamp
    ib: IbStatusOut | None = None
    problem: str | None = None  # why ``ib`` is null: no connector answers, NATS is down
    pacing: PacingOut | None = None
    services: list[ServiceStatsOut]
    missing_services: list[str]  # ktrdr services no instance of which answered
    jetstream: JetStreamOut
