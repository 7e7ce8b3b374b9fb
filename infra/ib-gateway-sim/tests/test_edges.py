"""Bars fetched in one long window equal the union of adjacent short windows, over the wire."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_async import Forex, Stock

pytestmark = pytest.mark.integration


def keyed(bars) -> list[tuple]:
    return [(b.date, b.open, b.high, b.low, b.close, b.volume, b.average, b.barCount) for b in bars]


@pytest.fixture
async def ib(sim, connect_ib):
    return (await connect_ib(sim.port, 1)).ib


async def test_a_day_of_minutes_equals_its_four_quarters(ib) -> None:
    [aapl] = await ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    end = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)

    async def window(end_at: dt.datetime, seconds: int):
        return await ib.reqHistoricalDataAsync(
            aapl, end_at, f"{seconds} S", "1 min", "TRADES", False, 2
        )

    whole = await window(end, 86_400)
    quarters = []
    for k in (3, 2, 1, 0):
        quarters += await window(end - dt.timedelta(hours=6 * k), 21_600)
    assert len(whole) == 16 * 60  # 04:00 to 20:00 New York
    assert keyed(whole) == keyed(quarters)


async def test_three_sessions_equal_three_one_day_requests(ib) -> None:
    [eur] = await ib.qualifyContractsAsync(Forex("EURUSD"))
    end = "20240628 12:00:00 UTC"
    whole = await ib.reqHistoricalDataAsync(eur, end, "3 D", "15 mins", "MIDPOINT", False, 2)
    # "1 D" ending at a session's open covers the session before it, so step back session-wise.
    parts, part_end = [], end
    for _ in range(3):
        part = await ib.reqHistoricalDataAsync(
            eur, part_end, "1 D", "15 mins", "MIDPOINT", False, 2
        )
        parts = list(part) + parts
        part_end = part[0].date.strftime("%Y%m%d-%H:%M:%S")
    assert keyed(whole) == keyed(parts)


async def test_three_months_of_days_equal_three_one_month_requests(ib) -> None:
    [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    whole = await ib.reqHistoricalDataAsync(
        spy, "20240615-12:00:00", "3 M", "1 day", "TRADES", True, 1
    )
    parts = []
    for end in ("20240415-12:00:00", "20240515-12:00:00", "20240615-12:00:00"):
        parts += await ib.reqHistoricalDataAsync(spy, end, "1 M", "1 day", "TRADES", True, 1)
    assert len(whole) > 60
    assert keyed(whole) == keyed(parts)
