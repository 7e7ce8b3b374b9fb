"""Thin handlers: decode, call one core function, publish or reply."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime

import nats.errors
from ib_async import Contract, ContractDetails
from ib_async.wrapper import RequestError
from ktrdr_shared import codec
from ktrdr_shared.consumer import keep_alive, salvage_fields, salvage_job_id
from ktrdr_shared.errors import IbUnavailable, KtrdrError, UnknownSymbol
from ktrdr_shared.messages import (
    FetchBars,
    HeadTimestamp,
    HeadTimestampRequest,
    IbStatus,
    SegmentFailed,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import InstrumentType, default_what_to_show, symbol_key
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from ktrdr_ib_connector.client import IbConnection
from ktrdr_ib_connector.contracts import ContractResolver, symbol_info
from ktrdr_ib_connector.fetcher import Fetcher
from ktrdr_ib_connector.pacing import HistoricalRequest
from ktrdr_ib_connector.segments import SegmentCancelled, run_segment

log = logging.getLogger(__name__)


@dataclass
class Connector:
    """Everything the handlers share: the IB connection, the fetcher, JetStream."""

    connection: IbConnection
    fetcher: Fetcher
    js: JetStreamContext
    symbols: KeyValue | None = None
    keep_alive_s: float = 20.0
    resolver: ContractResolver = field(init=False)
    cancelled_jobs: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.resolver = ContractResolver(self._details)

    async def _details(self, query: Contract) -> list[ContractDetails]:
        if not await self.connection.wait_ready(self.fetcher.ready_timeout_s):
            raise IbUnavailable("not connected to IB; the request will be retried")
        try:
            return list(await self.connection.ib.reqContractDetailsAsync(query))
        except RequestError as e:
            if e.code == 200:
                return []
            raise IbUnavailable(f"IB error {e.code} looking up {query.symbol}: {e.message}") from e

    async def publish_event(self, event: Event) -> None:
        """Append an event to the event log."""
        await publish_event(self.js, event)

    async def publish_batch(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Append a bar batch; returns once JetStream has stored it."""
        await self.js.publish(subject, payload, headers=headers)

    # -- commands ---------------------------------------------------------------------

    async def handle_fetch(self, msg: Msg) -> None:
        """Run one ``FetchBars`` segment; a failed segment is reported, not retried forever."""
        command = codec.decode(msg.data, FetchBars, subject=msg.subject, headers=msg.headers)
        if command.job_id in self.cancelled_jobs:
            await self.publish_event(_failed(command, "cancelled", "the job was cancelled"))
            return
        if not self.connection.ready.is_set():
            raise IbUnavailable("not connected to IB; the segment stays queued", delay_s=2.0)
        try:
            details = await self.resolver.resolve(command.symbol, command.instrument_type)
        except UnknownSymbol as e:
            await self.publish_event(_failed(command, e.code, e.message, ib_code=200))
            return
        assert details.contract is not None
        beat = await keep_alive(msg, self.keep_alive_s)
        try:
            outcome = await run_segment(command, details.contract, self.fetcher,
                                        self.publish_batch,
                                        lambda: command.job_id in self.cancelled_jobs)  # fmt: skip
        except SegmentCancelled:
            await self.publish_event(_failed(command, "cancelled", "the job was cancelled"))
            return
        finally:
            beat.cancel()
        await self.publish_event(outcome)

    async def on_rejected(self, msg: Msg, error: KtrdrError) -> None:
        """Report a command that can never succeed (malformed, or failing every time)."""
        ids = _salvage_ids(msg.data)
        if ids is None:
            log.warning("rejected %s with no job to report to: %s", msg.subject, error.message)
            return
        job_id, segment_id = ids
        await self.publish_event(SegmentFailed(job_id=job_id, segment_id=segment_id,
                                               code=error.code, message=error.message))  # fmt: skip

    def note_cancel(self, job_id: str) -> None:
        """Remember a cancelled job (the most recent thousand)."""
        self.cancelled_jobs[job_id] = None
        while len(self.cancelled_jobs) > 1000:
            self.cancelled_jobs.popitem(last=False)

    # -- requests ---------------------------------------------------------------------

    async def status(self, _: StatusRequest) -> IbStatus:
        """Answer ``ktrdr.ib.status`` with the real state of the connection."""
        s, o = self.connection.state, self.connection.options
        connected = self.connection.ready.is_set()
        return IbStatus(connected=connected, host=o.host, port=o.port,
                        client_id=s.client_id, server_version=s.server_version, since=s.since,
                        requests_made=self.fetcher.requests_made,
                        pacing=self.fetcher.gate.state(), last_error=s.last_error,
                        server_time=await self._server_time() if connected else None)  # fmt: skip

    async def _server_time(self) -> datetime | None:
        """Return IB's clock (reqCurrentTime is not a historical request: no pacing)."""
        try:
            now = await asyncio.wait_for(self.connection.ib.reqCurrentTimeAsync(), 2.0)
        except (TimeoutError, ConnectionError, RequestError):
            return None
        return now if now.tzinfo else now.replace(tzinfo=UTC)

    async def validate(self, request: ValidateSymbol) -> SymbolInfo:
        """Answer ``ktrdr.ib.validate`` (KV cache first, then IB)."""
        key = f"{symbol_key(request.symbol)}.{request.instrument_type or 'ANY'}"
        cached = await self._kv_get(key)
        if cached is not None:
            return cached
        details = await self.resolver.resolve(request.symbol, request.instrument_type)
        info = symbol_info(request.symbol, details)
        if self.symbols is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.symbols.put(key, codec.encode(info))
        return info

    async def head_timestamp(self, request: HeadTimestampRequest) -> HeadTimestamp:
        """Answer ``ktrdr.ib.head_timestamp``: the earliest bar IB has for the symbol."""
        details = await self.resolver.resolve(request.symbol, request.instrument_type)
        contract = details.contract
        assert contract is not None
        what = request.what_to_show or default_what_to_show(InstrumentType(contract.secType))
        key = HistoricalRequest(contract=str(contract.conId), exchange=contract.exchange,
                                what_to_show=what, bar_size="", duration="",
                                end="head", use_rth=request.use_rth)  # fmt: skip
        if not await self.connection.wait_ready(self.fetcher.ready_timeout_s):
            raise IbUnavailable("not connected to IB")
        try:
            async with self.fetcher.gate.slot(key):
                self.fetcher.requests_made += 1
                head = await asyncio.wait_for(
                    self.connection.ib.reqHeadTimeStampAsync(contract, what, request.use_rth, 2),
                    self.fetcher.request_timeout_s,
                )
        except RequestError as e:
            raise UnknownSymbol(f"IB has no head timestamp for {request.symbol}: {e.message}",
                                details={"ib_code": e.code}) from e  # fmt: skip
        except TimeoutError as e:
            raise IbUnavailable("IB did not answer the head-timestamp request in time") from e
        if not isinstance(head, datetime):
            raise UnknownSymbol(f"IB has no head timestamp for {request.symbol}")
        moment = head if head.tzinfo else head.replace(tzinfo=UTC)
        return HeadTimestamp(symbol=request.symbol, what_to_show=what, head_timestamp=moment)

    async def _kv_get(self, key: str) -> SymbolInfo | None:
        if self.symbols is None:
            return None
        try:
            entry = await self.symbols.get(key)
        except (nats.errors.Error, KeyError):
            return None
        if entry is None or entry.value is None:
            return None
        return codec.decode(entry.value, SymbolInfo)


def _failed(
    command: FetchBars, code: str, message: str, ib_code: int | None = None
) -> SegmentFailed:
    return SegmentFailed(job_id=command.job_id, segment_id=command.segment_id, code=code,
                         message=message, ib_code=ib_code)  # fmt: skip


def _salvage_ids(data: bytes) -> tuple[str, str] | None:
    """Return (job_id, segment_id) from a payload that did not decode, if it carries them."""
    job, raw = salvage_job_id(data), salvage_fields(data)
    segment = (raw or {}).get("segment_id") or "unknown"
    valid_segment = isinstance(segment, str) and segment.replace("-", "").replace("_", "").isalnum()
    return (job, segment) if job is not None and valid_segment else None
