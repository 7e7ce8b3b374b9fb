"""What the fetcher does with each typed answer of the IB boundary (an in-memory boundary)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from ib_async import BarData, BarDataList, Contract
from ktrdr_ib_connector.boundary import (
    Bars,
    Empty,
    Failed,
    HistoricalAnswer,
    LinkLost,
    Owner,
    TimedOut,
)
from ktrdr_ib_connector.chunking import plan_chunks
from ktrdr_ib_connector.client import ConnectionOptions, IbConnection
from ktrdr_ib_connector.errors import Failure, RetryPolicy, classify
from ktrdr_ib_connector.fetcher import ChunkFailed, Fetcher
from ktrdr_ib_connector.pacing import HistoricalRequest, PacingGate
from ktrdr_shared.errors import IbUnavailable
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

START = dt.datetime(2024, 6, 24, tzinfo=dt.UTC)
HMDS = "Historical Market Data Service error message:"


class ScriptedBoundary:
    """Answer each request with the next scripted answer; count the requests."""

    def __init__(self, answers: list[HistoricalAnswer]) -> None:
        self._answers: Iterator[HistoricalAnswer] = iter(answers)
        self.asked = 0

    async def historical(
        self,
        contract: Contract,
        key: HistoricalRequest,
        owner: Owner,
        ready_timeout_s: float | None = None,
    ) -> HistoricalAnswer:
        self.asked += 1
        owner.tally.sent += 1
        return next(self._answers)


async def _fetch(answers: list[HistoricalAnswer]) -> tuple[Any, ScriptedBoundary]:
    async def publish(_: Event) -> None:
        return None

    fetcher = Fetcher(
        IbConnection(ConnectionOptions(), publish),
        PacingGate(),
        RetryPolicy(max_attempts=3),
        time_scale=0.0,
    )
    boundary = ScriptedBoundary(answers)
    fetcher.boundary = boundary  # type: ignore[assignment]
    start_ns = int(START.timestamp()) * 1_000_000_000
    chunk = plan_chunks(Timeframe.H1, start_ns, start_ns + 86_400 * 1_000_000_000)[0]
    contract = Contract(symbol="AAPL", secType="STK", exchange="SMART", conId=1)
    try:
        return await fetcher.fetch(contract, chunk, "TRADES", False, False), boundary
    except (ChunkFailed, IbUnavailable) as e:
        return e, boundary


def _bars() -> BarDataList:
    bars = BarDataList()  # type: ignore[no-untyped-call]
    bars.append(
        BarData(
            date=START + dt.timedelta(hours=1),
            open=1.0,
            high=2.0,
            low=0.5,
            close=1.5,
            volume=10.0,
            average=1.2,
            barCount=3,
        )
    )
    return bars


async def test_bars_are_returned_and_empty_is_an_answer() -> None:
    columns, boundary = await _fetch([Bars(_bars())])
    assert len(columns) == 1
    columns, boundary = await _fetch([Empty("HMDS query returned no data", 162)])
    assert len(columns) == 0
    assert boundary.asked == 1


async def test_a_request_ib_dropped_is_reissued_without_using_an_attempt() -> None:
    dropped = LinkLost("IB dropped the request (1101)", reissue=True)
    timeout = TimedOut(1.0)
    columns, boundary = await _fetch([dropped, timeout, dropped, timeout, dropped, Bars(_bars())])
    assert len(columns) == 1
    assert boundary.asked == 6  # 3 re-issues are free, 2 timeouts within 3 attempts


async def test_timeouts_use_attempts_and_then_fail() -> None:
    failed, boundary = await _fetch([TimedOut(1.0)] * 5)
    assert isinstance(failed, ChunkFailed)
    assert failed.failure.failure is Failure.TIMEOUT
    assert boundary.asked == 3


async def test_no_connection_sends_the_segment_back_to_the_queue() -> None:
    failed, boundary = await _fetch([LinkLost("not connected to IB: connecting")])
    assert isinstance(failed, IbUnavailable)
    assert boundary.asked == 1


async def test_forex_trades_fails_on_the_first_answer() -> None:
    refusal = classify(162, HMDS + "No historical market data for EUR/CASH@FXSUBPIP Last 1d")
    failed, boundary = await _fetch([Failed(refusal)] * 5)
    assert isinstance(failed, ChunkFailed)
    assert "use MIDPOINT" in failed.failure.message
    assert boundary.asked == 1
