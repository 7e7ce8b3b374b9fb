"""Fitting a load to the market: complete bars, calendar bounds, open time and IB's history
for small bars, the gap filler's test."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ktrdr_data_store.calendar import MarketCalendar, calendar_for
from ktrdr_data_store.planning import (
    assumed_notes,
    ib_history_start,
    load_range,
    market_calendar,
    plan_segments,
    traded_since,
)
from ktrdr_shared.messages import LoadData
from ktrdr_shared.types import InstrumentType, LoadMode, Timeframe, to_unix_nanos

pytestmark = pytest.mark.unit

STOCKS = calendar_for(InstrumentType.STK)
FOREX = calendar_for(InstrumentType.CASH)
HOUR = 3600 * 10**9


def ns(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return to_unix_nanos(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC))


def test_a_tail_load_ends_before_the_bar_still_forming() -> None:
    # Friday 2024-06-28 18:30 New York: extended hours run to 20:00, so the 18:00 bar is open
    now = ns(2024, 6, 28, 22, 30)
    command = LoadData(symbol="AAPL", timeframe=Timeframe.H1)
    span = load_range(
        command,
        now_ns=now,
        calendar=STOCKS,
        first_stored=ns(2024, 6, 3),
        last_stored=ns(2024, 6, 28, 20),
    )
    assert span == (ns(2024, 6, 28, 20), ns(2024, 6, 28, 22), ())


def test_an_empty_dataset_tails_back_by_the_default_lookback() -> None:
    command = LoadData(symbol="AAPL", timeframe=Timeframe.D1)
    now = ns(2024, 6, 29, 12)
    start, end, _ = load_range(
        command, now_ns=now, calendar=STOCKS, first_stored=None, last_stored=None
    )
    assert now - start == 5 * 365 * 24 * HOUR
    assert end == now  # Saturday: no session open, every daily bar so far is complete


def test_a_start_before_the_calendar_is_clamped_to_it() -> None:
    command = LoadData(
        symbol="AAPL",
        timeframe=Timeframe.D1,
        mode=LoadMode.FULL,
        start=dt.datetime(1970, 1, 5, tzinfo=dt.UTC),
    )
    start, _, _ = load_range(
        command, now_ns=ns(2024, 6, 29), calendar=STOCKS, first_stored=None, last_stored=None
    )
    assert start == STOCKS.first_ns


def test_a_future_end_is_refused_by_name() -> None:
    command = LoadData(
        symbol="AAPL", timeframe=Timeframe.H1, end=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    )
    with pytest.raises(ValueError, match=r"end .* is in the future"):
        load_range(
            command, now_ns=ns(2024, 6, 29), calendar=STOCKS, first_stored=None, last_stored=None
        )


def test_plan_counts_what_was_stored_inside_the_span() -> None:
    stored = np.array([ns(2024, 6, 27, 20), ns(2024, 6, 28, 8), ns(2024, 6, 28, 9)])
    plan = plan_segments(
        Timeframe.H1,
        (ns(2024, 6, 28, 8), ns(2024, 6, 28, 12)),
        calendar=STOCKS,
        stored_ts=stored,
        answered=[],
    )
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


# --- Bars of 30 s or less: open time only, and no further back than IB keeps them -----------

SECOND = 10**9
ES = calendar_for(InstrumentType.FUT)
NASDAQ = calendar_for(InstrumentType.STK, "NASDAQ")
REGULAR = calendar_for(InstrumentType.STK, use_rth=True)
NOTHING_STORED = np.zeros(0, dtype=np.int64)
SMALL = [Timeframe.S1, Timeframe.S5, Timeframe.S15, Timeframe.S30]
#: Seconds per request, as the connector cuts them (ktrdr_ib_connector.chunking.CHUNK_RULES).
REQUEST_S = {Timeframe.S1: 1_800, Timeframe.S5: 3_600, Timeframe.S15: 14_400, Timeframe.S30: 28_800}


def requests(timeframe: Timeframe, segments: list[tuple[int, int]]) -> int:
    """Return how many requests the connector cuts from ``segments``."""
    step = REQUEST_S[timeframe] * SECOND
    return sum(-(-(end - start) // step) for start, end in segments)


def test_a_two_day_one_second_load_asks_only_for_extended_hours() -> None:
    command = LoadData(
        symbol="AAPL",
        timeframe=Timeframe.S1,
        start=dt.datetime(2024, 6, 26, tzinfo=dt.UTC),
        end=dt.datetime(2024, 6, 28, tzinfo=dt.UTC),
    )
    span = load_range(
        command, now_ns=ns(2024, 6, 29, 12), calendar=STOCKS, first_stored=None, last_stored=None
    )
    plan = plan_segments(Timeframe.S1, span, calendar=STOCKS, stored_ts=NOTHING_STORED, answered=[])
    # 04:00-20:00 New York each day; the night between used to be joined: 80 requests, 16 empty
    assert plan.segments == [
        (ns(2024, 6, 26, 8), ns(2024, 6, 27)),
        (ns(2024, 6, 27, 8), ns(2024, 6, 28)),
    ]
    assert requests(Timeframe.S1, plan.segments) == 64
    assert plan.notes == []


@pytest.mark.parametrize(
    ("calendar", "timeframe", "span", "segments"),
    [
        # forex closes Friday 17:00 and opens Sunday 17:00 New York
        (FOREX, Timeframe.S5, (ns(2024, 6, 28, 12), ns(2024, 7, 1, 12)),
         [(ns(2024, 6, 28, 12), ns(2024, 6, 28, 21)), (ns(2024, 6, 30, 21), ns(2024, 7, 1, 12))]),
        # forex weekdays abut: Tuesday to Thursday is one stretch of open time
        (FOREX, Timeframe.S1, (ns(2024, 7, 9), ns(2024, 7, 11)),
         [(ns(2024, 7, 9), ns(2024, 7, 11))]),
        # ES halts 16:00-17:00 Chicago every day
        (ES, Timeframe.S15, (ns(2024, 6, 27, 18), ns(2024, 6, 28, 2)),
         [(ns(2024, 6, 27, 18), ns(2024, 6, 27, 21)), (ns(2024, 6, 27, 22), ns(2024, 6, 28, 2))]),
        # ... and from 12:00 on July 4th
        (ES, Timeframe.S30, (ns(2024, 7, 4, 12), ns(2024, 7, 5)),
         [(ns(2024, 7, 4, 12), ns(2024, 7, 4, 17)), (ns(2024, 7, 4, 22), ns(2024, 7, 5))]),
        # the July 3rd half day ends 17:00 New York, July 4th is a holiday
        (STOCKS, Timeframe.S1, (ns(2024, 7, 3, 12), ns(2024, 7, 5, 12)),
         [(ns(2024, 7, 3, 12), ns(2024, 7, 3, 21)), (ns(2024, 7, 5, 8), ns(2024, 7, 5, 12))]),
        (NASDAQ, Timeframe.S5, (ns(2024, 6, 28, 20), ns(2024, 7, 1, 9)),
         [(ns(2024, 6, 28, 20), ns(2024, 6, 29)), (ns(2024, 7, 1, 8), ns(2024, 7, 1, 9))]),
        (REGULAR, Timeframe.S30, (ns(2024, 6, 27, 12), ns(2024, 6, 28, 16)),
         [(ns(2024, 6, 27, 13, 30), ns(2024, 6, 27, 20)),
          (ns(2024, 6, 28, 13, 30), ns(2024, 6, 28, 16))]),
        # bigger bars keep one request over closed time: a week of minutes is one request
        (STOCKS, Timeframe.M1, (ns(2024, 6, 28, 12), ns(2024, 7, 1, 16)),
         [(ns(2024, 6, 28, 12), ns(2024, 7, 1, 16))]),
        (FOREX, Timeframe.M1, (ns(2024, 6, 28, 12), ns(2024, 7, 1, 12)),
         [(ns(2024, 6, 28, 12), ns(2024, 7, 1, 12))]),
        (ES, Timeframe.H1, (ns(2024, 6, 27, 18), ns(2024, 6, 28, 2)),
         [(ns(2024, 6, 27, 18), ns(2024, 6, 28, 2))]),
    ],
)  # fmt: skip
def test_small_bars_are_planned_per_stretch_of_open_time(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    span: tuple[int, int],
    segments: list[tuple[int, int]],
) -> None:
    plan = plan_segments(timeframe, span, calendar=calendar, stored_ts=NOTHING_STORED, answered=[])
    assert plan.segments == segments


CALENDARS = [
    STOCKS,
    NASDAQ,
    REGULAR,
    ES,
    calendar_for(InstrumentType.FUT, use_rth=True),
    FOREX,
    calendar_for(InstrumentType.IND),
]
# Mondays before the March and November DST switches and before the July 4th week
WEEKS = [ns(2024, 3, 4), ns(2024, 6, 24), ns(2024, 10, 28)]
HALF_MINUTES = st.integers(0, 3 * 2_880 - 1)  # up to three days, in the 30 s all bars align to


@dataclass(frozen=True)
class SmallBarLoad:
    """A drawn load: its market, bar, span, and the stored stamps and answered ranges in it."""

    calendar: MarketCalendar
    timeframe: Timeframe
    span: tuple[int, int]
    stored: np.ndarray
    answered: list[tuple[int, int]]


@st.composite
def small_bar_loads(draw: st.DrawFn) -> SmallBarLoad:
    """Draw a calendar, a small bar, a span and stored and answered runs inside it."""
    timeframe = draw(st.sampled_from(SMALL))
    start = draw(st.sampled_from(WEEKS)) + draw(st.integers(0, 14 * 2_880)) * 30 * SECOND
    end = start + (draw(HALF_MINUTES) + 1) * 30 * SECOND
    runs = draw(st.lists(st.tuples(HALF_MINUTES, st.integers(1, 1_000)), max_size=4))
    answered = draw(st.lists(st.tuples(HALF_MINUTES, st.integers(1, 1_000)), max_size=2))

    def inside(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
        return [(start + a * 30 * SECOND, start + (a + n) * 30 * SECOND) for a, n in pairs]

    stored = [np.arange(a, b, timeframe.nanos) for a, b in inside(runs)]
    return SmallBarLoad(
        calendar=draw(st.sampled_from(CALENDARS)),
        timeframe=timeframe,
        span=(start, end),
        stored=np.concatenate([NOTHING_STORED, *stored]),
        answered=inside(answered),
    )


def seconds_in(ranges: list[tuple[int, int]], span: tuple[int, int]) -> np.ndarray:
    """Return a mask over the seconds of ``span``: True where some range holds the second."""
    mask = np.zeros((span[1] - span[0]) // SECOND, dtype=bool)
    for a, b in ranges:
        mask[max(0, (a - span[0]) // SECOND) : max(0, (b - span[0]) // SECOND)] = True
    return mask


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(load=small_bar_loads())
def test_small_bar_segments_are_exactly_the_missing_open_time(load: SmallBarLoad) -> None:
    span, step = load.span, load.timeframe.nanos
    plan = plan_segments(
        load.timeframe, span, calendar=load.calendar, stored_ts=load.stored, answered=load.answered
    )

    open_time = seconds_in(load.calendar.sessions(*span), span)
    slots = [(int(t), int(t) + step) for t in load.stored]  # bars align to the sessions
    missing = open_time & ~seconds_in(slots + load.answered, span)
    for start, end in plan.segments:
        assert span[0] <= start < end <= span[1]
        assert open_time[(start - span[0]) // SECOND : (end - span[0]) // SECOND].all(), (
            "a segment lies in one stretch of open time"
        )
    assert np.array_equal(seconds_in(plan.segments, span), missing), (
        "the segments are the open time of the span less what is stored or answered"
    )
    assert all(e < s for (_, e), (s, _) in itertools.pairwise(plan.segments))


# IB's clock at 2024-06-29 00:00: 180 days back is 2024-01-01 00:00 (a leap year)
IB_NOW = ns(2024, 6, 29)
LIMIT_NOTE = (
    "{} bars before 2024-01-01T00:00:00Z are older than IB's six-month limit for bars "
    "of 30 s or less and were not requested"
)


@pytest.mark.parametrize(
    ("timeframe", "mode", "head", "last_stored", "span", "noted"),
    [
        (Timeframe.S1, LoadMode.TAIL, None, None, (ns(2024, 1, 1), ns(2024, 1, 3)), True),
        (Timeframe.S30, LoadMode.TAIL, None, None, (ns(2024, 1, 1), ns(2024, 1, 3)), True),
        (Timeframe.M1, LoadMode.TAIL, None, None, (ns(2023, 12, 29), ns(2024, 1, 3)), False),
    ],
)  # fmt: skip
def test_small_bars_older_than_six_months_are_not_requested_and_the_plan_says_so(
    timeframe: Timeframe,
    mode: LoadMode,
    head: int | None,
    last_stored: int | None,
    span: tuple[int, int],
    noted: bool,
) -> None:
    command = LoadData(
        symbol="AAPL",
        timeframe=timeframe,
        mode=mode,
        start=dt.datetime(2023, 12, 29, tzinfo=dt.UTC),
        end=dt.datetime(2024, 1, 3, tzinfo=dt.UTC),
    )
    fitted = load_range(
        command,
        now_ns=IB_NOW,
        calendar=STOCKS,
        first_stored=None,
        last_stored=last_stored,
        head_ns=head,
    )
    plan = plan_segments(timeframe, fitted, calendar=STOCKS, stored_ts=NOTHING_STORED, answered=[])
    assert (plan.start_ns, plan.end_ns) == span
    assert plan.notes == ([LIMIT_NOTE.format(timeframe)] if noted else [])
    assert plan.segments[0][0] >= span[0]


@pytest.mark.parametrize(
    ("mode", "last_stored", "head"),
    [(LoadMode.TAIL, ns(2023, 10, 2), None), (LoadMode.FULL, None, ns(2015, 3, 2))],
)
def test_a_tail_or_full_load_reaching_past_six_months_starts_at_the_limit(
    mode: LoadMode, last_stored: int | None, head: int | None
) -> None:
    command = LoadData(symbol="AAPL", timeframe=Timeframe.S5, mode=mode)
    fitted = load_range(
        command,
        now_ns=IB_NOW,
        calendar=STOCKS,
        first_stored=last_stored,
        last_stored=last_stored,
        head_ns=head,
    )
    assert fitted == (ns(2024, 1, 1), IB_NOW, (LIMIT_NOTE.format("5s"),))


def test_a_load_wholly_older_than_six_months_plans_nothing_and_says_so() -> None:
    command = LoadData(
        symbol="AAPL",
        timeframe=Timeframe.S1,
        start=dt.datetime(2023, 10, 2, tzinfo=dt.UTC),
        end=dt.datetime(2023, 10, 4, tzinfo=dt.UTC),
    )
    fitted = load_range(
        command, now_ns=IB_NOW, calendar=STOCKS, first_stored=None, last_stored=None
    )
    plan = plan_segments(
        Timeframe.S1, fitted, calendar=STOCKS, stored_ts=NOTHING_STORED, answered=[]
    )
    assert plan.segments == []
    assert plan.start_ns == plan.end_ns == ns(2023, 10, 4)
    assert plan.notes == [
        "1s bars from 2023-10-02T00:00:00Z to 2023-10-04T00:00:00Z are all older than IB's "
        "six-month limit for bars of 30 s or less (it keeps them from 2024-01-01T00:00:00Z); "
        "nothing was requested"
    ]


def test_the_limit_follows_ibs_clock_to_the_next_whole_second() -> None:
    assert ib_history_start(Timeframe.S15, IB_NOW + 250_000_000) == ns(2024, 1, 1) + SECOND
    assert ib_history_start(Timeframe.M1, IB_NOW) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    market=st.sampled_from(CALENDARS),
    timeframe=st.sampled_from([*SMALL, Timeframe.M1, Timeframe.H1]),
    bars_back=st.integers(0, 10**6),
    minutes_later=st.integers(0, 200 * 1_440),
)
def test_the_gap_filler_is_due_exactly_when_a_tail_load_would_fetch(
    market: MarketCalendar, timeframe: Timeframe, bars_back: int, minutes_later: int
) -> None:
    now = IB_NOW + minutes_later * 60 * SECOND - 100 * 1_440 * 60 * SECOND
    last = now - bars_back * timeframe.nanos - (now % timeframe.nanos)
    fitted = load_range(
        LoadData(symbol="X", timeframe=timeframe),
        now_ns=now,
        calendar=market,
        first_stored=last,
        last_stored=last,
    )
    plan = plan_segments(
        timeframe, fitted, calendar=market, stored_ts=np.array([last]), answered=[]
    )
    assert traded_since(market, timeframe, last, now) is bool(plan.segments)


# ---------------------------------------------------------------- what a load assumed

EXTENDED_STK = (
    "use_rth not set: 1h bars include extended hours (pre- and post-market); set "
    "use_rth (ktrdr data load --rth) for regular trading hours only"
)
EXTENDED_FUT = (
    "use_rth not set: 1h bars include extended hours (the sessions outside regular "
    "trading hours); set use_rth (ktrdr data load --rth) for regular trading hours "
    "only"
)


@dataclass(frozen=True)
class Assumed:
    command: LoadData
    kind: InstrumentType
    notes: list[str]
    rows: int = 0
    first: int | None = None
    last: int | None = None
    start: int = ns(2024, 1, 2)


def load(**fields: object) -> LoadData:
    return LoadData(**{"symbol": "AAPL", "timeframe": Timeframe.H1, **fields})  # type: ignore[arg-type]


GIVEN = {"start": dt.datetime(2024, 6, 3, tzinfo=dt.UTC)}
ASSUMED = {
    "a tail of an empty dataset: where it starts, and why": Assumed(
        load(use_rth=True), InstrumentType.STK,
        ["no start given: loading from 2024-01-02T00:00:00Z (a tail load of an empty dataset "
         "reaches back 180 days for 1h bars; give a start to reach further, or use mode full for "
         "all IB has)"]),
    "a tail of a stored dataset: what is stored, and that it starts at the last bar": Assumed(
        load(use_rth=True), InstrumentType.STK,
        ["no start given: this tail load starts at the last stored bar, 2024-06-28T19:00:00Z "
         "(AAPL 1h holds 1,979 bars from 2024-01-02T00:00:00Z)"],
        rows=1979, first=ns(2024, 1, 2), last=ns(2024, 6, 28, 19), start=ns(2024, 6, 28, 19)),
    "a full load: IB's earliest bar": Assumed(
        load(mode=LoadMode.FULL, use_rth=True), InstrumentType.STK,
        ["no start given: loading from 1980-12-12T00:00:00Z, IB's earliest bar (mode full loads "
         "all IB has)"], start=ns(1980, 12, 12)),
    "a backfill: IB's earliest bar up to the first stored one": Assumed(
        load(mode=LoadMode.BACKFILL, use_rth=True), InstrumentType.STK,
        ["no start given: loading from 1980-12-12T00:00:00Z, IB's earliest bar, up to the first "
         "stored bar, 2024-01-02T00:00:00Z (mode backfill loads what IB has before it)"],
        rows=10, first=ns(2024, 1, 2), last=ns(2024, 1, 3), start=ns(1980, 12, 12)),
    "a stock's extended hours": Assumed(load(**GIVEN), InstrumentType.STK, [EXTENDED_STK]),
    "a future's sessions outside regular hours": Assumed(
        load(symbol="ES", **GIVEN), InstrumentType.FUT, [EXTENDED_FUT]),
    "both": Assumed(load(), InstrumentType.STK, [
        "no start given: loading from 2024-01-02T00:00:00Z (a tail load of an empty dataset "
        "reaches back 180 days for 1h bars; give a start to reach further, or use mode full for "
        "all IB has)", EXTENDED_STK]),
    "nothing assumed with a start and regular hours": Assumed(
        load(use_rth=True, **GIVEN), InstrumentType.STK, []),
    "forex has no extended hours": Assumed(load(symbol="EURUSD", **GIVEN), InstrumentType.CASH, []),
    "an index has no extended hours": Assumed(load(symbol="SPX", **GIVEN), InstrumentType.IND, []),
    "daily bars are not changed by extended hours": Assumed(
        load(timeframe=Timeframe.D1, **GIVEN), InstrumentType.STK, []),
    "the lookback in hours, for 1s bars": Assumed(
        load(timeframe=Timeframe.S1, use_rth=True), InstrumentType.STK,
        ["no start given: loading from 2024-01-02T00:00:00Z (a tail load of an empty dataset "
         "reaches back 6 hours for 1s bars; give a start to reach further, or use mode full for "
         "all IB has)"]),
    "the lookback in years, for daily bars": Assumed(
        load(timeframe=Timeframe.D1), InstrumentType.STK,
        ["no start given: loading from 2024-01-02T00:00:00Z (a tail load of an empty dataset "
         "reaches back 5 years for 1d bars; give a start to reach further, or use mode full for "
         "all IB has)"]),
}  # fmt: skip


@pytest.mark.parametrize("case", ASSUMED.values(), ids=list(ASSUMED))
def test_a_plan_says_what_the_load_assumed(case: Assumed) -> None:
    notes = assumed_notes(
        case.command,
        start_ns=case.start,
        instrument_type=case.kind,
        stored_rows=case.rows,
        first_stored=case.first,
        last_stored=case.last,
    )
    assert notes == case.notes
