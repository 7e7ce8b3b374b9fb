"""The bar still forming: sent for an open end time, with the values it has so far."""

from __future__ import annotations

import datetime as dt

import pytest
from ib_async import Stock
from ktrdr_ib_sim import expected_bars

pytestmark = pytest.mark.integration

#: Monday 2024-07-01 12:30:30 in New York: the 12:00 hourly bar is half formed.
NOW = dt.datetime(2024, 7, 1, 16, 30, 30, tzinfo=dt.UTC)
AAPL = Stock("AAPL", "SMART", "USD")


def so_far(start: dt.datetime) -> dict[str, float]:
    """Aggregate the complete minutes, then the complete seconds, from ``start`` to NOW."""
    minute = NOW.replace(second=0)
    parts = [
        expected_bars("AAPL", "STK", "1 min", "TRADES", True, start, minute, now_utc=NOW),
        expected_bars("AAPL", "STK", "1 secs", "TRADES", True, minute, NOW, now_utc=NOW),
    ]
    rows = [row for part in parts for row in part.itertuples()]
    return {
        "open": rows[0].open,
        "high": max(r.high for r in rows),
        "low": min(r.low for r in rows),
        "close": rows[-1].close,
        "volume": sum(r.volume for r in rows),
    }


@pytest.fixture
async def client(start_sim, connect_ib):
    sim = await start_sim(now_utc=NOW, soft_delay_ms=0)
    return await connect_ib(sim.port, 1)


async def test_an_open_end_gets_the_forming_bar_with_its_values_so_far(client) -> None:
    bars = await client.ib.reqHistoricalDataAsync(AAPL, "", "3600 S", "1 hour", "TRADES", True, 2)
    forming = bars[-1]
    assert forming.date == dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC)
    expected = so_far(dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC))
    got = {k: getattr(forming, k) for k in ("open", "high", "low", "close")}
    assert got == {k: expected[k] for k in got}
    assert forming.volume == pytest.approx(expected["volume"])
    complete = expected_bars(
        "AAPL", "STK", "1 hour", "TRADES", True, NOW - dt.timedelta(hours=2), NOW, now_utc=NOW
    )
    assert forming.date not in set(complete["date"])  # ground truth has complete bars only


async def test_a_future_end_also_gets_it_and_a_past_end_does_not(client) -> None:
    later = await client.ib.reqHistoricalDataAsync(
        AAPL, "20240701-18:00:00", "7200 S", "1 hour", "TRADES", True, 2
    )
    past = await client.ib.reqHistoricalDataAsync(
        AAPL, "20240701-16:00:00", "7200 S", "1 hour", "TRADES", True, 2
    )
    assert [b.date.hour for b in later] == [16]  # 12:00 New York, still forming
    assert [b.date.hour for b in past] == [14, 15]  # complete bars only


async def test_the_days_bar_forms_too(client) -> None:
    bars = await client.ib.reqHistoricalDataAsync(AAPL, "", "2 D", "1 day", "TRADES", True, 1)
    assert [b.date for b in bars] == [dt.date(2024, 6, 28), dt.date(2024, 7, 1)]
    today = so_far(dt.datetime(2024, 7, 1, 13, 30, tzinfo=dt.UTC))  # RTH opened 09:30
    assert (bars[-1].open, bars[-1].close) == (today["open"], today["close"])
