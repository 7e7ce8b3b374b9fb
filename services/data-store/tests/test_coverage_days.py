"""Coverage per session day: each calendar date's state, on real calendars."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from ktrdr_data_store.calendar import DAY_NS, calendar_for
from ktrdr_data_store.coverage import MAX_DAYS, coverage_days, coverage_of
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.store import SCHEMA, MemoryBarStore
from ktrdr_shared.messages import CoverageDay, CoverageRequest, DayState
from ktrdr_shared.types import InstrumentType, Timeframe, from_unix_nanos, to_unix_nanos

pytestmark = pytest.mark.unit

HOUR = 3_600 * 10**9
D1, H1, W1, M1 = Timeframe.D1, Timeframe.H1, Timeframe.W1, Timeframe.M1
STK, CASH = InstrumentType.STK, InstrumentType.CASH
S, P, G, E, C, N = (DayState.STORED, DayState.PARTIAL, DayState.GAP, DayState.EMPTY,
                    DayState.CLOSED, DayState.NONE)  # fmt: skip
Range = tuple[int, int]


def utc(year: int, month: int, day: int, hour: int = 0) -> int:
    """Return ns since the epoch of a UTC wall-clock time."""
    return to_unix_nanos(dt.datetime(year, month, day, hour, tzinfo=dt.UTC))


def days(*dates: tuple[int, int, int]) -> list[int]:
    """Return daily-bar stamps (00:00 UTC of each date)."""
    return [utc(*d) for d in dates]


def hourly(
    instrument: InstrumentType, start: int, end: int, *, without: Range = (0, 0)
) -> list[int]:
    """Return the stamps of every hourly bar the market's sessions hold in ``[start, end)``."""
    sessions = calendar_for(instrument).sessions(start, end)
    stamps = [t for o, c in sessions for t in range(o, c, HOUR) if start <= t < end]
    return [t for t in stamps if not without[0] <= t < without[1]]


def table(stamps: list[int]) -> pa.Table:
    prices = [100.0] * len(stamps)
    return pa.table(
        {
            "ts": pa.array(stamps, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            **{name: prices for name in ("open", "high", "low", "close", "volume", "wap")},
            "count": [1] * len(stamps),
        },
        schema=SCHEMA,
    )


@dataclass(frozen=True)
class Case:
    """One dataset, what to ask about it, and the state of each date from ``first`` on."""

    symbol: str
    timeframe: Timeframe
    bars: list[int]
    first: str
    states: list[DayState]
    answered: list[Range] = field(default_factory=list)
    start: int | None = None
    end: int | None = None
    now: int = utc(2025, 1, 1)


WEEK_OF_JULY_4 = (utc(2024, 7, 1), utc(2024, 7, 9))  # Mon 1st .. Mon 8th; Thursday 4th closed
JULY_2_MIDDAY = (utc(2024, 7, 2, 15), utc(2024, 7, 2, 17))  # 11:00-13:00 New York
JULY_5 = (utc(2024, 7, 5), utc(2024, 7, 6))
FX_NEW_YEAR = (utc(2023, 12, 28), utc(2024, 1, 3))

CASES = {
    "daily bars across a US holiday and a weekend": Case(
        "AAPL", D1, days((2024, 7, 1), (2024, 7, 2), (2024, 7, 3), (2024, 7, 5), (2024, 7, 8)),
        first="2024-07-01", states=[S, S, S, C, S, C, C, S]),
    "a missing trading day is a gap, the holiday beside it closed": Case(
        "AAPL", D1, days((2024, 7, 1), (2024, 7, 2), (2024, 7, 8)),
        first="2024-07-01", states=[S, S, G, C, G, C, C, S]),
    "days IB answered empty": Case(
        "AAPL", D1, days((2024, 7, 1), (2024, 7, 2), (2024, 7, 8)),
        answered=[(utc(2024, 7, 3), utc(2024, 7, 8))],
        first="2024-07-01", states=[S, S, E, C, E, C, C, S]),
    "a session with a missing stretch is partial": Case(
        "AAPL", H1, hourly(STK, *WEEK_OF_JULY_4, without=JULY_2_MIDDAY),
        first="2024-07-01", states=[S, P, S, C, S, C, C, S]),
    "an intraday session IB answered empty": Case(
        "AAPL", H1, hourly(STK, *WEEK_OF_JULY_4, without=JULY_5), answered=[JULY_5],
        first="2024-07-01", states=[S, S, S, C, E, C, C, S]),
    "a session missing whole is a gap": Case(
        "AAPL", H1, hourly(STK, *WEEK_OF_JULY_4, without=JULY_5),
        first="2024-07-01", states=[S, S, S, C, G, C, C, S]),
    "a requested range: gaps before the first bar and after the last": Case(
        "AAPL", D1, days((2024, 6, 3), (2024, 7, 2), (2024, 7, 3), (2024, 7, 5)),
        start=utc(2024, 6, 28), end=utc(2024, 7, 10),
        first="2024-06-28", states=[G, C, C, G, S, S, C, S, C, C, G, G]),
    "a session not complete yet is none, and the days after now are left out": Case(
        "AAPL", D1, days((2024, 7, 2), (2024, 7, 3), (2024, 7, 5)), now=utc(2024, 7, 9, 12),
        start=utc(2024, 7, 1), end=utc(2024, 7, 20),
        first="2024-07-01", states=[G, S, S, C, S, C, C, G, N]),
    "an empty dataset IB answered empty": Case(
        "AAPL", D1, [], answered=[WEEK_OF_JULY_4],
        first="2024-07-01", states=[E, E, E, C, E, C, C, E]),
    # A forex session is named after the day it closes: Monday's opens Sunday 17:00 New York.
    "forex days are named by their close; New Year's Day trades": Case(
        "EURUSD", H1, hourly(CASH, *FX_NEW_YEAR),
        first="2023-12-28", states=[S, S, C, C, S, S, S]),
    "weekly bars: every session date of a week shares its bar's state": Case(
        "AAPL", W1, days((2024, 7, 1), (2024, 7, 15)),
        first="2024-07-01",
        states=[S, S, S, C, S, C, C, G, G, G, G, G, C, C, S, S, S, S, S, C, C]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_coverage_days(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    store, ledger = MemoryBarStore(), AnsweredLedger(tmp_path)
    store.merge(case.symbol, case.timeframe, table(case.bars))
    ledger.add(case.symbol, case.timeframe, case.answered)
    request = CoverageRequest(
        symbol=case.symbol,
        timeframe=case.timeframe,
        start=_dt(case.start),
        end=_dt(case.end),
        days=True,
    )
    got = coverage_of(store, ledger, request, now=from_unix_nanos(case.now)).days
    first = np.datetime64(case.first, "D")
    dates = [str(first + i) for i in range(len(case.states))]
    assert got == [CoverageDay(date=d, state=s) for d, s in zip(dates, case.states, strict=True)]


def test_days_only_when_asked(tmp_path: Path) -> None:
    store = MemoryBarStore()
    store.merge("AAPL", D1, table(days((2024, 7, 1))))
    request = CoverageRequest(symbol="AAPL", timeframe=D1)
    assert coverage_of(store, AnsweredLedger(tmp_path), request).days is None


def test_a_dataset_with_nothing_in_it_has_no_days(tmp_path: Path) -> None:
    request = CoverageRequest(symbol="AAPL", timeframe=D1, days=True)
    assert coverage_of(MemoryBarStore(), AnsweredLedger(tmp_path), request).days == []


def test_a_range_longer_than_the_cap_keeps_its_latest_days() -> None:
    calendar = calendar_for(STK)
    empty = np.zeros(0, dtype=np.int64)
    got = coverage_days(calendar, D1, utc(1990, 1, 1), utc(2024, 7, 9), empty, [], [])
    assert len(got) == MAX_DAYS
    assert got[-1].date == "2024-07-08"
    assert {d.state for d in got} == {C, N}


@pytest.mark.parametrize("timeframe", [M1, H1, D1])
def test_closed_dates_are_exactly_the_calendars_days_without_a_session(
    timeframe: Timeframe,
) -> None:
    calendar = calendar_for(STK)
    lo, hi = utc(2023, 11, 1), utc(2024, 2, 1)
    got = coverage_days(calendar, timeframe, lo, hi, np.zeros(0, dtype=np.int64), [], [])
    sessions = {str(np.datetime64(int(d), "D")) for d in calendar.dates}
    assert [d.date for d in got] == [str(np.datetime64(lo // DAY_NS + i, "D")) for i in range(92)]
    assert [d.state is C for d in got] == [d.date not in sessions for d in got]


def test_an_instant_inside_a_session_counts_for_the_sessions_date() -> None:
    """Tuesday 00:30 UTC is Monday 20:30 New York, in Monday's extended hours in winter."""
    calendar = calendar_for(STK)
    bars = np.asarray([utc(2024, 1, 9, 0)], dtype=np.int64)  # Monday's 19:00 bar
    got = coverage_days(calendar, H1, utc(2024, 1, 9, 0), utc(2024, 1, 10), bars, [], [])
    assert got == [CoverageDay(date="2024-01-08", state=S), CoverageDay(date="2024-01-09", state=N)]


def test_twenty_years_of_minute_bars_with_a_gap_a_week() -> None:
    """About 5 million one-minute stamps (the function takes some 15 ms over them)."""
    calendar = calendar_for(STK)
    lo, hi = utc(2004, 1, 1, 6), utc(2024, 1, 1)  # 01:00 New York: between two sessions
    first, last = np.searchsorted(calendar.opens, [lo, hi])
    opens, closes = calendar.opens[first:last], calendar.closes[first:last]
    stamps = np.concatenate(
        [np.arange(o, c, 60 * 10**9) for o, c in zip(opens, closes, strict=True)]
    )
    gaps = [(int(o), int(o) + HOUR) for o in opens[::5]]
    stamps = stamps[~np.isin(stamps // HOUR * HOUR, [g[0] for g in gaps])]
    got = coverage_days(calendar, M1, lo, hi, stamps, gaps, [])
    states = [d.state for d in got]
    assert len(got) == 7305 and states.count(P) == len(gaps)
    assert states.count(S) == len(opens) - len(gaps)


def _dt(ns: int | None) -> dt.datetime | None:
    return from_unix_nanos(ns) if ns is not None else None
