"""The link to IB lost with the socket up (1100), then restored (1101 data lost / 1102 kept)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from ib_async import IB, Stock
from ktrdr_ib_sim.codes import SIMULATOR_NOTICE_CODE
from ktrdr_ib_sim.resets import next_reset_s

# The simulator does not slow down the repeated identical requests these tests make.
pytestmark = [pytest.mark.integration, pytest.mark.sim_options(soft_delay_ms=0)]

END = "20240628 16:00:00 US/Eastern"
AAPL = Stock("AAPL", "SMART", "USD")


async def hourly(ib: IB, duration: str = "1 D", **kwargs):
    return await ib.reqHistoricalDataAsync(
        AAPL, END, duration, "1 hour", "TRADES", True, 2, **kwargs
    )


async def test_lost_link_holds_answers_until_restored_with_data_maintained(sim, connect_ib):
    client = await connect_ib(sim.port, 1)
    assert sim.lose_link() and not sim.lose_link()
    await client.errors.wait_for(1100)
    assert client.ib.isConnected()
    bars = asyncio.ensure_future(hourly(client.ib, timeout=0))
    details = asyncio.ensure_future(client.ib.reqContractDetailsAsync(AAPL))
    await sim.wait_until(lambda c: c["requests_held"] == 2)
    assert not bars.done() and not details.done()
    late = await connect_ib(sim.port, 2)  # a client that connects meanwhile is told too
    assert late.errors.codes[-2:] == [1100, SIMULATOR_NOTICE_CODE]  # the simulator's notice last
    assert sim.restore_link(data_lost=False)
    await client.errors.wait_for(1102)
    assert len(await asyncio.wait_for(bars, 5)) == 7
    assert len(await asyncio.wait_for(details, 5)) == 1
    [(_, _, lost_text)] = [e for e in client.errors.seen if e[1] == 1100]
    assert lost_text == "Connectivity between IB and Trader Workstation has been lost."
    counters = sim.counters()
    assert (counters["link_losses"], counters["link_restores_data_maintained"]) == (1, 1)
    assert [r["outcome"] for r in sim.records()] == ["ok", "ok"]
    assert all(r["held"] for r in sim.records())


async def test_data_lost_drops_requests_in_flight_forever(sim, connect_ib):
    client = await connect_ib(sim.port, 1)
    sim.slow_next(1, 0.3)  # in flight when the link goes
    in_flight = asyncio.ensure_future(hourly(client.ib, timeout=0))
    await sim.wait_until(lambda c: c["open_requests"] == 1)
    sim.lose_link()
    held = asyncio.ensure_future(hourly(client.ib, "2 D", timeout=0))
    await sim.wait_until(lambda c: c["requests_held"] == 2)
    sim.restore_link(data_lost=True)
    await client.errors.wait_for(1101)
    counters = await sim.wait_until(lambda c: c["requests_lost"] == 2 and not c["open_requests"])
    assert counters["link_restores_data_lost"] == 1
    await asyncio.sleep(0.1)
    assert not in_flight.done() and not held.done()  # never answered: the client must re-ask
    assert [r["outcome"] for r in sim.records()] == ["lost", "lost"]
    assert len(await hourly(client.ib)) == 7  # a re-issued request is served
    in_flight.cancel()
    held.cancel()
    [text] = [t for _, code, t in client.errors.seen if code == 1101]
    assert text == "Connectivity between IB and TWS has been restored- data lost."


async def test_restore_without_loss_is_a_no_op(sim, connect_ib):
    client = await connect_ib(sim.port, 1)
    assert not sim.restore_link(data_lost=True)
    assert len(await hourly(client.ib)) == 7
    assert 1101 not in client.errors.codes


def test_reset_windows_follow_the_published_schedule():
    def utc(*args: int) -> float:
        return dt.datetime(*args, tzinfo=dt.UTC).timestamp()

    # Monday 2024-07-01 00:00 UTC = Sunday 20:00 in New York (EDT): next reset 00:15 EDT.
    assert next_reset_s("north_america", utc(2024, 7, 1)) == utc(2024, 7, 1, 4, 15)
    # Saturday has no daily reset: Friday 2024-07-05 05:00 UTC -> Sunday 00:15 New York.
    assert next_reset_s("north_america", utc(2024, 7, 5, 5)) == utc(2024, 7, 7, 4, 15)
    assert next_reset_s("europe", utc(2024, 1, 8)) == utc(2024, 1, 8, 5, 25)  # 06:25 CET
    assert next_reset_s("asia", utc(2024, 7, 1, 0)) == utc(2024, 7, 1, 12, 15)  # 20:15 HKT
    with pytest.raises(ValueError, match="unknown reset region"):
        next_reset_s("mars", 0)


async def test_daily_reset_schedule_plays_1100_then_1101(start_sim, connect_ib):
    # 00:14:58 New York: the reset starts in 2 IB seconds (0.02 s at this scale), lasts 20.
    now = dt.datetime(2024, 7, 1, 4, 14, 58, tzinfo=dt.UTC)
    sim = await start_sim(
        now_utc=now, time_scale=0.01, daily_reset="north_america", reset_outage_s=20
    )
    client = await connect_ib(sim.port, 1)
    await client.errors.wait_for(1101)
    codes = client.errors.codes
    assert codes.index(1100) < codes.index(1101) and client.ib.isConnected()
    counters = sim.counters()
    assert (counters["daily_resets"], counters["link_losses"]) == (1, 1)
    assert not counters["link_lost"]
