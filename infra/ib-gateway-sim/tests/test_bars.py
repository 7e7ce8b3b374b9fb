"""The price model and bar cutting: deterministic, consistent, only where markets were open."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_ib_sim import Bars, build_catalogue, expected_bars, generate_bars
from ktrdr_ib_sim.bars import open_seconds, sessions_for
from ktrdr_ib_sim.catalogue import Instrument
from ktrdr_ib_sim.series import find_instrument
from ktrdr_ib_sim.timeframes import BAR_SIZES

pytestmark = pytest.mark.unit

NOW = dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC)
NOW_S = int(NOW.timestamp())
CATALOGUE = {i.local_symbol: i for i in build_catalogue(NOW.date())}
AAPL, EURUSD, SPX = CATALOGUE["AAPL"], CATALOGUE["EUR.USD"], CATALOGUE["SPX"]
ES = find_instrument("ES", "FUT", NOW.date())  # the front month
PRICE_COLUMNS = ("open", "high", "low", "close")


def utc(*args: int) -> int:
    return int(dt.datetime(*args, tzinfo=dt.UTC).timestamp())


def bars(
    inst: Instrument, size: str, start: int, end: int, what: str = "TRADES", rth: bool = False
) -> Bars:
    return generate_bars(inst, BAR_SIZES[size], what, rth, (start, end), seed=0, now_s=NOW_S)


def as_frame(b: Bars) -> pd.DataFrame:
    return b.to_frame().drop(columns=["date"])


def test_same_seed_same_bars_other_seed_other_bars() -> None:
    window = (utc(2024, 6, 3), utc(2024, 6, 4))
    first = bars(AAPL, "1 min", *window)
    again = bars(AAPL, "1 min", *window)
    other = generate_bars(AAPL, BAR_SIZES["1 min"], "TRADES", False, window, seed=1, now_s=NOW_S)
    pd.testing.assert_frame_equal(as_frame(first), as_frame(again))
    assert not np.array_equal(first.close, other.close)


UNION_SPANS = {
    "5 secs": 6 * 3600,
    "1 min": 5 * 86_400,
    "15 mins": 9 * 86_400,
    "1 hour": 20 * 86_400,
    "1 day": 200 * 86_400,
    "1 week": 400 * 86_400,
}


@settings(max_examples=25, deadline=None)
@given(
    size=st.sampled_from(["5 secs", "1 min", "15 mins", "1 hour", "1 day", "1 week"]),
    inst=st.sampled_from([AAPL, EURUSD, ES]),
    split=st.floats(min_value=0.01, max_value=0.99),
)
def test_a_window_is_the_union_of_its_two_halves(size: str, inst: Instrument, split: float) -> None:
    long_span = UNION_SPANS[size]
    end = utc(2024, 6, 28, 20)
    start = end - long_span
    middle = start + int(long_span * split)
    whole = as_frame(bars(inst, size, start, end, "MIDPOINT"))
    halves = pd.concat(
        [
            as_frame(bars(inst, size, start, middle, "MIDPOINT")),
            as_frame(bars(inst, size, middle, end, "MIDPOINT")),
        ],
        ignore_index=True,
    )
    assert len(whole) > 0
    pd.testing.assert_frame_equal(whole, halves)


@pytest.mark.parametrize("what", ["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"])
@pytest.mark.parametrize(
    "size", ["1 secs", "30 secs", "1 min", "3 mins", "4 hours", "1 day", "1 month"]
)
def test_low_is_lowest_and_high_highest(what: str, size: str) -> None:
    span = {"1 secs": 600, "30 secs": 86_400}.get(size, 40 * 86_400)
    b = bars(ES, size, utc(2024, 6, 28) - span, utc(2024, 6, 28), what)
    assert len(b) > 0
    assert np.all(b.low <= np.minimum(b.open, b.close))
    assert np.all(b.high >= np.maximum(b.open, b.close))
    assert np.all(b.low > 0)


def test_quote_bars_carry_minus_one_volume_and_trades_carry_volume() -> None:
    window = (utc(2024, 6, 27), utc(2024, 6, 28))
    for what in ("MIDPOINT", "BID", "ASK", "BID_ASK"):
        b = bars(AAPL, "1 hour", *window, what)
        assert set(b.volume) == {-1.0} and set(b.wap) == {-1.0} and set(b.count) == {-1}
    trades = bars(AAPL, "1 hour", *window, "TRADES")
    assert np.all(trades.volume > 0) and np.all(trades.count > 0)
    assert np.all((trades.low <= trades.wap) & (trades.wap <= trades.high))


def test_bid_is_below_ask() -> None:
    window = (utc(2024, 6, 27), utc(2024, 6, 28))
    bid, ask = bars(EURUSD, "5 mins", *window, "BID"), bars(EURUSD, "5 mins", *window, "ASK")
    assert np.all(bid.close < ask.close)


@pytest.mark.parametrize(("inst", "rth"), [(AAPL, True), (AAPL, False), (ES, False),
                                           (EURUSD, False), (SPX, True)])  # fmt: skip
def test_daily_bars_agree_with_their_minutes(inst: Instrument, rth: bool) -> None:
    window = (utc(2024, 6, 9, 12), utc(2024, 6, 15))  # ES and forex open on Sunday evening
    what = "MIDPOINT" if inst is EURUSD else "TRADES"  # IB has no forex trades
    days = bars(inst, "1 day", *window, what, rth=rth)
    assert len(days) == 5
    for i in range(len(days)):
        minutes = bars(inst, "1 min", int(days.start_s[i]), int(days.end_s[i]), what, rth=rth)
        assert minutes.open[0] == days.open[i] and minutes.close[-1] == days.close[i]
        assert minutes.high.max() == days.high[i] and minutes.low.min() == days.low[i]
        if what == "TRADES":
            assert minutes.volume.sum() == days.volume[i]


def test_seconds_aggregate_exactly_to_their_minutes() -> None:
    start = utc(2024, 6, 27, 14)
    minutes = bars(AAPL, "1 min", start, start + 1800)
    seconds = bars(AAPL, "5 secs", start, start + 1800)
    by_minute = seconds.to_frame().groupby(seconds.start_s // 60)
    assert np.array_equal(by_minute["open"].first(), minutes.open)
    assert np.array_equal(by_minute["close"].last(), minutes.close)
    assert np.array_equal(by_minute["high"].max(), minutes.high)
    assert np.array_equal(by_minute["low"].min(), minutes.low)
    assert np.array_equal(by_minute["volume"].sum(), minutes.volume)


def test_no_bars_on_weekends_or_exchange_holidays() -> None:
    july4 = bars(AAPL, "1 min", utc(2024, 7, 4), utc(2024, 7, 5))
    weekend = bars(AAPL, "1 hour", utc(2024, 6, 29), utc(2024, 7, 1))
    fx_saturday = bars(EURUSD, "1 min", utc(2024, 6, 29), utc(2024, 6, 30))
    es_christmas = bars(ES, "1 hour", utc(2023, 12, 25, 6), utc(2023, 12, 25, 22))
    good_friday = bars(AAPL, "1 day", utc(2024, 3, 29), utc(2024, 3, 30))
    assert [len(b) for b in (july4, weekend, fx_saturday, es_christmas, good_friday)] == [0] * 5


def _new_york_times(b: Bars) -> list[str]:
    local = pd.to_datetime(b.start_s, unit="s", utc=True).tz_convert("America/New_York")
    return [t.strftime("%H:%M") for t in local]


def test_regular_hours_and_the_early_close() -> None:
    july3 = bars(AAPL, "30 mins", utc(2023, 7, 3), utc(2023, 7, 4), rth=True)
    assert _new_york_times(july3) == ["09:30", "10:00", "10:30", "11:00", "11:30", "12:00", "12:30"]
    extended = bars(AAPL, "1 hour", utc(2024, 6, 27), utc(2024, 6, 28))
    assert _new_york_times(extended)[0] == "04:00" and _new_york_times(extended)[-1] == "19:00"


def test_a_session_opening_off_the_grid_starts_with_a_short_bar() -> None:
    hourly = bars(AAPL, "1 hour", utc(2024, 6, 27), utc(2024, 6, 28), rth=True)
    assert _new_york_times(hourly)[:3] == ["09:30", "10:00", "11:00"]
    assert hourly.end_s[0] - hourly.start_s[0] == 1800


def test_weeks_and_months_start_with_their_first_session() -> None:
    weeks = bars(AAPL, "1 week", utc(2024, 5, 20), utc(2024, 6, 28))
    months = bars(AAPL, "1 month", utc(2024, 1, 1), utc(2024, 6, 28))
    week_days = [str(d) for d in weeks.session_day.astype("datetime64[D]")]
    month_days = [str(d) for d in months.session_day.astype("datetime64[D]")]
    assert week_days == [
        "2024-05-20",
        "2024-05-28",
        "2024-06-03",
        "2024-06-10",
        "2024-06-17",
        "2024-06-24",
    ]  # fmt: skip  (May 27 was Memorial Day)
    assert month_days == [
        "2024-01-02",
        "2024-02-01",
        "2024-03-01",
        "2024-04-01",
        "2024-05-01",
        "2024-06-03",
    ]


def test_bars_exist_only_up_to_now_and_after_the_head_timestamp() -> None:
    today = bars(AAPL, "1 min", utc(2024, 7, 1), utc(2024, 7, 2))
    assert int(today.end_s.max()) <= NOW_S
    assert len(bars(AAPL, "1 day", utc(2000, 1, 1), utc(2004, 1, 1), "MIDPOINT")) == 0
    assert len(bars(AAPL, "1 day", utc(2000, 1, 1), utc(2000, 1, 6), "TRADES")) == 3


def test_a_year_of_minute_bars_covers_every_open_minute() -> None:
    start, end = utc(2023, 6, 1), utc(2024, 6, 1)
    year = bars(EURUSD, "1 min", start, end, "MIDPOINT")
    assert len(year) == open_seconds(sessions_for(EURUSD, use_rth=False), start, end) // 60
    assert np.all(np.diff(year.start_s) > 0)


def test_expected_bars_names_columns_like_ib_async() -> None:
    frame = expected_bars(
        "EURUSD", "CASH", "1 day", "MIDPOINT", False, NOW - dt.timedelta(days=7), NOW, now_utc=NOW
    )
    assert list(frame.columns[:8]) == [
        "date",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "average",
        "barCount",
    ]
    assert frame["date"].iloc[-1] == dt.date(2024, 6, 28)
