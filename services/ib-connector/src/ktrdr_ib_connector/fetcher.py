"""Fetch one chunk of bars through the pacing gate, with IB's errors classified and retried.

The fetcher is where a ``Chunk`` meets the wire: it waits for a ready
connection, takes a legal slot from the gate (in the name of the chunk's job
and priority), asks IB (formatDate=2, so intraday dates come back as UTC
instants), and turns what came back — bars, a ``RequestError``, silence until
the timeout, or a dropped connection — into either bars clipped to the chunk's
own range or a ``ChunkFailed``.

It is the one module that sends historical requests, and it owns their ids:
it takes the id from ib_async's public ``getReqId`` and sends with the public
client and wrapper calls ``reqHistoricalDataAsync`` itself is made of, so a
request cancelled while it waits for its answer (the job was cancelled) gets
``cancelHistoricalData`` with exactly its own id. Bars that arrive for it
afterwards land in a container nobody reads: they are dropped, never
published. Every request sent is counted on the chunk's ``RequestTally`` the
moment it goes out, whatever becomes of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from ib_async import BarDataList, Contract
from ib_async.wrapper import RequestError
from ktrdr_shared.errors import IbUnavailable, UnknownSymbol

from ktrdr_ib_connector import errors
from ktrdr_ib_connector.chunking import Chunk
from ktrdr_ib_connector.client import IbConnection
from ktrdr_ib_connector.errors import Classified, Failure, RetryPolicy
from ktrdr_ib_connector.pacing import HistoricalRequest, PacingGate

log = logging.getLogger(__name__)

NANOS = 1_000_000_000


class ChunkFailed(Exception):
    """A chunk could not be fetched; ``failure`` says why and whether to retry later."""

    def __init__(self, failure: Classified, attempts: int) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.attempts = attempts


@dataclass
class Columns:
    """Bars as parallel lists, ready for a ``BarBatch``."""

    ts: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]
    wap: list[float] | None
    count: list[int] | None

    def __len__(self) -> int:
        return len(self.ts)


def bar_time_ns(value: datetime | date) -> int:
    """Return a bar's open in UTC nanoseconds; daily dates are 00:00 UTC of the session date."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(aware.timestamp()) * NANOS + aware.microsecond * 1_000
    return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()) * NANOS


def to_columns(bars: BarDataList, chunk: Chunk) -> Columns:
    """Return the bars whose open lies in ``[chunk.start, chunk.end)``, as columns.

    IB's ``-1`` for volume, WAP and count (no trades for this whatToShow) become
    0 volume and absent WAP/count columns.
    """
    rows = [(bar_time_ns(b.date), b) for b in bars]
    rows = [(t, b) for t, b in rows if chunk.start <= t < chunk.end]
    rows.sort(key=lambda row: row[0])
    has_trades = any(b.barCount >= 0 and b.average >= 0 for _, b in rows)
    return Columns(
        ts=[t for t, _ in rows],
        open=[b.open for _, b in rows],
        high=[b.high for _, b in rows],
        low=[b.low for _, b in rows],
        close=[b.close for _, b in rows],
        volume=[max(float(b.volume), 0.0) for _, b in rows],
        wap=[b.average for _, b in rows] if has_trades else None,
        count=[int(b.barCount) for _, b in rows] if has_trades else None,
    )


def _no_bars() -> BarDataList:
    return BarDataList()  # type: ignore[no-untyped-call]  # ib_async leaves it untyped


@dataclass
class RequestTally:
    """What one segment's requests are doing (the fetcher keeps it; progress reports read it).

    Attributes:
        sent: historical requests sent to IB, retries included.
        waiting: chunks waiting at the pacing gate for their turn.
        in_flight: requests sent and not answered yet.
    """

    sent: int = 0
    waiting: int = 0
    in_flight: int = 0


@dataclass(frozen=True)
class Owner:
    """Whose requests these are: the job (the gate shares IB's budget between jobs), its
    priority (lower goes first) and the tally its requests are counted on."""

    job: str = ""
    priority: int = 5
    tally: RequestTally = field(default_factory=RequestTally)


@dataclass
class Fetcher:
    """Fetch chunks for one connection, through one gate."""

    connection: IbConnection
    gate: PacingGate
    policy: RetryPolicy
    request_timeout_s: float = 60.0
    ready_timeout_s: float = 30.0
    time_scale: float = 1.0
    reconnect_wait_s: float = 5.0
    requests_made: int = 0

    async def fetch(self, contract: Contract, chunk: Chunk, what_to_show: str, use_rth: bool,
                    hard: bool, owner: Owner | None = None) -> Columns:  # fmt: skip
        """Return the chunk's bars; each request sent is counted on ``owner.tally``.

        Raises:
            ChunkFailed: permanently, or after the retry policy gave up.
            IbUnavailable: the connection is down; retry the segment later.
        """
        owner = owner or Owner()
        key = HistoricalRequest(
            contract=str(contract.conId or contract.symbol), exchange=contract.exchange,
            what_to_show=what_to_show, bar_size=chunk.bar_size, duration=chunk.duration,
            end=chunk.end_text, use_rth=use_rth, hard=hard,
        )  # fmt: skip
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(contract, key, owner)
            if isinstance(outcome, BarDataList):
                return to_columns(outcome, chunk)
            if outcome.is_empty_answer:
                return to_columns(_no_bars(), chunk)
            if outcome.failure is Failure.CONNECTION_LOST:
                # Not this chunk's fault: the whole segment goes back to the queue.
                raise IbUnavailable(outcome.message, delay_s=self.reconnect_wait_s)
            delay = self.policy.next_delay(outcome, attempt)
            if delay is None:
                raise ChunkFailed(outcome, attempt)
            log.info("chunk %s %s: %s; retry %d in %.1fs", contract.symbol, chunk.end_text,
                     outcome.message, attempt, delay)  # fmt: skip
            if outcome.failure is Failure.PACING:
                self.gate.slow_down()
            await asyncio.sleep(delay * self.time_scale)

    async def _attempt(self, contract: Contract, key: HistoricalRequest,
                       owner: Owner) -> BarDataList | Classified:  # fmt: skip
        if not await self.connection.wait_ready(self.ready_timeout_s):
            return errors.connection_lost("not connected to IB")
        state = self.connection.state
        outages = state.hmds_outages
        try:
            async with contextlib.AsyncExitStack() as held:
                await self._take_slot(held, key, owner)
                bars = await self._request(contract, key, owner.tally)
        except RequestError as e:
            classified = errors.classify(e.code, e.message)
            farm_ok = state.farm_ok_at_error.pop(e.reqId, state.hmds_ok)
            if classified.is_empty_answer and (not farm_ok or state.hmds_outages != outages):
                # While the HMDS farm is down IB answers "no data" for data it has:
                # that is an outage, not an empty range, and must be asked again.
                return Classified(Failure.FARM_DOWN, True, 30.0, e.code, e.message)
            return classified
        except ConnectionError as e:
            return errors.connection_lost(str(e))
        if bars is None:
            self.gate.slow_down()
            return errors.timed_out(self.request_timeout_s)
        if bars:
            self.gate.speed_up()
        elif not self.connection.ib.isConnected():
            return errors.connection_lost("connection dropped during the request")
        return bars  # bars, or IB answered with none

    async def _take_slot(self, held: contextlib.AsyncExitStack, key: HistoricalRequest,
                         owner: Owner) -> None:  # fmt: skip
        """Wait at the gate for a legal slot, held until ``held`` closes.

        Cancelled while it waits, the chunk leaves the gate without spending a slot.
        """
        owner.tally.waiting += 1
        try:
            await held.enter_async_context(
                self.gate.slot(key, job=owner.job, priority=owner.priority)
            )
        finally:
            owner.tally.waiting -= 1

    async def _request(self, contract: Contract, key: HistoricalRequest,
                       tally: RequestTally) -> BarDataList | None:  # fmt: skip
        """Send one historical request; return its bars, or None when IB stayed silent.

        Raises:
            RequestError: IB answered with an error for this request.
            ConnectionError: not connected, or the connection dropped meanwhile.
        """
        ib = self.connection.ib
        client: Any = ib.client  # ib_async's client and wrapper are untyped
        wrapper: Any = ib.wrapper
        req_id = client.getReqId()
        bars = _no_bars()
        answered = wrapper.startReq(req_id, contract, container=bars)
        client.reqHistoricalData(req_id, contract, key.end, key.duration, key.bar_size,
                                 key.what_to_show, key.use_rth, 2, False, [])  # fmt: skip
        self.requests_made += 1
        tally.sent += 1
        tally.in_flight += 1
        try:
            await asyncio.wait_for(answered, self.request_timeout_s)
        except TimeoutError:
            client.cancelHistoricalData(req_id)
            return None
        except asyncio.CancelledError:
            if ib.isConnected():  # the job was cancelled: stop IB's work on it too
                client.cancelHistoricalData(req_id)
            raise
        finally:
            tally.in_flight -= 1
        return bars

    async def head_timestamp(self, contract: Contract, what_to_show: str,
                             use_rth: bool) -> datetime:  # fmt: skip
        """Return the earliest bar IB has for ``contract`` (one paced request).

        Raises:
            UnknownSymbol: IB has none for this contract and whatToShow.
            IbUnavailable: not connected, or no answer in time.
        """
        key = HistoricalRequest(contract=str(contract.conId), exchange=contract.exchange,
                                what_to_show=what_to_show, bar_size="", duration="",
                                end="head", use_rth=use_rth)  # fmt: skip
        if not await self.connection.wait_ready(self.ready_timeout_s):
            raise IbUnavailable("not connected to IB")
        ib = self.connection.ib
        try:
            async with self.gate.slot(key):
                self.requests_made += 1
                head = await asyncio.wait_for(
                    ib.reqHeadTimeStampAsync(contract, what_to_show, use_rth, 2),
                    self.request_timeout_s,
                )
        except RequestError as e:
            raise UnknownSymbol(f"IB has no head timestamp for {contract.symbol}: {e.message}",
                                details={"ib_code": e.code}) from e  # fmt: skip
        except TimeoutError as e:
            raise IbUnavailable("IB did not answer the head-timestamp request in time") from e
        if not isinstance(head, datetime):
            raise UnknownSymbol(f"IB has no head timestamp for {contract.symbol}")
        return head if head.tzinfo else head.replace(tzinfo=UTC)
