"""A client that ignores pacing gets 162 at exactly IB's thresholds, in compressed time."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import Stock
from ktrdr_ib_sim.rawclient import error_code, head_timestamp_request, historical_request

pytestmark = pytest.mark.integration

END = "20240628 16:00:00 US/Eastern"
SCALE = 0.1  # 15 s -> 1.5 s, 2 s -> 0.2 s, 10 min -> 60 s
PACING_TEXT = "Historical data request pacing violation"


async def small_bars(ib, contract, duration: str, what: str = "TRADES"):
    return await ib.reqHistoricalDataAsync(contract, END, duration, "5 secs", what, False, 2)


@pytest.fixture
async def paced(start_sim, connect_ib):
    sim = await start_sim(time_scale=SCALE)
    client = await connect_ib(sim.port, 1)
    aapl, msft = await client.ib.qualifyContractsAsync(
        Stock("AAPL", "SMART", "USD"), Stock("MSFT", "SMART", "USD")
    )
    return sim, client, aapl, msft


async def test_identical_request_within_15_s_is_refused_and_later_served(paced) -> None:
    sim, client, aapl, _ = paced
    assert len(await small_bars(client.ib, aapl, "60 S")) == 12
    assert len(await small_bars(client.ib, aapl, "60 S")) == 0  # identical: refused
    assert len(await small_bars(client.ib, aapl, "120 S")) == 24  # one field differs: served
    assert client.errors.codes.count(162) == 1
    await asyncio.sleep(15 * SCALE)  # let the 15-second window (scaled) pass
    assert len(await small_bars(client.ib, aapl, "60 S")) == 12
    counters = sim.counters()
    assert (counters["pacing_violations"], counters["pacing_by_rule"]) == (1, {"IDENTICAL": 1})


async def test_five_requests_per_series_in_2_s_pass_and_the_sixth_fails(paced) -> None:
    sim, client, aapl, msft = paced
    # All six leave ib_async at once (well under its 45 msg/s) and arrive inside 2 s (scaled).
    results = await asyncio.gather(*(small_bars(client.ib, aapl, f"{60 + n} S") for n in range(6)))
    assert [len(r) > 0 for r in results] == [True] * 5 + [False]
    assert len(await small_bars(client.ib, msft, "60 S")) == 12  # another contract is unaffected
    assert sim.counters()["pacing_by_rule"] == {"BURST": 1}
    assert all(PACING_TEXT in text for _, code, text in client.errors.seen if code == 162)


async def test_bid_ask_counts_as_two_requests(paced) -> None:
    sim, client, aapl, _ = paced
    results = await asyncio.gather(
        *(small_bars(client.ib, aapl, f"{60 + n} S", "BID_ASK") for n in range(3))
    )
    assert [len(r) > 0 for r in results] == [True, True, False]  # 2 + 2 + 2 = 6 > 5
    assert sim.counters()["pacing_violations"] == 1


async def test_head_timestamp_requests_are_paced_like_small_bars(paced) -> None:
    sim, client, aapl, _ = paced
    first = await client.ib.reqHeadTimeStampAsync(aapl, "TRADES", False, 1)
    again = await client.ib.reqHeadTimeStampAsync(aapl, "TRADES", False, 1)
    assert first and again == []
    assert sim.counters()["pacing_violations"] == 1


async def test_larger_bars_are_slowed_down_never_refused(start_sim, connect_ib) -> None:
    sim = await start_sim(time_scale=SCALE, soft_delay_ms=50)
    client = await connect_ib(sim.port, 1)
    [aapl] = await client.ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    results = await asyncio.gather(
        *(
            client.ib.reqHistoricalDataAsync(aapl, END, "1 D", "1 hour", "TRADES", True, 2)
            for _ in range(6)
        )
    )
    assert all(len(r) == 7 for r in results)
    counters = sim.counters()
    assert (counters["pacing_violations"], counters["soft_delays"]) == (0, 5)


def distinct_small_requests(count: int, first_id: int = 1):
    """Yield ``count`` distinct requests spread over enough series to stay under 5 per 2 s."""
    symbols, whats = ("AAPL", "MSFT", "SPY", "BRK B"), ("TRADES", "MIDPOINT", "BID", "ASK")
    for n in range(count):
        symbol, what = symbols[n % 4], whats[(n // 4) % 4]
        yield historical_request(
            first_id + n, symbol, end=END, duration=f"{60 + n} S", what_to_show=what
        )


async def send_in_batches(client, requests, batch: int = 25) -> list[list[str]]:
    """Send requests as fast as possible, never more than ``batch`` open (the limit is 50)."""
    answers: list[list[str]] = []
    requests = list(requests)
    for i in range(0, len(requests), batch):
        for fields in requests[i : i + batch]:
            client.send(*fields)
        answers += [await client.recv() for _ in requests[i : i + batch]]
    return answers


async def test_sixty_requests_in_10_minutes_pass_and_the_61st_fails(start_sim, connect_raw) -> None:
    sim = await start_sim(time_scale=SCALE)
    client = await connect_raw(sim.port)
    answers = await send_in_batches(client, distinct_small_requests(60))
    assert {m[0] for m in answers} == {"17"}
    client.send(*head_timestamp_request(61, "SPY", what_to_show="BID_ASK"))  # a new series
    refused = await client.recv()
    assert (error_code(refused), refused[2], PACING_TEXT in refused[4]) == (162, "61", True)
    assert sim.counters()["pacing_by_rule"] == {"LONG_WINDOW": 1}


async def test_the_10_minute_window_slides(start_sim, connect_raw) -> None:
    scale = 0.005  # 10 minutes -> 3 s
    sim = await start_sim(time_scale=scale)
    client = await connect_raw(sim.port)
    await send_in_batches(client, distinct_small_requests(60))
    fresh_series = {"end": END, "duration": "1000 S", "what_to_show": "BID_ASK"}
    client.send(*historical_request(61, "SPY", **fresh_series))
    assert error_code(await client.recv()) == 162
    await asyncio.sleep(600 * scale)  # let the whole window (scaled) pass
    client.send(*historical_request(62, "SPY", **fresh_series))
    assert (await client.recv())[0] == "17"
    assert sim.counters()["pacing_by_rule"] == {"LONG_WINDOW": 1}
