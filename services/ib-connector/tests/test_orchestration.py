"""The connector's orchestration on in-memory adapters: ``FetchBars`` -> segment -> events.

``handle_fetch`` runs as in the service, with the real chunking, contract resolver, retry
policy and pacing gate; IB is a table (``memory.ScriptedIb``), the event log a list, the
clock virtual. Each test reads what the connector decided: the requests IB got and at which
instant of the gate's clock, the delays it chose to wait, the events and batches it
appended, what it raised for the queue. Nothing here opens a socket or sleeps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math

import pytest
from ib_async import BarData, Contract, ContractDetails
from ktrdr_ib_connector.boundary import Bars, Failed, LinkLost, TimedOut
from ktrdr_ib_connector.chunking import Chunk, plan_chunks
from ktrdr_ib_connector.errors import IbFailure, classify
from ktrdr_ib_connector.memory import InMemory, Stall, in_memory, segment_command, stock
from ktrdr_shared import codec, subjects
from ktrdr_shared.errors import IbUnavailable, PermanentError, ServiceTimeout
from ktrdr_shared.messages import (
    BarBatch,
    CancelRequested,
    FetchBars,
    HeadTimestampRequest,
    JobCancelled,
    JobFailed,
    SegmentFailed,
    SegmentFetched,
    SegmentProgress,
    StatusRequest,
    ValidateSymbol,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.messages.jobs import ProgressReason
from ktrdr_shared.testing.queue import MemoryCommand
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow, to_unix_nanos

pytestmark = pytest.mark.unit

END = dt.datetime(2024, 6, 26, tzinfo=dt.UTC)
YEARS_3 = dt.timedelta(weeks=3 * 52)  # hourly bars: three 52-week requests
HMDS = "Historical Market Data Service error message:"


def _fetch(
    tf: Timeframe = Timeframe.H1,
    span: dt.timedelta = YEARS_3,
    symbol: str = "AAPL",
    job: str = "a" * 32,
) -> FetchBars:
    return segment_command(symbol, tf, END - span, END, job_id=job)


def _delivered(command: FetchBars) -> MemoryCommand:
    return MemoryCommand.of(command, subjects.CMD_IB_FETCH)


def _chunks(command: FetchBars) -> list[Chunk]:
    start, end = to_unix_nanos(command.start), to_unix_nanos(command.end)
    return plan_chunks(command.timeframe, start, end)


def _outcome(world: InMemory) -> SegmentFetched | SegmentFailed:
    found = [e for _, e in world.events.events if isinstance(e, SegmentFetched | SegmentFailed)]
    assert len(found) == 1, found
    return found[0]


def _done(c: SegmentFetched | SegmentFailed) -> tuple[int, int, int]:
    """Return what a segment did: (chunks done, bars, IB requests)."""
    return (c.chunks if isinstance(c, SegmentFetched) else c.chunks_done, c.bars, c.ib_requests)


def _batches(world: InMemory) -> list[BarBatch]:
    return [codec.decode(p, BarBatch, headers=h) for _, p, h in world.events.batches]


async def test_a_segment_is_fetched_in_chunks_each_published_once() -> None:
    world, command = in_memory(), _fetch()
    await world.connector.handle_fetch(_delivered(command))
    chunks = _chunks(command)
    assert len(chunks) == 3
    assert sorted(a.end for a in world.ib.asked) == sorted(c.end_text for c in chunks)
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFetched)
    assert _done(outcome) == (3, 3, 3)
    batches = _batches(world)
    assert sorted(b.chunk_index for b in batches) == [0, 1, 2]
    assert {b.chunk_count for b in batches} == {3}
    assert {s for s, _, _ in world.events.batches} == {"ktrdr.bars.AAPL.1h"}
    ids = [h["Nats-Msg-Id"] for _, _, h in world.events.batches]
    assert len(set(ids)) == 3  # each batch its own content-derived id
    assert world.clock.slept == []  # nothing had to wait


async def test_pacing_holds_the_61st_small_bar_request_for_the_ten_minute_window() -> None:
    world = in_memory()
    command = _fetch(Timeframe.S1, dt.timedelta(minutes=30 * 62))  # 62 requests of 1800 S
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFetched)
    assert _done(outcome) == (62, 62, 62)
    sent = [a.at for a in world.ib.asked]
    assert sent == sorted(sent)
    # IB's rules, as the gate decided them on its clock: 60 in any 10 minutes ...
    assert sent[59] - sent[0] < 600
    assert sent[60] - sent[0] >= 600
    assert all(later - sent[i] >= 600 for i, later in enumerate(sent[60:]))
    # ... and at most 5 per contract in 2 seconds.
    assert all(sent[i + 5] - sent[i] >= 2.0 for i in range(len(sent) - 5))
    assert max(world.clock.slept) > 500  # one long wait for the window, decided not slept
    assert world.connector.fetcher.gate.state()["open_requests"] == 0


@pytest.mark.parametrize(
    ("refusal", "delay_s"),
    [
        (classify(322, "Only 50 simultaneous API historical data requests allowed."), 2.0),
        (classify(162, HMDS + "Historical data request pacing violation"), 15.0),
        (classify(2105, "HMDS data farm connection is broken:ushmds"), 30.0),
        (classify(99999, "something new"), 10.0),
    ],
    ids=["too_many_open", "pacing", "farm_down", "unknown"],
)
async def test_a_refused_chunk_is_asked_again_after_the_decided_delay(
    refusal: IbFailure, delay_s: float
) -> None:
    world, command = in_memory(), _fetch()
    middle = _chunks(command)[1].end_text
    world.ib.answer(middle, Failed(refusal))
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFetched)
    assert _done(outcome) == (3, 3, 4)
    assert [a.outcome for a in world.ib.asked if a.end == middle] == ["Failed", "Bars"]
    assert world.clock.slept == [delay_s]


async def test_a_timeout_uses_up_the_attempts_then_fails_the_segment_retryable() -> None:
    world, command = in_memory(), _fetch()
    first = _chunks(command)[0].end_text
    world.ib.answer(first, *[TimedOut(60.0)] * 5)
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert (outcome.code, outcome.retryable, outcome.ib_code) == ("timeout", True, None)
    assert "no answer from IB within 60s" in outcome.message
    assert _done(outcome) == (2, 2, 7)  # the other two chunks, five tries of the first
    # Backoff 1, 2, 4, 8 s, never shorter than a timeout's own 5 s.
    assert world.clock.slept == [5.0, 5.0, 5.0, 8.0]
    assert world.connector.fetcher.gate.soft_delay_s > 0  # IB is slow: large bars spaced out


async def test_a_request_ib_dropped_is_reissued_without_waiting() -> None:
    world, command = in_memory(), _fetch()
    first = _chunks(command)[0].end_text
    world.ib.answer(first, LinkLost("IB dropped the request (1101)", reissue=True))
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFetched)
    assert _done(outcome) == (3, 3, 4)
    assert world.clock.slept == []


async def test_forex_trades_fails_on_the_first_answer_saying_use_midpoint() -> None:
    world, command = in_memory(), _fetch()
    first = _chunks(command)[0].end_text
    text = HMDS + "No historical market data for EUR/CASH@FXSUBPIP Last 1d"
    world.ib.answer(first, Failed(classify(162, text)))
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert (outcome.code, outcome.retryable, outcome.ib_code) == ("invalid_request", False, 162)
    assert "use MIDPOINT" in outcome.message
    assert [a.end for a in world.ib.asked].count(first) == 1  # not asked again
    assert world.clock.slept == []


@pytest.mark.parametrize(
    "high", [math.inf, math.nan, 1.0], ids=["infinite", "nan", "high_below_low"]
)
async def test_bad_bars_from_ib_fail_the_segment_and_are_not_published(high: float) -> None:
    world, command = in_memory(), _fetch()
    first = _chunks(command)[0]
    opens = dt.datetime.fromtimestamp(first.start // 10**9, dt.UTC)
    bad = BarData(date=opens, open=10.0, high=high, low=9.0, close=9.5, volume=1.0)
    world.ib.answer(first.end_text, Bars([bad]))
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert (outcome.code, outcome.retryable) == ("invalid_bars", False)
    assert 0 not in {b.chunk_index for b in _batches(world)}


async def test_an_unknown_symbol_fails_at_once_without_a_historical_request() -> None:
    world = in_memory()
    await world.connector.handle_fetch(_delivered(_fetch(symbol="ZZZZQ")))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert (outcome.code, outcome.ib_code, outcome.retryable) == ("unknown_symbol", 200, False)
    assert "ZZZZQ" in outcome.message
    assert world.ib.asked == []
    assert world.events.batches == []


async def test_a_cancel_mid_segment_cancels_the_request_in_flight_and_says_what_was_done() -> None:
    world, command = in_memory(), _fetch()
    stall = Stall()
    middle = _chunks(command)[1].end_text
    world.ib.answer(middle, stall)
    work = asyncio.create_task(world.connector.handle_fetch(_delivered(command)))
    await stall.reached.wait()
    await world.events.wait_for(lambda: len(world.events.batches) == 2)
    world.connector.cancels.stop(command.job_id, "cancel requested")
    await work
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert (outcome.code, outcome.retryable) == ("cancelled", False)
    assert _done(outcome) == (2, 2, 3)
    assert [a.outcome for a in world.ib.asked if a.end == middle] == ["cancelled"]
    assert world.connector.cancels.running_jobs() == []


async def test_a_cancel_while_chunks_wait_at_the_gate_sends_none_of_them() -> None:
    world = in_memory()
    world.clock.pause()  # the gate's wait for IB's 2-second burst rule never ends
    command = _fetch(Timeframe.S1, dt.timedelta(minutes=30 * 62))
    work = asyncio.create_task(world.connector.handle_fetch(_delivered(command)))
    await world.events.wait_for(lambda: len(world.events.batches) == 5)
    gate = world.connector.fetcher.gate
    assert gate.waiting(command.job_id) == 57
    world.connector.cancels.stop(command.job_id, "cancel requested")
    await work
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert outcome.code == "cancelled"
    assert _done(outcome) == (5, 5, 5)
    assert len(world.ib.asked) == 5
    assert gate.waiting() == 0  # they left the gate
    assert gate.state()["requests_sent"] == 5  # without spending a slot


@pytest.mark.parametrize(
    "ended",
    [
        CancelRequested(job_id="b" * 32, reason="user"),
        JobCancelled(job_id="b" * 32, reason="user"),
        JobFailed(job_id="b" * 32, code="timeout", message="gave up"),
    ],
    ids=["cancel_requested", "cancelled", "failed"],
)
async def test_a_job_ended_before_its_segment_starts_is_answered_without_asking_ib(
    ended: Event,
) -> None:
    world, command = in_memory(), _fetch(job="b" * 32)
    await world.events.append(ended)  # e.g. before this connector started
    await world.connector.handle_fetch(_delivered(command))
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFailed)
    assert outcome.code == "cancelled"
    assert _done(outcome) == (0, 0, 0)
    assert world.ib.asked == []
    assert world.ib.requests_made == 0


async def test_an_unreadable_event_log_sends_the_command_back_before_ib_is_asked() -> None:
    world = in_memory()
    world.events.unreadable = True
    with pytest.raises(ServiceTimeout):  # retryable: the consumer naks it
        await world.connector.handle_fetch(_delivered(_fetch()))
    assert world.ib.asked == []
    assert world.events.events == []


async def test_ib_not_ready_sends_the_command_back_untouched() -> None:
    world = in_memory()
    world.link.ready.clear()
    with pytest.raises(IbUnavailable) as caught:
        await world.connector.handle_fetch(_delivered(_fetch()))
    assert caught.value.delay_s == 2.0
    assert world.ib.asked == []
    assert world.events.events == []  # it never started: nothing to report


async def test_a_redelivered_fetch_command_appends_no_batch_twice() -> None:
    world, command = in_memory(), _fetch()
    msg = _delivered(command)
    await world.connector.handle_fetch(msg)
    await world.connector.handle_fetch(msg)  # its ack was lost: delivered again
    # Same content, same ids: the log drops the three batches and the report.
    assert len(world.events.batches) == 3
    assert world.events.duplicates == 4
    [report] = world.events.of_type(SegmentFetched)
    assert _done(report) == (3, 3, 3)
    assert len(world.ib.asked) == 6  # IB was asked again: the queue cannot know


async def test_ib_lost_mid_segment_is_requeued_and_the_retry_counts_every_request() -> None:
    world, command = in_memory(), _fetch()
    last = _chunks(command)[2].end_text
    world.ib.answer(last, LinkLost("gateway closed the connection"))
    msg = _delivered(command)
    with pytest.raises(IbUnavailable) as caught:
        await world.connector.handle_fetch(msg)
    assert caught.value.delay_s == world.connector.fetcher.reconnect_wait_s
    assert world.events.of_type(SegmentFetched) == []
    assert world.events.of_type(SegmentFailed) == []
    [lost] = world.events.of_type(SegmentProgress)
    assert lost.state is ProgressReason.IB_DISCONNECTED
    assert lost.ib_requests == 2
    # Delivered again once IB is back: every chunk is asked again, nothing appended twice.
    await world.connector.handle_fetch(msg)
    outcome = _outcome(world)
    assert isinstance(outcome, SegmentFetched)
    assert _done(outcome) == (3, 3, 5)  # 2 of the first attempt, 3 of this one
    assert outcome.ib_requests == len(world.ib.asked)
    assert len(world.events.batches) == 3


async def test_a_malformed_command_is_permanent_and_reported_to_its_job() -> None:
    world = in_memory()
    job = "c" * 32
    by_hand = (
        f'{{"job_id": "{job}", "segment_id": "s9", "symbol": "AAPL", "timeframe": "2h",'
        ' "start": "2024-06-20T00:00:00Z", "end": "2024-06-21T00:00:00Z",'
        ' "instrument_type": "STK", "what_to_show": "TRADES"}'
    )
    msg = MemoryCommand(by_hand.encode(), subjects.CMD_IB_FETCH)
    with pytest.raises(PermanentError) as caught:  # the consumer terms it ...
        await world.connector.handle_fetch(msg)
    await world.connector.on_rejected(msg, caught.value)  # ... and tells the connector
    [failed] = world.events.of_type(SegmentFailed)
    assert (failed.job_id, failed.segment_id, failed.code) == (job, "s9", "invalid_request")
    assert "timeframe" in failed.message and "2h" in failed.message
    garbage = MemoryCommand(b"\x00 not json", subjects.CMD_IB_FETCH)
    await world.connector.on_rejected(garbage, caught.value)
    assert len(world.events.events) == 1  # no job to report to


async def test_a_small_bar_backfill_waiting_for_ib_does_not_hold_back_another_job() -> None:
    world = in_memory()
    world.clock.pause()  # the backfill's wait at the gate does not end
    backfill = _fetch(Timeframe.S1, dt.timedelta(minutes=30 * 62), job="d" * 32)
    slow = asyncio.create_task(world.connector.handle_fetch(_delivered(backfill)))
    await world.events.wait_for(lambda: len(world.events.batches) == 5)
    hourly = _fetch(symbol="MSFT", job="e" * 32)
    await world.connector.handle_fetch(_delivered(hourly))
    [done] = world.events.of_type(SegmentFetched)
    assert done.job_id == hourly.job_id
    assert not slow.done()
    world.connector.cancels.stop(backfill.job_id, "cancel requested")
    await slow


# -- requests ---------------------------------------------------------------------------


async def test_validate_and_head_timestamp_ask_ib_once_each() -> None:
    world = in_memory()
    world.ib.heads["AAPL"] = dt.datetime(1980, 12, 12, 14, 30, tzinfo=dt.UTC)
    info = await world.connector.validate(ValidateSymbol(symbol="AAPL"))
    assert (info.instrument_type, info.exchange, info.con_id) == (
        InstrumentType.STK,
        "SMART",
        265598,
    )
    head = await world.connector.head_timestamp(HeadTimestampRequest(symbol="AAPL"))
    assert head.what_to_show is WhatToShow.TRADES
    assert head.head_timestamp == world.ib.heads["AAPL"]
    assert world.ib.requests_made == 1  # the head timestamp; contract details are not data
    assert world.connector.fetcher.gate.state()["requests_sent"] == 1  # paced like bars
    status = await world.connector.status(StatusRequest())
    assert status.connected and status.last_error is None
    assert status.requests_made == 1
    assert status.server_time == world.ib.server_now


async def test_validate_tries_forex_stock_future_then_index() -> None:
    index = Contract(secType="IND", symbol="SPX", exchange="CBOE", currency="USD", conId=416904)
    pair = Contract(secType="CASH", symbol="EUR", currency="USD", exchange="IDEALPRO", conId=1)
    world = in_memory(
        {
            "SPX": [ContractDetails(contract=index)],
            "EUR": [ContractDetails(contract=pair)],
            "AAPL": [stock("AAPL", 265598)],
        }
    )
    found = {}
    for symbol in ("EURUSD", "AAPL", "SPX"):
        found[symbol] = (await world.connector.validate(ValidateSymbol(symbol=symbol))).exchange
    assert found == {"EURUSD": "IDEALPRO", "AAPL": "SMART", "SPX": "CBOE"}
    # A six-letter pair is asked as forex first; a name that is no pair starts at stocks;
    # a future is asked live, then among the expired.
    tried = ["CASH EUR", "STK AAPL", "STK SPX", "FUT SPX", "FUT SPX", "IND SPX"]
    assert world.ib.looked_up == tried


async def test_requests_needing_ib_while_it_is_not_ready_are_refused_saying_why() -> None:
    world = in_memory()
    world.link.ready.clear()
    world.link.state.last_error = "connect to 127.0.0.1:4002 failed: ConnectionRefusedError()"
    world.connector.ib_wait_s = 0  # nothing here would connect meanwhile
    status = await world.connector.status(StatusRequest())
    assert not status.connected
    assert status.last_error == world.link.state.last_error
    assert status.server_time is None
    for request in (
        world.connector.validate(ValidateSymbol(symbol="AAPL")),
        world.connector.head_timestamp(HeadTimestampRequest(symbol="AAPL")),
    ):
        with pytest.raises(
            IbUnavailable, match=r"IB is not available: connect to 127\.0\.0\.1:4002"
        ):
            await request
    assert world.ib.requests_made == 0
