"""The overview snapshot, gathered over NATS in one round (the source of ``overview.OverviewHub``).

One round is, all at once: ``ktrdr.ib.status`` (the connector's IB connection and pacing),
``$SRV.STATS`` to every service (their instances, endpoints, request and error counts), and
JetStream's stream list, account totals and the consumers of ktrdr's own streams. Whatever
does not answer is said in words inside the snapshot. Changes worth a new snapshot at once
are the IB connection events (``ktrdr.evt.ib.connection.>``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import msgspec
import nats.errors
import nats.js.errors
from ktrdr_shared import streams, subjects
from ktrdr_shared.messages import IbStatus, StatusRequest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AccountInfo, StreamInfo

from ktrdr_api.controllers.health import SERVICES
from ktrdr_api.errors import ApiError
from ktrdr_api.gateway import Gateway
from ktrdr_api.overview_schemas import (
    AccountOut,
    EndpointStatsOut,
    JetStreamOut,
    OverviewOut,
    PacingOut,
    ServiceStatsOut,
    StreamOut,
)
from ktrdr_api.views import ib_status_out

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0  # each question of the round
STATS_WAIT_S = 0.5  # the longest the services are waited for
STATS_STALL_S = 0.1  # once one has answered, the longest a pause between answers
# ktrdr's own streams, whose consumers are read in the same round as the stream list.
KTRDR_STREAMS = (
    *(s.name or "" for s in (streams.COMMANDS, streams.BARS, streams.EVENTS)),
    f"KV_{streams.SYMBOLS_BUCKET}",
    f"OBJ_{streams.MODELS_BUCKET}",
)


class _EndpointStats(msgspec.Struct, kw_only=True):
    """An endpoint of a ``$SRV.STATS`` answer (nats.micro's ``EndpointStats``)."""

    name: str
    subject: str
    num_requests: int = 0
    num_errors: int = 0
    last_error: str | None = None
    average_processing_time: int = 0  # nanoseconds


class _ServiceStats(msgspec.Struct, kw_only=True):
    """A ``$SRV.STATS`` answer (nats.micro's ``ServiceStats``)."""

    name: str
    id: str
    version: str = ""
    started: str | None = None
    endpoints: list[_EndpointStats] | None = None


class NatsSnapshot:
    """Gather ``OverviewOut`` snapshots over one NATS connection."""

    def __init__(self, gateway: Gateway, *, timeout_s: float = TIMEOUT_S) -> None:
        self.gateway = gateway
        self.nc: NATS = gateway.nc
        self.timeout_s = timeout_s

    async def snapshot(self) -> OverviewOut:
        """Return the system now: IB, its pacing, every service and JetStream."""
        (ib, problem), services, jetstream = await asyncio.gather(
            self._ib(), self._services(), self._jetstream()
        )
        found = {s.name for s in services}
        return OverviewOut(
            ts=datetime.now(UTC),
            ib=ib_status_out(ib) if ib else None,
            problem=problem,
            pacing=pacing_out(ib.pacing) if ib else None,
            services=services,
            missing_services=[name for name in SERVICES if name not in found],
            jetstream=jetstream,
        )

    @contextlib.asynccontextmanager
    async def changes(self, poke: Callable[[], None]) -> AsyncIterator[None]:
        """Call ``poke`` on every IB connection event while open."""

        async def on_event(_: Msg) -> None:
            poke()

        sub = await self.nc.subscribe(subjects.IB_CONNECTION_EVENTS, cb=on_event)
        try:
            yield
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _ib(self) -> tuple[IbStatus | None, str | None]:
        try:
            status = await self.gateway.request(
                subjects.IB_STATUS, StatusRequest(), IbStatus, timeout_s=self.timeout_s
            )
        except ApiError as e:
            return None, e.detail
        return status, None

    async def _services(self) -> list[ServiceStatsOut]:
        try:
            answers = await self.gateway.gather(
                subjects.micro(subjects.STATS), wait_s=STATS_WAIT_S, stall_s=STATS_STALL_S
            )
        except ApiError:
            return []  # NATS is unreachable: the snapshot's problem says so
        found = [s for s in map(_decode_stats, answers) if s is not None]
        return sorted(found, key=lambda s: (s.name, s.id))

    async def _jetstream(self) -> JetStreamOut:
        js = self.nc.jetstream(timeout=self.timeout_s)
        listed = asyncio.gather(js.streams_info(), js.account_info(), return_exceptions=True)
        read = asyncio.gather(
            *(js.consumers_info(name) for name in KTRDR_STREAMS), return_exceptions=True
        )
        (infos, account), consumers = await asyncio.gather(listed, read)
        if isinstance(infos, BaseException):
            return JetStreamOut(streams=[], problem=_jetstream_problem(infos))
        by_stream = {
            name: {c.name: c.num_pending or 0 for c in found}
            for name, found in zip(KTRDR_STREAMS, consumers, strict=True)
            if not isinstance(found, BaseException)
        }
        return JetStreamOut(
            streams=sorted((stream_out(i, by_stream) for i in infos), key=lambda s: s.name),
            account=None if isinstance(account, BaseException) else account_out(account),
        )


def pacing_out(pacing: dict[str, float]) -> PacingOut:
    """Return the connector's pacing counters (``IbStatus.pacing``) in words a reader knows."""

    def count(key: str) -> int:
        return max(0, round(pacing.get(key, 0.0)))

    def seconds(key: str) -> float | None:
        value = pacing.get(key)
        return None if value is None else max(0.0, value)

    return PacingOut(
        requests_in_window=count("hard_requests_in_window"),
        window_max=count("window_max"),
        window_s=seconds("window_s"),
        next_free_s=seconds("next_free_in_s"),
        waiting_requests=count("waiting_requests"),
        open_requests=count("open_requests"),
        soft_delay_s=seconds("soft_delay_s") or 0.0,
    )


def service_out(stats: _ServiceStats) -> ServiceStatsOut:
    """Return one ``$SRV.STATS`` answer as the overview shows it."""
    endpoints = [
        EndpointStatsOut(
            name=e.name,
            subject=e.subject,
            requests=max(0, e.num_requests),
            errors=max(0, e.num_errors),
            last_error=e.last_error or None,
            average_processing_ms=max(0, e.average_processing_time) / 1e6,
        )
        for e in stats.endpoints or []
    ]
    return ServiceStatsOut(
        name=stats.name,
        id=stats.id,
        version=stats.version,
        started=_utc_or_none(stats.started),
        requests=sum(e.requests for e in endpoints),
        errors=sum(e.errors for e in endpoints),
        endpoints=endpoints,
    )


def stream_out(info: StreamInfo, pending: dict[str, dict[str, int]]) -> StreamOut:
    """Return one stream's counts, with its consumers' pending messages where they were read."""
    name = info.config.name or ""
    return StreamOut(
        name=name,
        messages=info.state.messages,
        bytes=info.state.bytes,
        consumers=info.state.consumer_count,
        consumer_pending=pending.get(name),
    )


def account_out(info: AccountInfo) -> AccountOut:
    """Return the JetStream account's totals."""
    return AccountOut(
        memory_bytes=info.memory,
        storage_bytes=info.storage,
        streams=info.streams,
        consumers=info.consumers,
    )


def _decode_stats(data: bytes) -> ServiceStatsOut | None:
    try:
        return service_out(msgspec.json.decode(data, type=_ServiceStats))
    except msgspec.ValidationError as e:
        log.warning("skipping a $SRV.STATS answer that does not decode: %s", e)
        return None
    except msgspec.DecodeError as e:
        log.warning("skipping a $SRV.STATS answer that is not JSON: %s", e)
        return None


def _utc_or_none(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_DISCONNECTED = (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError)


def _jetstream_problem(error: BaseException) -> str:
    if isinstance(error, nats.errors.NoRespondersError):
        return "JetStream is not enabled on this NATS server (nobody answers its API)"
    if isinstance(error, (nats.errors.TimeoutError, TimeoutError)):
        return "JetStream did not answer in time (or this NATS user may not list streams)"
    if isinstance(error, _DISCONNECTED):
        return "the gateway is not connected to NATS right now; it reconnects on its own"
    if isinstance(error, nats.js.errors.APIError):
        return f"JetStream refused to list its streams: {error.description or error!r}"
    return f"JetStream could not be read: {error!r}"
