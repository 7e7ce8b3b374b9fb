"""Each request type answers as the spec says, through the unmodified ib_async over TCP."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from ib_async import Contract, Forex, Future, Index, Stock, util
from ktrdr_ib_sim import expected_bars
from ktrdr_ib_sim.timeframes import BAR_SIZES

pytestmark = pytest.mark.integration

CATALOGUE = [
    Stock("AAPL", "SMART", "USD"),
    Stock("MSFT", "SMART", "USD"),
    Stock("SPY", "SMART", "USD"),
    Stock("BRK B", "SMART", "USD"),
    Forex("EURUSD"),
    Forex("GBPUSD"),
    Forex("USDJPY"),
    Future("ES", "202409", exchange="CME"),  # the front month on 2024-07-01
    Index("SPX", "CBOE", "USD"),
]
EASTERN = ZoneInfo("US/Eastern")


@pytest.fixture
async def client(sim, connect_ib):
    return await connect_ib(sim.port, 1)


async def test_contract_details_for_the_whole_catalogue(client) -> None:
    ib = client.ib
    for contract in CATALOGUE:
        [details] = await ib.reqContractDetailsAsync(contract)
        c = details.contract
        assert c.conId > 0 and c.currency and c.exchange
        assert details.timeZoneId in ("US/Eastern", "US/Central")
        assert ":" in details.tradingHours and ":" in details.liquidHours
        assert details.minTick > 0
    [es] = await ib.reqContractDetailsAsync(Future("ES", "202409", exchange="CME"))
    assert es.contract.lastTradeDateOrContractMonth == "20240920"  # front month on 2024-07-01
    assert es.contract.multiplier == "50"


async def test_qualify_fills_in_every_catalogue_contract(client) -> None:
    qualified = await client.ib.qualifyContractsAsync(*CATALOGUE)
    assert [c.conId > 0 for c in qualified] == [True] * len(CATALOGUE)
    eurusd = qualified[4]
    assert (eurusd.secType, eurusd.exchange, eurusd.localSymbol) == ("CASH", "IDEALPRO", "EUR.USD")


async def test_unknown_contract_gets_200(client) -> None:
    assert await client.ib.reqContractDetailsAsync(Stock("NOPE", "SMART", "USD")) == []
    assert await client.ib.qualifyContractsAsync(Stock("NOPE", "SMART", "USD")) == [None]
    assert 200 in client.errors.codes
    bars = await client.ib.reqHistoricalDataAsync(
        Stock("NOPE", "SMART", "USD"), "", "1 D", "1 hour", "TRADES", True
    )
    assert list(bars) == []


async def test_head_timestamp_in_both_formats(client) -> None:
    [aapl] = await client.ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    text_form = await client.ib.reqHeadTimeStampAsync(aapl, "TRADES", True, 1)
    epoch_form = await client.ib.reqHeadTimeStampAsync(aapl, "TRADES", True, 2)
    assert text_form == dt.datetime(2000, 1, 3, 14, 30)  # naive UTC, IB's yyyyMMdd-HH:mm:ss
    assert epoch_form == dt.datetime(2000, 1, 3, 14, 30, tzinfo=dt.UTC)
    quotes = await client.ib.reqHeadTimeStampAsync(aapl, "BID_ASK", False, 2)
    assert quotes == dt.datetime(2004, 1, 2, 9, 0, tzinfo=dt.UTC)  # 04:00 New York, pre-market


async def test_intraday_bars_in_both_date_formats(sim, client) -> None:
    [aapl] = await client.ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    end = dt.datetime(2024, 6, 28, 20, 0, tzinfo=dt.UTC)
    zoned = await client.ib.reqHistoricalDataAsync(aapl, end, "1 D", "1 hour", "TRADES", True, 1)
    epoch = await client.ib.reqHistoricalDataAsync(aapl, end, "1 D", "1 hour", "TRADES", True, 2)
    assert zoned[0].date == dt.datetime(2024, 6, 28, 9, 30, tzinfo=EASTERN)
    assert epoch[0].date == dt.datetime(2024, 6, 28, 13, 30, tzinfo=dt.UTC)
    assert [b.date for b in zoned] == [b.date for b in epoch]  # the same instants
    assert [b.close for b in zoned] == [b.close for b in epoch]
    truth = expected_bars(
        "AAPL",
        "STK",
        "1 hour",
        "TRADES",
        True,
        end - dt.timedelta(hours=7),
        end,
        now_utc=sim.config.now_utc,
    )
    assert util.df(epoch)[["open", "high", "low", "close", "volume", "average", "barCount"]].equals(
        truth[["open", "high", "low", "close", "volume", "average", "barCount"]]
    )


async def test_daily_bars_are_dated_yyyymmdd_in_both_formats(client) -> None:
    [eur] = await client.ib.qualifyContractsAsync(Forex("EURUSD"))
    for format_date in (1, 2):
        bars = await client.ib.reqHistoricalDataAsync(
            eur, "20240628 18:00:00 US/Eastern", "5 D", "1 day", "MIDPOINT", False, format_date
        )
        assert [b.date for b in bars] == [dt.date(2024, 6, d) for d in (24, 25, 26, 27, 28)]


DURATION_FOR = {
    "1 secs": "1800 S",
    "5 secs": "3600 S",
    "10 secs": "3600 S",
    "15 secs": "3600 S",
    "30 secs": "1 D",
    "1 week": "6 M",
    "1 month": "1 Y",
}


@pytest.mark.parametrize("bar_size", [s for s in BAR_SIZES if s not in ("1W", "1M")])
async def test_every_bar_size_returns_bars(client, bar_size: str) -> None:
    [es] = await client.ib.qualifyContractsAsync(Future("ES", "202409", exchange="CME"))
    duration = DURATION_FOR.get(bar_size, "5 D")
    bars = await client.ib.reqHistoricalDataAsync(
        es, "20240628 15:00:00 US/Central", duration, bar_size, "TRADES", False, 2
    )
    assert len(bars) > 0
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)


@pytest.mark.parametrize("what", ["MIDPOINT", "BID", "ASK", "BID_ASK"])
async def test_quote_bars_carry_minus_one_volume(client, what: str) -> None:
    [aapl] = await client.ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    bars = await client.ib.reqHistoricalDataAsync(aapl, "", "1 D", "5 mins", what, True, 2)
    assert len(bars) == 30  # 09:30 to "now", 12:00 New York
    assert {(b.volume, b.average, b.barCount) for b in bars} == {(-1.0, -1.0, -1)}


async def test_use_rth_keeps_bars_inside_liquid_hours(client) -> None:
    [spy] = await client.ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    end = "20240628 23:59:00 US/Eastern"
    rth = await client.ib.reqHistoricalDataAsync(spy, end, "1 D", "1 min", "TRADES", True, 1)
    full = await client.ib.reqHistoricalDataAsync(spy, end, "1 D", "1 min", "TRADES", False, 1)
    assert (rth[0].date.strftime("%H:%M"), rth[-1].date.strftime("%H:%M")) == ("09:30", "15:59")
    assert (full[0].date.strftime("%H:%M"), full[-1].date.strftime("%H:%M")) == ("04:00", "19:59")


async def test_every_end_time_form_gives_the_same_window(client) -> None:
    [aapl] = await client.ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    forms = [
        dt.datetime(2024, 6, 28, 20, 0, tzinfo=dt.UTC),
        "20240628-20:00:00",
        "20240628 16:00:00 US/Eastern",
        "20240628 15:00:00 America/Chicago",
    ]  # a datetime goes out as "20240628 20:00:00 UTC"; repeating it would be paced
    answers = []
    for end in forms:
        bars = await client.ib.reqHistoricalDataAsync(
            aapl, end, "7200 S", "1 min", "MIDPOINT", False, 2
        )
        answers.append([(b.date, b.close) for b in bars])
    assert len(answers[0]) == 120
    assert all(a == answers[0] for a in answers)


async def test_utc_bar_zone_setting_sends_naive_utc_dates(start_sim, connect_ib) -> None:
    sim = await start_sim(bar_tz="utc")
    client = await connect_ib(sim.port, 1)
    [aapl] = await client.ib.qualifyContractsAsync(Stock("AAPL", "SMART", "USD"))
    bars = await client.ib.reqHistoricalDataAsync(
        aapl, "20240628-20:00:00", "3600 S", "1 hour", "TRADES", True, 1
    )
    assert bars[0].date == dt.datetime(2024, 6, 28, 19, 0)


async def test_forex_has_no_trades(client) -> None:
    [eur] = await client.ib.qualifyContractsAsync(Forex("EURUSD"))
    client.ib.RaiseRequestErrors = True
    with pytest.raises(Exception, match="No historical market data") as caught:
        await client.ib.reqHistoricalDataAsync(eur, "", "1 D", "1 day", "TRADES", False)
    assert caught.value.code == 162  # type: ignore[attr-defined]
    assert caught.value.message == (  # type: ignore[attr-defined]
        "Historical Market Data Service error message:"
        "No historical market data for EUR/CASH@FXSUBPIP Last 1d"
    )
    with pytest.raises(Exception, match=r"EUR/CASH@FXSUBPIP Last 300$"):
        await client.ib.reqHistoricalDataAsync(eur, "", "1 D", "5 mins", "TRADES", False)


async def test_a_contract_by_con_id_only(client) -> None:
    bars = await client.ib.reqHistoricalDataAsync(
        Contract(conId=265598, exchange="SMART"),
        "20240628 23:00:00 US/Eastern",
        "2 D",
        "1 day",
        "TRADES",
        True,
    )
    assert [b.date for b in bars] == [dt.date(2024, 6, 27), dt.date(2024, 6, 28)]


async def test_an_operator_zone_setting_renders_dates_in_that_zone(start_sim, connect_ib) -> None:
    sim = await start_sim(bar_tz="Europe/London")
    client = await connect_ib(sim.port, 1)
    [es] = await client.ib.qualifyContractsAsync(Future("ES", "202409", exchange="CME"))
    bars = await client.ib.reqHistoricalDataAsync(
        es, "20240628-20:00:00", "3600 S", "30 mins", "TRADES", True, 1
    )
    assert [b.date for b in bars] == [
        dt.datetime(2024, 6, 28, 20, 0, tzinfo=ZoneInfo("Europe/London")),  # 14:00 Chicago
        dt.datetime(2024, 6, 28, 20, 30, tzinfo=ZoneInfo("Europe/London")),
    ]


async def test_hours_never_list_a_day_both_closed_and_open(client) -> None:
    [es] = await client.ib.reqContractDetailsAsync(Future("ES", "202409", exchange="CME"))
    days = [entry.split(":")[0] for entry in es.tradingHours.split(";")]
    assert len(days) == len(set(days)), es.tradingHours
    [eur] = await client.ib.reqContractDetailsAsync(Forex("EURUSD"))
    assert "CLOSED" in eur.tradingHours  # Saturday
    days = [entry.split(":")[0] for entry in eur.tradingHours.split(";")]
    assert len(days) == len(set(days)), eur.tradingHours


async def test_valid_exchanges_name_each_exchange_once(client) -> None:
    for symbol in ("AAPL", "SPY", "BRK B"):
        [details] = await client.ib.reqContractDetailsAsync(Stock(symbol, "SMART", "USD"))
        exchanges = details.validExchanges.split(",")
        assert len(exchanges) == len(set(exchanges)), details.validExchanges
