"""Fetch one chunk of bars through the pacing gate, with IB's errors classified and retried.

The fetcher is where a ``Chunk`` meets the wire: it waits for a ready
connection, takes a legal slot from the gate, asks ib_async (formatDate=2,
so intraday dates come back as UTC instants), and turns what came back — bars,
a ``RequestError``, silence until the timeout, or a dropped connection — into
either bars clipped to the chunk's own range or a ``ChunkFailed``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ib_async import BarDataList, Contract
from ib_async.wrapper import RequestError
from ktrdr_shared.errors import IbUnavailable

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

    async def fetch(self, contract: Contract, chunk: Chunk, what_to_show: str,
                    use_rth: bool, hard: bool) -> tuple[Columns, int]:  # fmt: skip
        """Return the chunk's bars and how many IB requests it took.

        Raises:
            ChunkFailed: permanently, or after the retry policy gave up.
            IbUnavailable: the connection is down; retry the segment later.
        """
        key = HistoricalRequest(
            contract=str(contract.conId or contract.symbol), exchange=contract.exchange,
            what_to_show=what_to_show, bar_size=chunk.bar_size, duration=chunk.duration,
            end=chunk.end_text, use_rth=use_rth, hard=hard,
        )  # fmt: skip
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._attempt(contract, chunk, key)
            if isinstance(outcome, BarDataList):
                return to_columns(outcome, chunk), attempt
            if outcome.is_empty_answer:
                return to_columns(BarDataList(), chunk), attempt
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

    async def _attempt(self, contract: Contract, chunk: Chunk,
                       key: HistoricalRequest) -> BarDataList | Classified:  # fmt: skip
        if not await self.connection.wait_ready(self.ready_timeout_s):
            return errors.connection_lost("not connected to IB")
        ib = self.connection.ib
        state = self.connection.state
        started, outages = time.monotonic(), state.hmds_outages
        req_id = -1
        try:
            async with self.gate.slot(key):
                self.requests_made += 1
                req_id = ib.client._reqIdSeq  # the id ib_async is about to use, for cancel
                try:
                    bars = await ib.reqHistoricalDataAsync(
                        contract, chunk.end_text, chunk.duration, chunk.bar_size,
                        key.what_to_show, key.use_rth, formatDate=2,
                        timeout=self.request_timeout_s,
                    )  # fmt: skip
                except asyncio.CancelledError:
                    if ib.isConnected():
                        ib.client.cancelHistoricalData(req_id)  # the job was cancelled
                    raise
        except RequestError as e:
            classified = errors.classify(e.code, e.message)
            farm_ok = state.farm_ok_at_error.pop(req_id, state.hmds_ok)
            if classified.is_empty_answer and (not farm_ok or state.hmds_outages != outages):
                # While the HMDS farm is down IB answers "no data" for data it has:
                # that is an outage, not an empty range, and must be asked again.
                return Classified(Failure.FARM_DOWN, True, 30.0, e.code, e.message)
            return classified
        except ConnectionError as e:
            return errors.connection_lost(str(e))
        elapsed = time.monotonic() - started
        if bars:
            self.gate.speed_up()
            return bars
        if not ib.isConnected():
            return errors.connection_lost("connection dropped during the request")
        if elapsed >= self.request_timeout_s * 0.99:
            self.gate.slow_down()
            return errors.timed_out(self.request_timeout_s)
        return bars  # IB answered, with no bars
