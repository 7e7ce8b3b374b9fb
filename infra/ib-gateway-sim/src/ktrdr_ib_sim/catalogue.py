"""The contracts the simulator knows: US stocks, forex pairs, the ES front month, SPX and CLK0.

Each instrument carries what contract details report (exchange, currency, zone, hours) and the
parameters of its deterministic price model (base price, volatility, volume, spread).

CLK0 is the May 2020 WTI crude future (NYMEX), expired on 2020-04-21. Its price follows fixed
knots (close to the real settlements) plus pinned noise, so it goes negative as the real one
did: the session of 2020-04-20 closes at -37.63 after a low near -40.32. Like every expired
contract, IB only finds it when the request sets ``includeExpired``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ktrdr_ib_sim.sessions import MarketKind

ALL_WHAT_TO_SHOW = frozenset({"TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"})
QUOTES_ONLY = frozenset({"MIDPOINT", "BID", "ASK", "BID_ASK"})

#: IB names zones the legacy way; calendars and pandas want IANA names.
IANA_ZONES = {"US/Eastern": "America/New_York", "US/Central": "America/Chicago"}

_STOCK_ORDER_TYPES = "ACTIVETIM,AD,ADJUST,ALERT,ALGO,ALLOC,AVGCOST,BASKET,DAY,GTC,LIT,LMT,MKT,MOC"
_FX_ORDER_TYPES = "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,AVGCOST,BASKET,DAY,GTC,LMT,MKT,STP,TRAIL"
_FUT_ORDER_TYPES = "ACTIVETIM,AD,ADJUST,ALERT,ALLOC,DAY,GTC,LIT,LMT,MIT,MKT,STP,TRAIL"


@dataclass(frozen=True, kw_only=True)
class Instrument:
    """One contract: its contract-details fields and its price-model parameters."""

    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str
    trading_class: str
    market_name: str
    long_name: str
    time_zone_id: str
    market: MarketKind
    ticks_per_unit: int  # 1 / minTick; prices are integer ticks / ticks_per_unit
    valid_exchanges: str
    order_types: str
    head_dates: dict[str, dt.date] = field(hash=False)
    what_to_show: frozenset[str] = ALL_WHAT_TO_SHOW
    multiplier: str = ""
    last_trade_date: str = ""
    contract_month: str = ""
    industry: str = ""
    category: str = ""
    subcategory: str = ""
    stock_type: str = ""
    isin: str = ""
    market_rule_ids: str = "26"
    agg_group: int = 1
    under_symbol: str = ""
    under_sec_type: str = ""
    base_price: float = 100.0
    annual_vol: float = 0.25
    minute_volume: int = 10_000  # typical 1-min volume in RTH; 0: the contract has no volume
    trade_size: int = 100
    half_spread_ticks: int = 1
    #: (epoch minute, price) points the price passes through exactly, in time order. When set,
    #: prices are additive (they may be zero or negative) instead of a log-normal walk.
    knots: tuple[tuple[int, float], ...] = ()
    knot_noise: float = 0.0  # standard deviation of the noise over one day, in price units
    listed_on: dt.date | None = None  # a future is not found before it is listed

    def listed(self, today: dt.date) -> bool:
        """Return whether the contract exists yet on ``today``."""
        return self.listed_on is None or today >= self.listed_on

    @property
    def zone(self) -> str:
        """Return the IANA name of the instrument's time zone."""
        return IANA_ZONES.get(self.time_zone_id, self.time_zone_id)

    @property
    def min_tick(self) -> float:
        """Return the price increment."""
        return 1.0 / self.ticks_per_unit

    @property
    def price_decimals(self) -> int:
        """Return the decimals needed to print any multiple of the tick exactly."""
        decimals = 0
        while 10**decimals % self.ticks_per_unit:
            decimals += 1
        return decimals

    def expired(self, today: dt.date) -> bool:
        """Return whether the contract's last trading day is before ``today``."""
        return bool(self.last_trade_date) and self.last_trade_date[:8] < today.strftime("%Y%m%d")

    def head_date(self, what_to_show: str) -> dt.date | None:
        """Return the first date with data for ``what_to_show``; None when IB has none."""
        if what_to_show not in self.what_to_show:
            return None
        return self.head_dates.get(what_to_show, min(self.head_dates.values()))


_US_STOCK_EXCHANGES = (
    "SMART",
    "AMEX",
    "NYSE",
    "CBOE",
    "PHLX",
    "ISE",
    "CHX",
    "ARCA",
    "NASDAQ",
    "BATS",
    "IEX",
)


def _stock(con_id: int, symbol: str, primary: str, nasdaq: bool, **model: object) -> Instrument:
    """Build a US stock; ``model`` holds descriptive fields and price-model parameters."""
    heads = {"TRADES": dt.date(2000, 1, 3)} | {w: dt.date(2004, 1, 2) for w in QUOTES_ONLY}
    return Instrument(
        con_id=con_id,
        symbol=symbol,
        sec_type="STK",
        exchange="SMART",
        primary_exchange=primary,
        currency="USD",
        local_symbol=symbol,
        trading_class="NMS" if nasdaq else symbol,
        market_name="NMS" if nasdaq else symbol,
        time_zone_id="US/Eastern",
        market=MarketKind.US_EQUITY,
        ticks_per_unit=100,
        valid_exchanges=",".join(dict.fromkeys([*_US_STOCK_EXCHANGES, primary])),
        order_types=_STOCK_ORDER_TYPES,
        head_dates=heads,
        **model,  # type: ignore[arg-type]
    )


def _forex(con_id: int, base: str, quote: str, ticks: int, price: float) -> Instrument:
    pair = f"{base}.{quote}"
    return Instrument(
        con_id=con_id,
        symbol=base,
        sec_type="CASH",
        exchange="IDEALPRO",
        primary_exchange="",
        currency=quote,
        local_symbol=pair,
        trading_class=pair,
        market_name=pair,
        long_name=f"{base} {quote} spot",
        time_zone_id="US/Eastern",
        market=MarketKind.FX_24X5,
        ticks_per_unit=ticks,
        valid_exchanges="IDEALPRO",
        order_types=_FX_ORDER_TYPES,
        what_to_show=QUOTES_ONLY,
        head_dates={w: dt.date(2005, 3, 1) for w in QUOTES_ONLY},
        market_rule_ids="239",
        agg_group=4,
        base_price=price,
        annual_vol=0.08,
        minute_volume=0,
    )


def es_front_month(today: dt.date) -> dt.date:
    """Return the expiry of the front ES contract: the next quarterly third Friday.

    The contract that expires today is still the front month until its expiry day has passed.
    """
    year, month = today.year, today.month
    while True:
        if month % 3 == 0:
            expiry = _third_friday(year, month)
            if expiry >= today:
                return expiry
        month += 1
        if month > 12:
            year, month = year + 1, 1


def _third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    first_friday = first + dt.timedelta(days=(4 - first.weekday()) % 7)
    return first_friday + dt.timedelta(days=14)


#: ES quarterlies listed at any time. CME's contract page said "Five months in the March
#: Quarterly Cycle"; today's specification lists 21 consecutive quarters. Five keeps the
#: catalogue small and still gives a bare "ES" several matches.
ES_LISTED_QUARTERS = 5


#: How ES is listed: ``live`` (every live quarter, expired ones back two years with
#: includeExpired) or ``front`` (only the front month, and none that expired before the start:
#: the simulator's behaviour before it listed them all).
FUTURES_LISTINGS = ("front", "live")


def es_expiries(today: dt.date, listing: str = "live") -> list[dt.date]:
    """Return the quarterly ES expiries the catalogue holds for a simulator started ``today``.

    ``live``: from two years before to three years after; ``front``: from the front month on.
    """
    first = dt.date(today.year - 2, today.month, 1) if listing == "live" else es_front_month(today)
    last = dt.date(today.year + 3, today.month, 1)
    return [
        expiry
        for year in range(first.year, last.year + 1)
        for month in (3, 6, 9, 12)
        if first <= (expiry := _third_friday(year, month)) <= last
    ]


def _es(expiry: dt.date, listed_quarters: int) -> Instrument:
    """Build the ES quarterly that expires on ``expiry``, listed ``listed_quarters`` before."""
    code = "HMUZ"[expiry.month // 3 - 1]
    return Instrument(
        con_id=600_000_000 + expiry.year * 100 + expiry.month,
        symbol="ES",
        sec_type="FUT",
        exchange="CME",
        primary_exchange="",
        currency="USD",
        local_symbol=f"ES{code}{expiry.year % 10}",
        trading_class="ES",
        market_name="ES",
        long_name="E-mini S&P 500",
        time_zone_id="US/Central",
        market=MarketKind.CME_EQUITY,
        ticks_per_unit=4,
        valid_exchanges="CME,QBALGO",
        order_types=_FUT_ORDER_TYPES,
        multiplier="50",
        last_trade_date=expiry.strftime("%Y%m%d"),
        contract_month=expiry.strftime("%Y%m"),
        under_symbol="ES",
        under_sec_type="IND",
        market_rule_ids="67",
        agg_group=2147483647,
        head_dates={w: expiry - dt.timedelta(days=400) for w in ALL_WHAT_TO_SHOW},
        base_price=5600.0,
        annual_vol=0.18,
        minute_volume=1_500,
        trade_size=2,
        listed_on=_quarter_before(expiry, listed_quarters) + dt.timedelta(days=1),
    )


def _quarter_before(expiry: dt.date, quarters: int) -> dt.date:
    """Return the quarterly expiry ``quarters`` quarters before ``expiry``."""
    months = expiry.year * 12 + expiry.month - 1 - 3 * quarters
    return _third_friday(months // 12, months % 12 + 1)


def _minute(stamp: str) -> int:
    """Return the epoch minute of a UTC ``YYYY-MM-DD HH:MM`` text."""
    when = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
    return int(when.timestamp()) // 60


#: CLK0's path: roughly the real settlements (20:00 UTC = 15:00 Chicago, the close of liquid
#: hours), and on 2020-04-20 the real collapse: the low near 18:08 UTC, the settlement -37.63
#: held to the 16:00 Chicago close so both the RTH and the all-hours daily bar close there.
_CL_MAY_2020 = (
    ("2019-12-20 20:00", 60.50), ("2020-01-08 20:00", 59.60), ("2020-01-31 20:00", 51.60),
    ("2020-02-20 20:00", 53.80), ("2020-03-02 20:00", 47.00), ("2020-03-09 20:00", 31.50),
    ("2020-03-18 20:00", 21.00), ("2020-03-31 20:00", 21.50), ("2020-04-01 20:00", 20.31),
    ("2020-04-02 20:00", 25.32), ("2020-04-03 20:00", 28.34), ("2020-04-06 20:00", 26.08),
    ("2020-04-07 20:00", 23.63), ("2020-04-08 20:00", 25.09), ("2020-04-09 20:00", 22.76),
    ("2020-04-13 20:00", 22.41), ("2020-04-14 20:00", 20.11), ("2020-04-15 20:00", 19.87),
    ("2020-04-16 20:00", 19.87), ("2020-04-17 20:00", 18.27), ("2020-04-19 22:00", 17.73),
    ("2020-04-20 13:00", 10.00),
    ("2020-04-20 18:08", -40.32), ("2020-04-20 20:00", -37.63), ("2020-04-20 21:00", -37.63),
    ("2020-04-21 13:00", -5.00), ("2020-04-21 20:00", 10.01), ("2020-04-21 21:00", 10.01),
)  # fmt: skip


def _cl_may_2020() -> Instrument:
    return Instrument(
        con_id=212921504,
        symbol="CL",
        sec_type="FUT",
        exchange="NYMEX",
        primary_exchange="",
        currency="USD",
        local_symbol="CLK0",
        trading_class="CL",
        market_name="CL",
        long_name="Light Sweet Crude Oil",
        time_zone_id="US/Central",
        market=MarketKind.CME_EQUITY,  # CME Globex hours: 17:00-16:00 Chicago
        ticks_per_unit=100,
        valid_exchanges="NYMEX,QBALGO",
        order_types=_FUT_ORDER_TYPES,
        multiplier="1000",
        last_trade_date="20200421",
        contract_month="202005",
        under_symbol="CL",
        under_sec_type="IND",
        market_rule_ids="32",
        agg_group=2147483647,
        head_dates={w: dt.date(2020, 1, 2) for w in ALL_WHAT_TO_SHOW},
        base_price=30.0,
        minute_volume=400,
        trade_size=1,
        knots=tuple((_minute(stamp), price) for stamp, price in _CL_MAY_2020),
        knot_noise=0.6,
    )


def _spx() -> Instrument:
    return Instrument(
        con_id=416904,
        symbol="SPX",
        sec_type="IND",
        exchange="CBOE",
        primary_exchange="",
        currency="USD",
        local_symbol="SPX",
        trading_class="SPX",
        market_name="SPX",
        long_name="S&P 500 Stock Index",
        time_zone_id="US/Central",
        market=MarketKind.US_INDEX,
        ticks_per_unit=100,
        valid_exchanges="CBOE",
        order_types="",
        what_to_show=frozenset({"TRADES"}),
        head_dates={"TRADES": dt.date(2000, 1, 3)},
        market_rule_ids="110",
        agg_group=0,
        base_price=5600.0,
        annual_vol=0.16,
        minute_volume=0,
    )


def served_symbols(catalogue: tuple[Instrument, ...]) -> list[str]:
    """Return each symbol the catalogue serves once, as a user writes it, in catalogue order.

    A forex pair is written as one symbol (``EURUSD``); a future once for all its months.
    """
    names = [f"{i.symbol}{i.currency}" if i.sec_type == "CASH" else i.symbol for i in catalogue]
    return list(dict.fromkeys(names))


def build_catalogue(today: dt.date, futures_listing: str = "live") -> tuple[Instrument, ...]:
    """Return every instrument, with ES quarterlies from two years before ``today`` to three after.

    Expired contracts (CLK0, past ES quarters) are listed too; lookups skip them unless asked
    to include them, and skip futures not listed yet. ``futures_listing`` is one of
    :data:`FUTURES_LISTINGS`.
    """
    return (
        _stock(
            265598,
            "AAPL",
            "NASDAQ",
            True,
            long_name="APPLE INC",
            industry="Technology",
            category="Computers",
            subcategory="Computers",
            isin="US0378331005",
            stock_type="COMMON",
            base_price=190.0,
            annual_vol=0.28,
            minute_volume=120_000,
        ),
        _stock(
            272093,
            "MSFT",
            "NASDAQ",
            True,
            long_name="MICROSOFT CORP",
            industry="Technology",
            category="Software",
            subcategory="Applications Software",
            isin="US5949181045",
            stock_type="COMMON",
            base_price=420.0,
            annual_vol=0.24,
            minute_volume=50_000,
        ),
        _stock(
            756733,
            "SPY",
            "ARCA",
            False,
            long_name="SPDR S&P 500 ETF TRUST",
            industry="Funds",
            category="Equity Fund",
            subcategory="Growth&Income-Large Cap",
            isin="US78462F1030",
            stock_type="ETF",
            base_price=560.0,
            annual_vol=0.16,
            minute_volume=150_000,
        ),
        _stock(
            72063691,
            "BRK B",
            "NYSE",
            False,
            long_name="BERKSHIRE HATHAWAY INC-CL B",
            industry="Financial",
            category="Insurance",
            subcategory="Property/Casualty Ins",
            isin="US0846707026",
            stock_type="COMMON",
            base_price=450.0,
            annual_vol=0.18,
            minute_volume=8_000,
        ),
        _forex(12087792, "EUR", "USD", 20_000, 1.0850),
        _forex(12087797, "GBP", "USD", 20_000, 1.2700),
        _forex(15016059, "USD", "JPY", 200, 150.00),
        *(
            _es(expiry, ES_LISTED_QUARTERS if futures_listing == "live" else 1)
            for expiry in es_expiries(today, futures_listing)
        ),
        _spx(),
        _cl_may_2020(),
    )
