"""Fetch one chunk of bars: ask the IB boundary, and retry what is worth retrying.

The fetcher turns a ``Chunk`` into a ``HistoricalRequest``, asks the IB port
(``ports.IbPort``: ``boundary.IbBoundary``, or ``memory.ScriptedIb`` in tests) for it,
and decides from the typed answer: bars
clipped to the chunk's own range, a retry after the retry policy's delay, a
re-issue as soon as IB's link is back (IB dropped the request: 1101), the
segment back to the queue (no connection), or a ``ChunkFailed``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ib_async import BarData, Contract
from ktrdr_shared.errors import IbUnavailable, UnknownSymbol

from ktrdr_ib_connector.boundary import (
    Bars,
    Empty,
    Failed,
    Head,
    LinkLost,
    Owner,
    RequestTally,
    TimedOut,
)
from ktrdr_ib_connector.chunking import Chunk
from ktrdr_ib_connector.errors import FailureKind, IbFailure, RetryPolicy
from ktrdr_ib_connector.pacing import HistoricalRequest, PacingGate
from ktrdr_ib_connector.ports import IbPort
from ktrdr_ib_connector.scheduling import Sleeper

log = logging.getLogger(__name__)

NANOS = 1_000_000_000


class ChunkFailed(Exception):
    """A chunk could not be fetched; ``failure`` (an ``IbFailure``) says why and whether to retry
    later."""

    def __init__(self, failure: IbFailure, attempts: int) -> None:
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


def to_columns(bars: Iterable[BarData], chunk: Chunk) -> Columns:
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
    """Fetch chunks through one IB port, with the retry policy.

    Attributes:
        boundary: IB (``boundary.IbBoundary``; in tests ``memory.ScriptedIb``).
        gate: the pacing gate ``boundary`` passes requests through; the fetcher tunes
            its soft spacing from the answers.
        policy: when to ask again.
        time_scale: multiplies every retry delay (a simulator in compressed time).
        reconnect_wait_s: how long a segment cut off from IB waits in the queue.
        sleep: waits out a retry delay (a test injects one that records the delay).
    """

    boundary: IbPort
    gate: PacingGate
    policy: RetryPolicy
    time_scale: float = 1.0
    reconnect_wait_s: float = 5.0
    sleep: Sleeper = asyncio.sleep

    @property
    def requests_made(self) -> int:
        """Return the data requests sent to IB so far (all kinds)."""
        return self.boundary.requests_made

    async def fetch(
        self,
        contract: Contract,
        chunk: Chunk,
        what_to_show: str,
        use_rth: bool,
        hard: bool,
        owner: Owner | None = None,
    ) -> Columns:
        """Return the chunk's bars; each request sent is counted on ``owner.tally``.

        Raises:
            ChunkFailed: permanently, or after the retry policy gave up.
            IbUnavailable: the connection is down; retry the segment later.
        """
        owner = owner or Owner()
        key = HistoricalRequest(
            contract=str(contract.conId or contract.symbol),
            exchange=contract.exchange,
            what_to_show=what_to_show,
            bar_size=chunk.bar_size,
            duration=chunk.duration,
            end=chunk.end_text,
            use_rth=use_rth,
            hard=hard,
        )
        attempt = 0
        while True:
            answer = await self.boundary.historical(contract, key, owner)
            if isinstance(answer, Bars):
                if answer.bars:
                    self.gate.speed_up()
                return to_columns(answer.bars, chunk)
            if isinstance(answer, Empty):
                return to_columns([], chunk)
            if isinstance(answer, LinkLost):
                if answer.reissue:  # IB dropped it: ask again once the link is back
                    log.info(
                        "chunk %s %s: %s; re-issued", contract.symbol, chunk.end_text, answer.reason
                    )
                    continue
                # Not this chunk's fault: the whole segment goes back to the queue.
                raise IbUnavailable(answer.failure.message, delay_s=self.reconnect_wait_s)
            attempt += 1
            await self._before_retry(contract, chunk, answer, attempt)

    async def _before_retry(
        self, contract: Contract, chunk: Chunk, answer: Failed | TimedOut, attempt: int
    ) -> None:
        """Wait before the next try, or raise ``ChunkFailed`` when there is none."""
        failure = answer.failure
        if isinstance(answer, TimedOut) or failure.kind is FailureKind.PACING:
            self.gate.slow_down()
        delay = self.policy.next_delay(failure, attempt)
        if delay is None:
            raise ChunkFailed(failure, attempt)
        log.info(
            "chunk %s %s: %s; retry %d in %.1fs",
            contract.symbol,
            chunk.end_text,
            failure.message,
            attempt,
            delay,
        )
        await self.sleep(delay * self.time_scale)

    async def head_timestamp(
        self, contract: Contract, what_to_show: str, use_rth: bool
    ) -> datetime:
        """Return the earliest bar IB has for ``contract`` (one paced request).

        Raises:
            UnknownSymbol: IB has none for this contract and whatToShow.
            IbUnavailable: not connected, or no answer in time.
        """
        answer = await self.boundary.head_timestamp(contract, what_to_show, use_rth)
        if isinstance(answer, Head):
            return answer.head
        if isinstance(answer, Empty):
            raise UnknownSymbol(
                f"IB has no head timestamp for {contract.symbol}: {answer.message}",
                details={"ib_code": answer.ib_code},
            )
        if isinstance(answer, Failed) and not answer.failure.retryable:
            raise UnknownSymbol(
                f"IB has no head timestamp for {contract.symbol}: {answer.failure.message}",
                details={"ib_code": answer.failure.ib_code},
            )
        raise IbUnavailable(f"no head timestamp from IB: {answer.failure.message}")


__all__ = [
    "ChunkFailed",
    "Columns",
    "Fetcher",
    "IbFailure",
    "Owner",
    "RequestTally",
    "bar_time_ns",
    "to_columns",
]
