"""The expired May 2020 crude future: found only with includeExpired, and its prices go negative."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_async import Contract, Future
from ktrdr_ib_sim import expected_bars

pytestmark = pytest.mark.integration

CL_CON_ID = 212921504
APRIL_20 = dt.date(2020, 4, 20)
NOW = dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC)  # the frozen clock of conftest.py


def _cl(**fields: object) -> Contract:
    return Future("CL", exchange="NYMEX", currency="USD", **fields)  # type: ignore[arg-type]


@pytest.fixture
async def client(sim, connect_ib):
    return await connect_ib(sim.port, 1)


async def test_contract_details_need_include_expired(client) -> None:
    ib = client.ib
    assert await ib.reqContractDetailsAsync(_cl()) == []
    assert await ib.reqContractDetailsAsync(Contract(conId=CL_CON_ID)) == []
    assert client.errors.codes.count(200) == 2
    [details] = await ib.reqContractDetailsAsync(_cl(includeExpired=True))
    c = details.contract
    assert (c.conId, c.localSymbol, c.exchange) == (CL_CON_ID, "CLK0", "NYMEX")
    assert c.multiplier == "1000"
    assert (c.lastTradeDateOrContractMonth, details.contractMonth) == ("20200421", "202005")
    assert details.timeZoneId == "US/Central" and details.minTick == 0.01
    [by_id] = await ib.reqContractDetailsAsync(Contract(conId=CL_CON_ID, includeExpired=True))
    assert by_id.contract.conId == CL_CON_ID


async def test_live_futures_need_no_include_expired(client) -> None:
    live = await client.ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
    assert live[0].contract.lastTradeDateOrContractMonth == "20240920"  # the front month
    assert len(live) == 5  # every live quarter, without includeExpired
    every = await client.ib.reqContractDetailsAsync(Future("ES", includeExpired=True))
    assert len(every) > len(live)  # the expired ones only with it


async def test_history_needs_include_expired_and_goes_negative(client) -> None:
    ib = client.ib
    end = "20200422 23:00:00 US/Central"
    assert list(await ib.reqHistoricalDataAsync(_cl(), end, "1 M", "1 day", "TRADES", False)) == []
    assert 200 in client.errors.codes
    bars = await ib.reqHistoricalDataAsync(
        _cl(includeExpired=True), end, "1 M", "1 day", "TRADES", False, formatDate=2
    )
    by_day = {b.date: b for b in bars}
    crash = by_day[APRIL_20]
    assert crash.close == -37.63
    assert -41.0 < crash.low < -40.0 and crash.open > 0
    assert by_day[dt.date(2020, 4, 21)].close == 10.01  # back above zero on expiry day
    assert max(by_day) == dt.date(2020, 4, 21)  # nothing after the last trading day
    want = expected_bars(
        "CL",
        "FUT",
        "1 day",
        "TRADES",
        False,
        dt.datetime(2020, 3, 1, tzinfo=dt.UTC),
        dt.datetime(2020, 5, 1, tzinfo=dt.UTC),
        now_utc=NOW,
    )
    got = [(b.date, b.open, b.high, b.low, b.close, b.volume) for b in bars]
    cols = ["date", "open", "high", "low", "close", "volume"]
    assert got == [tuple(row) for row in want[want["date"] >= bars[0].date][cols].to_numpy()]


async def test_intraday_bars_cross_zero_on_april_20(client) -> None:
    bars = await client.ib.reqHistoricalDataAsync(
        _cl(includeExpired=True),
        "20200420 16:00:00 US/Central",
        "1 D",
        "1 hour",
        "TRADES",
        True,
        formatDate=2,
    )
    closes = [b.close for b in bars]
    assert closes[-1] == -37.63 and closes[0] > 0
    assert any(b.low < 0 < b.high for b in bars)  # an hour that trades through zero


def test_expected_bars_are_deterministic_and_negative() -> None:
    window = (dt.datetime(2020, 4, 1, tzinfo=dt.UTC), dt.datetime(2020, 4, 23, tzinfo=dt.UTC))
    first = expected_bars("CL", "FUT", "1 day", "TRADES", False, *window, now_utc=NOW)
    again = expected_bars("CL", "FUT", "1 day", "TRADES", False, *window, now_utc=NOW)
    assert first.equals(again)
    crash = first[first["date"] == APRIL_20].iloc[0]
    assert crash["close"] == -37.63 and crash["low"] < -40.0
    assert (first[first["date"] != APRIL_20]["low"] > -40).all()
    assert (first[first["date"] < APRIL_20]["close"] > 0).all()
