"""Coverage: stored ranges, gaps and answered-empty ranges, on both stores, real calendars."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.calendar import calendar_for
from ktrdr_data_store.coverage import coverage_of, default_instrument_type
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.store import SCHEMA, BarStore, MemoryBarStore, ParquetBarStore
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import Coverage, CoverageRequest, TimeRange
from ktrdr_shared.types import InstrumentType, Timeframe, from_unix_nanos, to_unix_nanos

pytestmark = pytest.mark.unit

HOUR = 3_600 * 10**9
D1, H1 = Timeframe.D1, Timeframe.H1
STK, CASH = InstrumentType.STK, InstrumentType.CASH
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
    """Return the stamps of every hourly bar the market's sessions hold in ``[start, end)``.

    Sessions here open on the hour, so the bars are simply every hour from each open.
    """
    sessions = calendar_for(instrument).sessions(start, end)
    stamps = [t for o, c in sessions for t in range(o, c, HOUR) if start <= t < end]
    return [t for t in stamps if not without[0] <= t < without[1]]


def table(stamps: list[int]) -> pa.Table:
    prices = [100.0 + i % 7 for i in range(len(stamps))]
    return pa.table(
        {
            "ts": pa.array(stamps, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": prices,
            "high": prices,
            "low": prices,
            "close": prices,
            "volume": [1.0] * len(stamps),
            "wap": prices,
            "count": [1] * len(stamps),
        },
        schema=SCHEMA,
    )


@dataclass(frozen=True)
class Case:
    """One dataset, what to ask about it, and what coverage must say."""

    symbol: str
    timeframe: Timeframe
    bars: list[int]
    rows: int
    stored: list[Range]
    gaps: list[Range] = field(default_factory=list)
    answered_empty: list[Range] = field(default_factory=list)
    answered: list[Range] = field(default_factory=list)
    start: int | None = None
    end: int | None = None
    instrument_type: InstrumentType | None = None
    now: int = utc(2025, 1, 1)


WEEK_OF_JULY_4 = (utc(2024, 7, 1), utc(2024, 7, 9))  # Mon 1st .. Mon 8th; Thursday 4th closed
STK_WEEK = hourly(STK, *WEEK_OF_JULY_4)
JULY_2_MIDDAY = (utc(2024, 7, 2, 15), utc(2024, 7, 2, 17))  # 11:00-13:00 New York
JULY_5 = (utc(2024, 7, 5), utc(2024, 7, 6))
JULY_5_SESSION = (utc(2024, 7, 5, 8), utc(2024, 7, 6))  # 04:00-20:00 New York
FX_NEW_YEAR = (utc(2023, 12, 28), utc(2024, 1, 3))

CASES = {
    "daily bars across a US holiday: one range, no gap": Case(
        "AAPL", D1, days((2024, 7, 1), (2024, 7, 2), (2024, 7, 3), (2024, 7, 5), (2024, 7, 8)),
        rows=5, stored=[(utc(2024, 7, 1), utc(2024, 7, 9))]),
    "hourly bars across a US holiday and a half day: one range, no gap": Case(
        "AAPL", H1, STK_WEEK, rows=len(STK_WEEK),
        stored=[(STK_WEEK[0], STK_WEEK[-1] + HOUR)]),
    "an internal gap splits the stored range": Case(
        "AAPL", D1, days((2024, 7, 1), (2024, 7, 2), (2024, 7, 8)), rows=3,
        stored=[(utc(2024, 7, 1), utc(2024, 7, 3)), (utc(2024, 7, 8), utc(2024, 7, 9))],
        gaps=[(utc(2024, 7, 3), utc(2024, 7, 6))]),  # the 3rd and the 5th, closed 4th between
    "an internal intraday gap": Case(
        "AAPL", H1, hourly(STK, *WEEK_OF_JULY_4, without=JULY_2_MIDDAY),
        rows=len(STK_WEEK) - 2, gaps=[JULY_2_MIDDAY],
        stored=[(STK_WEEK[0], JULY_2_MIDDAY[0]), (JULY_2_MIDDAY[1], STK_WEEK[-1] + HOUR)]),
    "a range IB answered empty is no gap and keeps the range whole": Case(
        "AAPL", D1, days((2024, 7, 1), (2024, 7, 2), (2024, 7, 8)), rows=3,
        answered=[(utc(2024, 7, 3), utc(2024, 7, 8))],
        stored=[(utc(2024, 7, 1), utc(2024, 7, 9))],
        answered_empty=[(utc(2024, 7, 3), utc(2024, 7, 6))]),
    "an answered-empty trading day of hourly bars": Case(
        "AAPL", H1, hourly(STK, *WEEK_OF_JULY_4, without=JULY_5), rows=len(STK_WEEK) - 16,
        answered=[JULY_5, (STK_WEEK[0], STK_WEEK[3])],  # the second one holds bars: not empty
        stored=[(STK_WEEK[0], STK_WEEK[-1] + HOUR)], answered_empty=[JULY_5_SESSION]),
    "an empty dataset": Case("AAPL", D1, [], rows=0, stored=[]),
    "an empty dataset over a requested range misses all of it": Case(
        "AAPL", D1, [], rows=0, stored=[], start=WEEK_OF_JULY_4[0], end=WEEK_OF_JULY_4[1],
        gaps=[WEEK_OF_JULY_4]),
    "an empty dataset IB answered empty": Case(
        "AAPL", D1, [], rows=0, stored=[], answered=[WEEK_OF_JULY_4],
        answered_empty=[WEEK_OF_JULY_4]),
    "a requested range: gaps before the first bar, after the last, rows inside only": Case(
        "AAPL", D1, days((2024, 6, 3), (2024, 7, 2), (2024, 7, 3), (2024, 7, 5)),
        start=utc(2024, 6, 28), end=utc(2024, 7, 10), rows=3,
        stored=[(utc(2024, 7, 2), utc(2024, 7, 6))],
        gaps=[(utc(2024, 6, 28), utc(2024, 7, 2)), (utc(2024, 7, 8), utc(2024, 7, 10))]),
    "an end after now stops at the last closed bar": Case(
        "AAPL", D1, days((2024, 7, 2), (2024, 7, 3), (2024, 7, 5)), now=utc(2024, 7, 9, 12),
        start=utc(2024, 6, 28), end=utc(2024, 7, 10), rows=3,
        stored=[(utc(2024, 7, 2), utc(2024, 7, 6))],
        gaps=[(utc(2024, 6, 28), utc(2024, 7, 2)), (utc(2024, 7, 8), utc(2024, 7, 9))]),
    "forex by its name: a weekend and a new year are no gaps": Case(
        "EURUSD", H1, hourly(CASH, *FX_NEW_YEAR), rows=len(hourly(CASH, *FX_NEW_YEAR)),
        stored=[(hourly(CASH, *FX_NEW_YEAR)[0], FX_NEW_YEAR[1])]),
    "forex by its name: a missing night is a gap": Case(
        "EUR.USD", H1, hourly(CASH, *FX_NEW_YEAR, without=(utc(2024, 1, 2, 1), utc(2024, 1, 2, 3))),
        rows=len(hourly(CASH, *FX_NEW_YEAR)) - 2,
        stored=[(hourly(CASH, *FX_NEW_YEAR)[0], utc(2024, 1, 2, 1)),
                (utc(2024, 1, 2, 3), FX_NEW_YEAR[1])],
        gaps=[(utc(2024, 1, 2, 1), utc(2024, 1, 2, 3))]),
    # As a stock, 01:00-03:00 UTC is a closed night, but Friday's extended hours run to 01:00
    # UTC, three hours past the forex close, and those bars are missing.
    "the instrument type given wins over the name": Case(
        "EURUSD", H1, hourly(CASH, *FX_NEW_YEAR, without=(utc(2024, 1, 2, 1), utc(2024, 1, 2, 3))),
        instrument_type=STK, rows=len(hourly(CASH, *FX_NEW_YEAR)) - 2,
        stored=[(hourly(CASH, *FX_NEW_YEAR)[0], utc(2023, 12, 29, 22)),
                (utc(2023, 12, 31, 22), FX_NEW_YEAR[1])],
        gaps=[(utc(2023, 12, 29, 22), utc(2023, 12, 30, 1))]),
}  # fmt: skip


@pytest.fixture(params=["memory", "parquet"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], BarStore]:
    if request.param == "memory":
        return MemoryBarStore
    return lambda: ParquetBarStore(tmp_path / "store")


@pytest.mark.parametrize("name", list(CASES))
def test_coverage(name: str, make_store: Callable[[], BarStore], tmp_path: Path) -> None:
    case = CASES[name]
    store = make_store()
    ledger = AnsweredLedger(tmp_path / "ledger")
    store.merge(case.symbol, case.timeframe, table(case.bars))
    ledger.add(case.symbol, case.timeframe, case.answered)
    request = CoverageRequest(
        symbol=case.symbol, timeframe=case.timeframe, start=_dt(case.start), end=_dt(case.end)
    )
    got = coverage_of(
        store, ledger, request, instrument_type=case.instrument_type, now=from_unix_nanos(case.now)
    )
    inside = [t for t in case.bars if _within(t, case.start, case.end)]
    assert got == Coverage(
        symbol=case.symbol.upper(),
        timeframe=case.timeframe,
        rows=case.rows,
        first=_dt(inside[0]) if inside else None,
        last=_dt(inside[-1]) if inside else None,
        stored=_ranges(case.stored),
        gaps=_ranges(case.gaps),
        answered_empty=_ranges(case.answered_empty),
    )


def test_gaps_and_stored_ranges_partition_the_bars(tmp_path: Path) -> None:
    """Every stored bar lies in exactly one stored range and in no gap."""
    store, bars = MemoryBarStore(), hourly(STK, *WEEK_OF_JULY_4, without=JULY_2_MIDDAY)
    store.merge("AAPL", H1, table(bars[::5]))  # every fifth bar: many gaps
    request = CoverageRequest(symbol="AAPL", timeframe=H1)
    got = coverage_of(store, AnsweredLedger(tmp_path), request)
    stored = [(to_unix_nanos(r.start), to_unix_nanos(r.end)) for r in got.stored]
    gaps = [(to_unix_nanos(r.start), to_unix_nanos(r.end)) for r in got.gaps]
    assert len(stored) == len(gaps) + 1 > 2
    for t in bars[::5]:
        assert sum(a <= t < b for a, b in stored) == 1
        assert not any(a <= t < b for a, b in gaps)
    assert all(
        s[1] <= g[0] and g[1] <= n[0] for s, g, n in zip(stored[:-1], gaps, stored[1:], strict=True)
    )


def test_a_naive_time_is_refused_naming_the_field(tmp_path: Path) -> None:
    request = CoverageRequest(symbol="AAPL", timeframe=D1, start=dt.datetime(2024, 7, 1))
    with pytest.raises(InvalidRequest, match="start: naive datetime") as caught:
        coverage_of(MemoryBarStore(), AnsweredLedger(tmp_path), request)
    assert caught.value.details == {"field": "start"}


@pytest.mark.parametrize(("symbol", "expected"), [
    ("EURUSD", CASH), ("EUR.USD", CASH), ("eur_usd", CASH), ("USD/JPY", CASH),
    ("AAPL", STK), ("BRK B", STK), ("ABCDEF", STK), ("USDUSD", STK), ("EURUSDX", STK),
])  # fmt: skip
def test_an_unknown_instrument_type_is_guessed_from_the_symbol(
    symbol: str, expected: InstrumentType
) -> None:
    assert default_instrument_type(symbol) is expected


def _dt(ns: int | None) -> dt.datetime | None:
    return from_unix_nanos(ns) if ns is not None else None


def _within(t: int, start: int | None, end: int | None) -> bool:
    return (start is None or t >= start) and (end is None or t < end)


def _ranges(ranges: list[Range]) -> list[TimeRange]:
    return [TimeRange(start=from_unix_nanos(a), end=from_unix_nanos(b)) for a, b in ranges]
