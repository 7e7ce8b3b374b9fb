"""Futures: every live ES quarter is listed, and the front month rolls as the clock moves."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_async import Future
from ktrdr_ib_sim import expected_bars

#: Friday 2024-09-20 12:00 UTC: ESU4's last day.
EXPIRY_DAY = dt.datetime(2024, 9, 20, 12, 0, tzinfo=dt.UTC)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.sim_options(now_utc=EXPIRY_DAY, soft_delay_ms=0, futures_listing="live"),
]


def months(details) -> list[str]:
    return [d.contract.lastTradeDateOrContractMonth for d in details]


async def test_a_bare_es_lists_every_live_quarter(sim, connect_ib) -> None:
    client = await connect_ib(sim.port, 1)
    live = await client.ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
    assert months(live) == ["20240920", "20241220", "20250321", "20250620", "20250919"]
    assert len({d.contract.conId for d in live}) == 5
    [dec] = await client.ib.reqContractDetailsAsync(Future("ES", "202412", exchange="CME"))
    assert (dec.contract.localSymbol, dec.contractMonth) == ("ESZ4", "202412")
    # Several matches: a historical request for a bare ES is ambiguous, as at IB (200).
    bars = await client.ib.reqHistoricalDataAsync(
        Future("ES", exchange="CME"), "", "1 D", "1 hour", "TRADES", False
    )
    assert len(bars) == 0 and "ambiguous" in client.errors.seen[-1][2]


async def test_the_front_month_rolls_as_the_clock_passes_its_expiry(sim, connect_ib) -> None:
    client = await connect_ib(sim.port, 1)
    [front] = await client.ib.qualifyContractsAsync(Future("ES", "202409", exchange="CME"))
    sim.set_now(EXPIRY_DAY + dt.timedelta(days=1))  # Saturday: ESU4 has expired
    live = await client.ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
    assert months(live) == ["20241220", "20250321", "20250620", "20250919", "20251219"]
    assert await client.ib.reqContractDetailsAsync(Future("ES", "202409", exchange="CME")) == []
    [gone] = await client.ib.reqContractDetailsAsync(
        Future("ES", "202409", exchange="CME", includeExpired=True)
    )
    assert gone.contract.conId == front.conId
    everything = await client.ib.reqContractDetailsAsync(Future("ES", includeExpired=True))
    assert len(everything) == 5 + 9  # the nine quarters from 2022-09 on have expired
    front.includeExpired = True
    bars = await client.ib.reqHistoricalDataAsync(
        front, "20240920-20:00:00", "1 D", "1 hour", "TRADES", False, 2
    )
    assert len(bars) > 0  # an expired future's history is still served with includeExpired


def test_the_ground_truth_follows_the_front_month() -> None:
    before = expected_bars(
        "ES",
        "FUT",
        "1 day",
        "TRADES",
        False,
        EXPIRY_DAY - dt.timedelta(days=5),
        EXPIRY_DAY,
        now_utc=EXPIRY_DAY,
    )
    after = expected_bars(
        "ES",
        "FUT",
        "1 day",
        "TRADES",
        False,
        EXPIRY_DAY - dt.timedelta(days=5),
        EXPIRY_DAY,
        now_utc=EXPIRY_DAY + dt.timedelta(days=1),
    )
    assert len(before) and len(after) and not before["close"].equals(after["close"])


async def test_the_front_listing_shows_one_month_and_still_rolls(start_sim, connect_ib) -> None:
    sim = await start_sim(now_utc=EXPIRY_DAY, soft_delay_ms=0, futures_listing="front")
    client = await connect_ib(sim.port, 1)
    assert months(await client.ib.reqContractDetailsAsync(Future("ES", exchange="CME"))) == [
        "20240920"
    ]
    sim.set_now(EXPIRY_DAY + dt.timedelta(days=1))
    assert months(await client.ib.reqContractDetailsAsync(Future("ES", exchange="CME"))) == [
        "20241220"
    ]
    expired = Future("ES", "202409", exchange="CME", includeExpired=True)
    assert months(await client.ib.reqContractDetailsAsync(expired)) == ["20240920"]


def test_the_ground_truth_of_a_named_contract_month() -> None:
    window = (dt.datetime(2024, 9, 16, tzinfo=dt.UTC), EXPIRY_DAY)
    named = expected_bars(
        "ES", "FUT", "1 day", "TRADES", False, *window, now_utc=EXPIRY_DAY, contract_month="202412"
    )
    later = expected_bars(
        "ES", "FUT", "1 day", "TRADES", False, *window, now_utc=EXPIRY_DAY + dt.timedelta(days=1)
    )
    closes = named["close"].tolist()
    assert closes and closes == later["close"].tolist()[: len(closes)]  # ESZ4 either way
    with pytest.raises(KeyError):
        expected_bars("ES", "FUT", "1 day", "TRADES", False, *window, contract_month="203012")
