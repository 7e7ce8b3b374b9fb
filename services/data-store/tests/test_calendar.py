"""Market calendars: holidays, half days, DST, forex weekends, the CME halt; the sim agrees."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from ktrdr_data_store.calendar import (
    CalendarRangeError,
    MarketCalendar,
    calendar_for,
    grid_floor,
    utc_offsets_ns,
)
from ktrdr_shared.types import InstrumentType, Timeframe, to_unix_nanos

pytestmark = pytest.mark.unit

HOUR = 3_600 * 1_000_000_000
STK, IND, FUT, CASH = (
    InstrumentType.STK,
    InstrumentType.IND,
    InstrumentType.FUT,
    InstrumentType.CASH,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Return ns since the epoch of a UTC wall-clock time."""
    return to_unix_nanos(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC))


def day(year: int, month: int, date: int) -> tuple[int, int]:
    """Return the 24 hours of a UTC date, the range that holds one daily bar's stamp."""
    return utc(year, month, date), utc(year, month, date) + 24 * HOUR


# --- US stocks: extended hours 04:00 to close + 4 h New York, on XNYS days ------------------


def test_us_holiday_has_no_session_and_the_day_before_is_a_half_day() -> None:
    sessions = calendar_for(STK).sessions(utc(2024, 7, 3), utc(2024, 7, 6))
    assert sessions == [
        (utc(2024, 7, 3, 8), utc(2024, 7, 3, 21)),  # 04:00-17:00 EDT: the 13:00 close + 4 h
        (utc(2024, 7, 5, 8), utc(2024, 7, 6, 0)),  # 04:00-20:00 EDT; July 4 is closed
    ]
    assert not calendar_for(STK).is_open(utc(2024, 7, 4, 15))


def test_half_day_after_thanksgiving_closes_early() -> None:
    friday = utc(2024, 11, 29, 12), utc(2024, 11, 29, 23)
    extended = calendar_for(STK).sessions(*friday)
    regular = calendar_for(STK, use_rth=True).sessions(*friday)
    assert extended == [(utc(2024, 11, 29, 9), utc(2024, 11, 29, 22))]  # 04:00-17:00 EST
    assert regular == [(utc(2024, 11, 29, 14, 30), utc(2024, 11, 29, 18))]  # 09:30-13:00 EST


@pytest.mark.parametrize(
    ("friday", "monday", "offset_h"),
    [
        # Spring forward (2024-03-10): 04:00 New York is 09:00 UTC, then 08:00 UTC.
        ((utc(2024, 3, 8, 9), utc(2024, 3, 9, 1)), (utc(2024, 3, 11, 8), utc(2024, 3, 12)), -4),
        # Fall back (2024-11-03): 04:00 New York is 08:00 UTC, then 09:00 UTC.
        ((utc(2024, 11, 1, 8), utc(2024, 11, 2)), (utc(2024, 11, 4, 9), utc(2024, 11, 5, 1)), -5),
    ],
)
def test_stock_sessions_follow_new_york_across_the_dst_switch(
    friday: tuple[int, int], monday: tuple[int, int], offset_h: int
) -> None:
    calendar = calendar_for(STK)
    assert calendar.sessions(friday[0], monday[0] + HOUR) == [friday, monday]
    i = int(np.searchsorted(calendar.opens, monday[0]))
    assert calendar.offsets[i] == offset_h * HOUR


@pytest.mark.parametrize("exchange", ["SMART", "NYSE", "NASDAQ", "ISLAND"])
def test_stocks_trade_04_00_to_20_00_new_york_without_rth(exchange: str) -> None:
    extended = calendar_for(STK, exchange).sessions(utc(2024, 6, 26), utc(2024, 6, 29))
    assert extended == [
        (utc(2024, 6, 26, 8), utc(2024, 6, 27)),
        (utc(2024, 6, 27, 8), utc(2024, 6, 28)),
        (utc(2024, 6, 28, 8), utc(2024, 6, 29)),
    ]
    regular = calendar_for(STK, exchange, use_rth=True).sessions(utc(2024, 6, 28), utc(2024, 6, 29))
    assert regular == [(utc(2024, 6, 28, 13, 30), utc(2024, 6, 28, 20))]


def test_an_index_keeps_regular_hours_and_aligns_on_chicago_time() -> None:
    calendar = calendar_for(IND)  # SPX on CBOE, as IB reports it
    assert calendar.zone == "America/Chicago"
    assert calendar.sessions(utc(2024, 7, 5), utc(2024, 7, 6)) == [
        (utc(2024, 7, 5, 13, 30), utc(2024, 7, 5, 20))
    ]
    assert calendar is calendar_for(IND, use_rth=True)


# --- Forex: Sunday 17:00 to Friday 17:00 New York ------------------------------------------


def test_forex_weekend_is_closed_from_friday_to_sunday_17_00_new_york() -> None:
    calendar = calendar_for(CASH)
    assert calendar.sessions(utc(2024, 3, 8, 12), utc(2024, 3, 11, 12)) == [
        (utc(2024, 3, 7, 22), utc(2024, 3, 8, 22)),  # Friday's session closes 17:00 EST
        (utc(2024, 3, 10, 21), utc(2024, 3, 11, 21)),  # Sunday 17:00 EDT, after the switch
    ]
    assert not calendar.is_open(utc(2024, 3, 9, 12))
    assert calendar.is_open(utc(2024, 7, 4, 12))  # no holidays at 24x5


def test_forex_weekdays_abut_so_the_week_is_one_open_stretch() -> None:
    sessions = calendar_for(CASH).sessions(utc(2024, 7, 8), utc(2024, 7, 13))
    assert len(sessions) == 5
    assert all(a[1] == b[0] for a, b in itertools.pairwise(sessions))


# --- CME Globex (ES): 17:00 the day before to 16:00 Chicago -----------------------------------


def test_cme_halts_daily_from_16_00_to_17_00_chicago() -> None:
    calendar = calendar_for(FUT)
    assert calendar.sessions(utc(2024, 7, 9, 20), utc(2024, 7, 9, 23)) == [
        (utc(2024, 7, 8, 22), utc(2024, 7, 9, 21)),
        (utc(2024, 7, 9, 22), utc(2024, 7, 10, 21)),
    ]
    assert not calendar.is_open(utc(2024, 7, 9, 21, 30))
    assert calendar.is_open(utc(2024, 7, 9, 22))


def test_cme_closes_early_on_a_holiday_and_moves_with_dst() -> None:
    calendar = calendar_for(FUT)
    july_4 = calendar.sessions(utc(2024, 7, 4, 12), utc(2024, 7, 4, 13))
    assert july_4 == [(utc(2024, 7, 3, 22), utc(2024, 7, 4, 17))]  # 12:00 CDT close
    sundays = calendar.sessions(utc(2024, 3, 8, 23), utc(2024, 3, 11))
    assert sundays == [(utc(2024, 3, 10, 22), utc(2024, 3, 11, 21))]  # 17:00 CDT open
    before = calendar.sessions(utc(2024, 3, 4), utc(2024, 3, 4, 1))
    assert before == [(utc(2024, 3, 3, 23), utc(2024, 3, 4, 22))]  # 17:00 CST open


def test_cme_regular_hours_are_08_30_to_15_00_chicago() -> None:
    sessions = calendar_for(FUT, "CME", use_rth=True).sessions(utc(2024, 7, 9), utc(2024, 7, 10))
    assert sessions == [(utc(2024, 7, 9, 13, 30), utc(2024, 7, 9, 20))]


# --- Bar windows: where daily and weekly bars are stamped ------------------------------------


def test_daily_bars_are_stamped_at_session_dates() -> None:
    windows = calendar_for(STK).bar_windows(Timeframe.D1, utc(2024, 7, 1), utc(2024, 7, 8))
    assert windows == [day(2024, 7, 1), day(2024, 7, 2), day(2024, 7, 3), day(2024, 7, 5)]
    cme = calendar_for(FUT).bar_windows(Timeframe.D1, utc(2024, 7, 4), utc(2024, 7, 6))
    assert cme == [day(2024, 7, 4), day(2024, 7, 5)]  # a half session still has a bar


def test_weekly_bars_are_stamped_at_each_weeks_first_session_date() -> None:
    windows = calendar_for(STK).bar_windows(Timeframe.W1, utc(2024, 8, 26), utc(2024, 9, 14))
    assert windows == [day(2024, 8, 26), day(2024, 9, 3), day(2024, 9, 9)]  # Labor Day Monday


def test_intraday_bar_windows_are_the_sessions() -> None:
    calendar = calendar_for(FUT)
    start, end = utc(2024, 7, 1), utc(2024, 7, 3)
    assert calendar.bar_windows(Timeframe.M5, start, end) == calendar.sessions(start, end)


# --- Which bars are complete ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "use_rth", "timeframe", "now", "expected"),
    [
        (STK, False, Timeframe.H1, utc(2024, 7, 5, 14, 20), utc(2024, 7, 5, 14)),
        (STK, False, Timeframe.H4, utc(2024, 7, 5, 14, 20), utc(2024, 7, 5, 12)),  # 08:00 EDT
        (STK, True, Timeframe.H1, utc(2024, 7, 5, 13, 45), utc(2024, 7, 5, 13, 30)),  # the open
        (STK, False, Timeframe.M1, utc(2024, 7, 4, 15), utc(2024, 7, 4, 15)),  # closed: all done
        (STK, False, Timeframe.D1, utc(2024, 7, 5, 14), utc(2024, 7, 5)),
        (STK, False, Timeframe.D1, utc(2024, 7, 6, 12), utc(2024, 7, 6, 12)),  # Saturday
        (STK, False, Timeframe.W1, utc(2024, 7, 10, 12), utc(2024, 7, 8)),
        (FUT, False, Timeframe.D1, utc(2024, 7, 9, 23), utc(2024, 7, 9, 23)),  # July 9 is done
        (CASH, False, Timeframe.H4, utc(2024, 7, 9, 21, 30), utc(2024, 7, 9, 21)),  # 17:00 open
    ],
)
def test_complete_until_excludes_the_bar_in_progress(
    instrument: InstrumentType, use_rth: bool, timeframe: Timeframe, now: int, expected: int
) -> None:
    assert calendar_for(instrument, use_rth=use_rth).complete_until(timeframe, now) == expected


def test_grid_floor_follows_the_local_clock() -> None:
    assert grid_floor(utc(2024, 1, 5, 14, 20), -5 * HOUR, 4 * HOUR) == utc(2024, 1, 5, 13)
    assert grid_floor(utc(2024, 7, 5, 14, 20), -4 * HOUR, 4 * HOUR) == utc(2024, 7, 5, 12)
    offsets = utc_offsets_ns(np.array([utc(2024, 1, 5), utc(2024, 7, 5)]), "America/New_York")
    assert offsets.tolist() == [-5 * HOUR, -4 * HOUR]


# --- Choosing a calendar, bounds, errors ----------------------------------------------------


def test_calendars_are_built_once_and_exchange_names_are_case_insensitive() -> None:
    assert calendar_for(STK) is calendar_for(STK, "SMART") is calendar_for(STK, " nyse ")
    assert calendar_for(STK, "nasdaq").name.startswith("XNAS")
    assert calendar_for(CASH, "IDEALPRO") is calendar_for(CASH, use_rth=True)  # always 24x5


def test_unknown_exchange_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"no calendar for STK on exchange 'LSE'.*NASDAQ"):
        calendar_for(STK, "LSE")


@pytest.mark.parametrize(
    ("start", "end"),
    [(utc(1975, 1, 1), utc(1981, 1, 1)), (utc(2024, 1, 1), utc(2080, 1, 1))],
)
def test_range_outside_the_calendar_is_refused_naming_the_bounds(start: int, end: int) -> None:
    calendar = calendar_for(STK)
    with pytest.raises(CalendarRangeError, match=r"covers 1980-01-0\dT.*clamp"):
        calendar.sessions(start, end)
    with pytest.raises(CalendarRangeError):
        calendar.bar_windows(Timeframe.D1, start, end)


def test_bounds_reach_back_to_1980_and_a_clamped_range_works() -> None:
    calendar = calendar_for(STK)
    assert calendar.first_ns <= utc(1980, 1, 3) and calendar.last_ns > utc(2025, 1, 1)
    assert len(calendar.sessions(calendar.first_ns, utc(1980, 2, 1))) > 15


def test_inverted_range_is_refused() -> None:
    with pytest.raises(ValueError, match="after its end"):
        calendar_for(STK).sessions(utc(2024, 2, 1), utc(2024, 1, 1))


@pytest.mark.parametrize("instrument", list(InstrumentType))
@pytest.mark.parametrize("use_rth", [False, True])
def test_sessions_are_sorted_disjoint_and_dated_on_their_close(
    instrument: InstrumentType, use_rth: bool
) -> None:
    calendar = calendar_for(instrument, use_rth=use_rth)
    assert np.all(calendar.opens < calendar.closes)
    assert np.all(calendar.closes[:-1] <= calendar.opens[1:])
    # Every session closes on its own date in its market's zone (the date names the session).
    local_close = calendar.closes - 1 + utc_offsets_ns(calendar.closes, calendar.zone)
    assert np.array_equal(local_close // (24 * HOUR), calendar.dates)


# --- Agreement with the TWS simulator -------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "use_rth", "kind", "zone"),
    [
        (STK, False, "US_EQUITY", "America/New_York"),
        (STK, True, "US_EQUITY", "America/New_York"),
        (IND, False, "US_INDEX", "America/Chicago"),
        (FUT, False, "CME_EQUITY", "America/Chicago"),
        (FUT, True, "CME_EQUITY", "America/Chicago"),
        (CASH, False, "FX_24X5", "America/New_York"),
    ],
)
def test_sessions_match_the_simulators_from_2000(
    instrument: InstrumentType, use_rth: bool, kind: str, zone: str
) -> None:
    sim = pytest.importorskip("ktrdr_ib_sim.sessions")
    theirs = sim.schedule(sim.MarketKind[kind], use_rth, zone)
    ours: MarketCalendar = calendar_for(instrument, use_rth=use_rth)
    same_days = ours.dates >= theirs.dates[0]
    assert np.array_equal(ours.dates[same_days], theirs.dates)
    assert np.array_equal(ours.opens[same_days], theirs.opens * 1_000_000_000)
    assert np.array_equal(ours.closes[same_days], theirs.closes * 1_000_000_000)
    assert np.array_equal(ours.offsets[same_days], theirs.utc_offsets * 1_000_000_000)
