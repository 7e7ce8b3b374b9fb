"""Fitting a load to the market: complete bars only, calendar bounds, the gap filler's test."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from ktrdr_data_store.calendar import calendar_for
from ktrdr_data_store.planning import load_range, market_calendar, plan_segments, traded_since
from ktrdr_shared.messages import LoadData
from ktrdr_shared.types import InstrumentType, LoadMode, Timeframe, to_unix_nanos

pytestmark = pytest.mark.unit

STOCKS = calendar_for(InstrumentType.STK)
FOREX = calendar_for(InstrumentType.CASH)
HOUR = 3600 * 10**9


def ns(*args: int) -> int:
    return to_unix_nanos(dt.datetime(*args, tzinfo=dt.UTC))  # type: ignore[misc]


def test_a_tail_load_ends_before_the_bar_still_forming() -> None:
    # Friday 2024-06-28 18:30 New York: extended hours run to 20:00, so the 18:00 bar is open
    now = ns(2024, 6, 28, 22, 30)
    command = LoadData(symbol="AAPL", timeframe=Timeframe.H1)
    start, end = load_range(command, now_ns=now, calendar=STOCKS, first_stored=ns(2024, 6, 3),
                            last_stored=ns(2024, 6, 28, 20))  # fmt: skip
    assert (start, end) == (ns(2024, 6, 28, 20), ns(2024, 6, 28, 22))


def test_an_empty_dataset_tails_back_by_the_default_lookback() -> None:
    command = LoadData(symbol="AAPL", timeframe=Timeframe.D1)
    now = ns(2024, 6, 29, 12)
    start, end = load_range(command, now_ns=now, calendar=STOCKS, first_stored=None,
                            last_stored=None)  # fmt: skip
    assert now - start == 5 * 365 * 24 * HOUR
    assert end == now  # Saturday: no session open, every daily bar so far is complete


def test_a_start_before_the_calendar_is_clamped_to_it() -> None:
    command = LoadData(symbol="AAPL", timeframe=Timeframe.D1, mode=LoadMode.FULL,
                       start=dt.datetime(1970, 1, 5, tzinfo=dt.UTC))  # fmt: skip
    start, _ = load_range(command, now_ns=ns(2024, 6, 29), calendar=STOCKS, first_stored=None,
                          last_stored=None)  # fmt: skip
    assert start == STOCKS.first_ns


def test_a_future_end_is_refused_by_name() -> None:
    command = LoadData(symbol="AAPL", timeframe=Timeframe.H1,
                       end=dt.datetime(2030, 1, 1, tzinfo=dt.UTC))  # fmt: skip
    with pytest.raises(ValueError, match=r"end .* is in the future"):
        load_range(command, now_ns=ns(2024, 6, 29), calendar=STOCKS, first_stored=None,
                   last_stored=None)  # fmt: skip


def test_plan_counts_what_was_stored_inside_the_span() -> None:
    stored = np.array([ns(2024, 6, 27, 20), ns(2024, 6, 28, 8), ns(2024, 6, 28, 9)])
    plan = plan_segments(Timeframe.H1, (ns(2024, 6, 28, 8), ns(2024, 6, 28, 12)), calendar=STOCKS,
                         stored_ts=stored, answered=[])  # fmt: skip
    assert plan.cached_before == 2
    assert plan.segments == [(ns(2024, 6, 28, 10), ns(2024, 6, 28, 12))]


@pytest.mark.parametrize(
    ("calendar", "timeframe", "last", "now", "due"),
    [
        (STOCKS, Timeframe.H1, ns(2024, 6, 28, 23), ns(2024, 6, 30, 12), False),  # weekend
        (STOCKS, Timeframe.H1, ns(2024, 6, 28, 23), ns(2024, 7, 1, 9, 30), True),  # Mon 05:30 NY
        (STOCKS, Timeframe.H1, ns(2024, 7, 3, 20), ns(2024, 7, 4, 18), False),  # July 4th
        (STOCKS, Timeframe.D1, ns(2024, 6, 28), ns(2024, 6, 30, 12), False),  # Friday's is in
        (STOCKS, Timeframe.D1, ns(2024, 6, 27), ns(2024, 6, 29, 12), True),  # Friday's is not
        (FOREX, Timeframe.M5, ns(2024, 6, 28, 20, 55), ns(2024, 6, 29, 15), False),  # Saturday
        (FOREX, Timeframe.M5, ns(2024, 6, 28, 20, 55), ns(2024, 6, 30, 21, 10), True),  # Sun 17:10
    ],
)  # fmt: skip
def test_the_gap_filler_acts_only_when_a_bar_completed(
    calendar: object, timeframe: Timeframe, last: int, now: int, due: bool
) -> None:
    assert traded_since(calendar, timeframe, last, now) is due  # type: ignore[arg-type]


def test_an_unmapped_exchange_takes_its_types_calendar() -> None:
    assert market_calendar(InstrumentType.STK, "PINK").name == STOCKS.name
