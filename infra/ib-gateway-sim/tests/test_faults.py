"""Faults on demand: drops, the daily restart, the HMDS farm, stalls; and the ledger counts them."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB, Stock

# The simulator does not slow down the repeated identical requests these tests make.
pytestmark = [pytest.mark.integration, pytest.mark.sim_options(soft_delay_ms=0)]

END = "20240628 16:00:00 US/Eastern"
AAPL = Stock("AAPL", "SMART", "USD")


def disconnected(ib: IB) -> asyncio.Event:
    """Return an event set when ``ib`` loses its connection."""
    event = asyncio.Event()
    ib.disconnectedEvent += event.set
    return event


async def hourly(ib: IB, **kwargs):
    return await ib.reqHistoricalDataAsync(AAPL, END, "1 D", "1 hour", "TRADES", True, 2, **kwargs)


async def test_drop_closes_every_client_and_keeps_serving(sim, connect_ib) -> None:
    clients = [await connect_ib(sim.port, cid) for cid in (1, 2)]
    gone = [disconnected(c.ib) for c in clients]
    sim.stall_next_historical(1)
    pending = asyncio.ensure_future(hourly(clients[0].ib, timeout=0))
    await sim.wait_until(lambda c: c["open_requests"] == 1)
    assert await sim.drop_all_connections() == 2
    await asyncio.wait_for(asyncio.gather(*(g.wait() for g in gone)), 5)
    pending.cancel()
    again = await connect_ib(sim.port, 1)
    assert len(await hourly(again.ib)) == 7
    counters = sim.counters()
    assert (counters["drops"], counters["open_requests"]) == (1, 0)
    assert [r["outcome"] for r in sim.records()][:2] == ["dropped", "ok"]


async def test_restart_goes_away_and_comes_back_on_the_same_port(sim, connect_ib) -> None:
    client = await connect_ib(sim.port, 1)
    gone = disconnected(client.ib)
    port = sim.port
    restart = sim.begin_restart(down_s=0.5)
    await asyncio.wait_for(gone.wait(), 5)
    await sim.wait_until(lambda c: not c["listening"])
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await restart
    assert sim.port == port
    again = await connect_ib(port, 1)
    assert len(await hourly(again.ib)) == 7
    assert sim.counters()["restarts"] == 1


async def test_hmds_farm_down_refuses_history_and_comes_back(sim, connect_ib) -> None:
    client = await connect_ib(sim.port, 1)
    [aapl] = await client.ib.qualifyContractsAsync(AAPL)
    sim.set_farm_down(True)
    await client.errors.wait_for(2105)
    assert len(await hourly(client.ib)) == 0
    assert await client.ib.reqHeadTimeStampAsync(aapl, "TRADES", True, 1) == []
    no_data = [text for _, code, text in client.errors.seen if code == 162]
    assert all("HMDS query returned no data" in text for text in no_data) and len(no_data) == 2
    assert await client.ib.reqContractDetailsAsync(AAPL)  # the sec-def farm is still up
    late = await connect_ib(sim.port, 2)
    assert 2105 in late.errors.codes and 2106 not in late.errors.codes
    sim.set_farm_down(False)
    await client.errors.wait_for(2106)
    assert len(await hourly(client.ib)) == 7
    counters = sim.counters()
    assert (counters["farm_changes"], counters["errors_by_code"]["162"]) == (2, 2)


async def test_a_stalled_request_outlives_the_client_timeout(sim, connect_ib) -> None:
    client = await connect_ib(sim.port, 1)
    sim.stall_next_historical(1)
    assert len(await hourly(client.ib, timeout=0.3)) == 0  # ib_async gives up and cancels
    await client.errors.wait_for(162)
    assert "query cancelled" in client.errors.seen[-1][2]
    counters = await sim.wait_until(lambda c: c["open_requests"] == 0)
    assert counters["stalled_requests"] == 1
    [record] = sim.records()
    assert (record["outcome"], record["stalled"]) == ("cancelled", True)
    assert len(await hourly(client.ib)) == 7  # the next request is served normally


async def test_latency_model_delays_answers(start_sim, connect_ib) -> None:
    sim = await start_sim(latency_ms=5000, per_bar_us=1_000_000, time_scale=0.01)
    client = await connect_ib(sim.port, 1)
    assert len(await hourly(client.ib)) == 7
    [record] = sim.records()
    assert record["delay_s"] == pytest.approx((5.0 + 7 * 1.0) * 0.01)  # IB seconds, scaled
