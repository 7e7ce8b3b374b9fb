"""What the fetcher does with each typed answer of the IB port, one chunk at a time
(``memory.ScriptedIb``; the segment-level decisions are in ``test_orchestration.py``)."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_async import Contract
from ktrdr_ib_connector.boundary import Empty, HistoricalAnswer, LinkLost, Owner, TimedOut
from ktrdr_ib_connector.chunking import plan_chunks
from ktrdr_ib_connector.errors import FailureKind, RetryPolicy
from ktrdr_ib_connector.fetcher import ChunkFailed, Columns, Fetcher
from ktrdr_ib_connector.memory import ScriptedIb, VirtualClock, stock
from ktrdr_ib_connector.pacing import PacingGate
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

START_NS = int(dt.datetime(2024, 6, 24, tzinfo=dt.UTC).timestamp()) * 1_000_000_000
CHUNK = plan_chunks(Timeframe.H1, START_NS, START_NS + 86_400 * 1_000_000_000)[0]
AAPL = Contract(symbol="AAPL", secType="STK", exchange="SMART", conId=1)


async def _fetch(*answers: HistoricalAnswer) -> tuple[Columns | ChunkFailed, ScriptedIb, Owner]:
    clock = VirtualClock()
    gate = PacingGate(clock=clock.now, sleep=clock.sleep)
    ib = ScriptedIb(gate, {"AAPL": [stock("AAPL", 1)]}, clock=clock.now)
    ib.answer(CHUNK.end_text, *answers)
    fetcher = Fetcher(ib, gate, RetryPolicy(max_attempts=3), sleep=clock.sleep)
    owner = Owner(job="j")
    try:
        return await fetcher.fetch(AAPL, CHUNK, "TRADES", False, False, owner), ib, owner
    except ChunkFailed as e:
        return e, ib, owner


async def test_bars_are_clipped_to_the_chunk_and_empty_is_an_answer() -> None:
    columns, ib, _ = await _fetch()  # the script's default: one bar before the end
    assert isinstance(columns, Columns) and len(columns) == 1
    assert CHUNK.start <= columns.ts[0] < CHUNK.end
    columns, ib, owner = await _fetch(Empty("HMDS query returned no data", 162))
    assert isinstance(columns, Columns) and len(columns) == 0
    assert len(ib.asked) == owner.tally.sent == 1


async def test_a_request_ib_dropped_is_reissued_without_using_an_attempt() -> None:
    dropped = LinkLost("IB dropped the request (1101)", reissue=True)
    timeout = TimedOut(1.0)
    columns, ib, owner = await _fetch(dropped, timeout, dropped, timeout, dropped)
    assert isinstance(columns, Columns) and len(columns) == 1
    assert len(ib.asked) == owner.tally.sent == 6  # 3 re-issues free, 2 timeouts in 3 attempts


async def test_timeouts_use_attempts_and_then_fail() -> None:
    failed, ib, _ = await _fetch(*[TimedOut(1.0)] * 5)
    assert isinstance(failed, ChunkFailed)
    assert failed.failure.kind is FailureKind.TIMEOUT
    assert failed.attempts == 3
    assert len(ib.asked) == 3
