"""Gap planning: what is missing, nothing stored, answered or closed; ranges for each load mode."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ktrdr_data_store.calendar import DAY_NS, calendar_for
from ktrdr_data_store.gaps import is_small_bar, plan_missing_segments, resolve_range
from ktrdr_shared.types import InstrumentType, LoadMode, Timeframe, to_unix_nanos

pytestmark = pytest.mark.unit

NS = 1_000_000_000
MINUTE = 60 * NS
HOUR = 60 * MINUTE
M1, M5, M15, H1, H4, D1, W1 = (
    Timeframe.M1,
    Timeframe.M5,
    Timeframe.M15,
    Timeframe.H1,
    Timeframe.H4,
    Timeframe.D1,
    Timeframe.W1,
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Return ns since the epoch of a UTC wall-clock time."""
    return to_unix_nanos(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC))


def every(step: int, start: int, end: int) -> list[int]:
    """Return the stamps ``start, start + step, ...`` before ``end``."""
    return list(range(start, end, step))


def plan(timeframe: Timeframe, start: int, end: int, **kw: object) -> list[tuple[int, int]]:
    """Plan with no stored bars, no answered ranges and UTC unless told."""
    args: dict[str, object] = {"stored_ts": [], "answered": [], "sessions": [(start, end)]}
    args.update(kw)
    return plan_missing_segments(timeframe=timeframe, start_ns=start, end_ns=end, **args)  # type: ignore[arg-type]


# --- Table cases ------------------------------------------------------------------------------

DAY1 = (utc(2024, 7, 1, 13, 30), utc(2024, 7, 1, 20))  # 09:30-16:00 New York, regular hours
DAY2 = (utc(2024, 7, 2, 13, 30), utc(2024, 7, 2, 20))


def test_an_empty_store_misses_the_whole_open_range() -> None:
    assert plan(M1, *DAY1) == [DAY1]
    assert plan(M1, DAY1[0], DAY1[0]) == []


def test_tail_after_the_last_stored_bar() -> None:
    stored = every(HOUR, utc(2024, 7, 1, 14), utc(2024, 7, 1, 17))  # 10:00 .. 12:00 bars
    got = plan(H1, utc(2024, 7, 1, 16), DAY1[1], stored_ts=stored, sessions=[DAY1])
    assert got == [(utc(2024, 7, 1, 17), DAY1[1])]


def test_a_missing_short_bar_at_an_off_grid_open_is_a_gap() -> None:
    # Hourly bars open at 09:30 (a half-hour bar), 10:00, 11:00 ... The 09:30 bar fills only up
    # to 10:00, so losing the 10:00 bar is seen, and so is losing the 09:30 bar alone.
    hourly = [DAY1[0], *every(HOUR, utc(2024, 7, 1, 14), DAY1[1])]
    without_ten = [t for t in hourly if t != utc(2024, 7, 1, 14)]
    got = plan(H1, *DAY1, stored_ts=without_ten, sessions=[DAY1])
    assert got == [(utc(2024, 7, 1, 14), utc(2024, 7, 1, 15))]
    assert plan(H1, *DAY1, stored_ts=hourly[1:], sessions=[DAY1]) == [(DAY1[0], hourly[1])]


def test_less_than_a_bar_at_the_range_edges_is_not_a_gap() -> None:
    hourly = [DAY1[0], *every(HOUR, utc(2024, 7, 1, 14), DAY1[1])]
    # 10:15-10:45 holds no hourly bar's open; 10:15-11:30 holds the 11:00 bar's.
    assert plan(H1, utc(2024, 7, 1, 14, 15), utc(2024, 7, 1, 14, 45), sessions=[DAY1]) == []
    got = plan(H1, utc(2024, 7, 1, 14, 15), utc(2024, 7, 1, 15, 30), sessions=[DAY1])
    assert got == [(utc(2024, 7, 1, 15), utc(2024, 7, 1, 15, 30))]
    assert plan(H1, *DAY1, stored_ts=hourly, sessions=[DAY1]) == []


def test_answered_ranges_are_not_asked_again() -> None:
    answered = [(utc(2024, 7, 1, 15), utc(2024, 7, 1, 17))]
    got = plan(M5, *DAY1, answered=answered, sessions=[DAY1])
    assert got == [(DAY1[0], answered[0][0]), (answered[0][1], DAY1[1])]


def test_segments_separated_only_by_closed_time_are_joined() -> None:
    stored = every(MINUTE, DAY1[0], utc(2024, 7, 1, 19)) + every(MINUTE, DAY2[0] + HOUR, DAY2[1])
    got = plan(M1, DAY1[0], DAY2[1], stored_ts=stored, sessions=[DAY1, DAY2])
    assert got == [(utc(2024, 7, 1, 19), DAY2[0] + HOUR)]  # one request over the night


@pytest.mark.parametrize("timeframe", [Timeframe.S1, Timeframe.S5, Timeframe.S15, Timeframe.S30])
def test_small_bars_are_not_joined_across_closed_time(timeframe: Timeframe) -> None:
    # their requests cover hours: one over the night would come back "no data"
    stored = every(MINUTE, DAY1[0], utc(2024, 7, 1, 19)) + every(MINUTE, DAY2[0] + HOUR, DAY2[1])
    stored = [t + k * timeframe.nanos for t in stored for k in range(MINUTE // timeframe.nanos)]
    got = plan(timeframe, DAY1[0], DAY2[1], stored_ts=stored, sessions=[DAY1, DAY2])
    assert got == [(utc(2024, 7, 1, 19), DAY1[1]), (DAY2[0], DAY2[0] + HOUR)]
    assert is_small_bar(timeframe) and not is_small_bar(M1)


def test_small_bars_keep_abutting_sessions_in_one_segment() -> None:
    calendar = calendar_for(InstrumentType.CASH)
    start, end = utc(2024, 3, 6), utc(2024, 3, 12)
    got = plan_missing_segments(
        timeframe=Timeframe.S5,
        start_ns=start,
        end_ns=end,
        stored_ts=[],
        answered=[],
        sessions=calendar.sessions(start, end),
        zone=calendar.zone,
    )
    assert got == [(start, utc(2024, 3, 8, 22)), (utc(2024, 3, 10, 21), end)]  # the weekend


def test_segments_are_not_joined_across_a_stored_bar_or_an_answered_range() -> None:
    night_bar = [utc(2024, 7, 2, 3)]  # a bar stamped in closed time still splits the request
    got = plan(M1, DAY1[0], DAY2[1], stored_ts=night_bar, sessions=[DAY1, DAY2])
    assert got == [DAY1, DAY2]
    answered = [(utc(2024, 7, 1, 22), utc(2024, 7, 1, 23))]
    assert plan(M1, DAY1[0], DAY2[1], answered=answered, sessions=[DAY1, DAY2]) == [DAY1, DAY2]


def test_a_segment_may_span_a_forex_weekend() -> None:
    calendar = calendar_for(InstrumentType.CASH)
    start, end = utc(2024, 3, 8), utc(2024, 3, 12)
    stored = every(MINUTE, start, utc(2024, 3, 8, 21)) + every(MINUTE, utc(2024, 3, 11), end)
    got = plan_missing_segments(
        timeframe=M1,
        start_ns=start,
        end_ns=end,
        stored_ts=stored,
        answered=[],
        sessions=calendar.sessions(start, end),
        zone=calendar.zone,
    )
    assert got == [(utc(2024, 3, 8, 21), utc(2024, 3, 11))]  # Fri 16:00 EST to Sun 20:00 EDT


def test_four_hour_bars_follow_new_york_time_across_the_dst_switch() -> None:
    calendar = calendar_for(InstrumentType.STK)
    start, end = utc(2024, 3, 4), utc(2024, 3, 16)
    sessions = calendar.sessions(start, end)
    # 04:00, 08:00, 12:00 and 16:00 New York: 09/13/17/21 UTC in EST, 08/12/16/20 in EDT.
    stored = [o + k * 4 * HOUR for o, _ in sessions for k in range(4)]
    assert stored[:2] == [utc(2024, 3, 4, 9), utc(2024, 3, 4, 13)]
    assert utc(2024, 3, 11, 8) in stored
    args = {
        "timeframe": H4,
        "start_ns": start,
        "end_ns": end,
        "answered": [],
        "sessions": sessions,
        "zone": calendar.zone,
    }
    assert plan_missing_segments(stored_ts=stored, **args) == []  # type: ignore[arg-type]
    lost = utc(2024, 3, 11, 12)
    missing = plan_missing_segments(stored_ts=[t for t in stored if t != lost], **args)  # type: ignore[arg-type]
    assert missing == [(lost, lost + 4 * HOUR)]


def test_daily_bars_join_across_a_holiday() -> None:
    calendar = calendar_for(InstrumentType.STK)
    start, end = utc(2024, 7, 1), utc(2024, 7, 9)
    windows = calendar.bar_windows(D1, start, end)
    stored = [utc(2024, 7, 1), utc(2024, 7, 2), utc(2024, 7, 8)]
    got = plan(D1, start, end, stored_ts=stored, sessions=windows)
    assert got == [(utc(2024, 7, 3), utc(2024, 7, 6))]  # July 3 and 5, July 4 closed between


def test_weekly_bars_are_missing_by_week() -> None:
    calendar = calendar_for(InstrumentType.STK)
    start, end = utc(2024, 8, 26), utc(2024, 9, 16)
    windows = calendar.bar_windows(W1, start, end)
    got = plan(W1, start, end, stored_ts=[utc(2024, 8, 26), utc(2024, 9, 9)], sessions=windows)
    assert got == [(utc(2024, 9, 3), utc(2024, 9, 4))]  # the week opening on Tuesday 3rd


def test_unsorted_duplicate_stamps_are_accepted() -> None:
    stored = [utc(2024, 7, 1, 15), utc(2024, 7, 1, 14), utc(2024, 7, 1, 14)]
    got = plan(H1, utc(2024, 7, 1, 14), utc(2024, 7, 1, 17), stored_ts=stored)
    assert got == [(utc(2024, 7, 1, 16), utc(2024, 7, 1, 17))]


def test_a_year_of_minute_bars_is_planned_exactly() -> None:
    calendar = calendar_for(InstrumentType.STK)
    start, end = utc(2023, 1, 1), utc(2024, 1, 1)
    sessions = calendar.sessions(start, end)
    stored = np.concatenate([np.arange(o, c, MINUTE) for o, c in sessions])
    args = {
        "timeframe": M1,
        "start_ns": start,
        "end_ns": end,
        "answered": [],
        "sessions": sessions,
        "zone": calendar.zone,
    }
    assert len(stored) > 200_000
    assert plan_missing_segments(stored_ts=stored, **args) == []  # type: ignore[arg-type]
    holes = stored[[1_000, 1_001, 150_000]]
    kept = np.setdiff1d(stored, holes)
    got = plan_missing_segments(stored_ts=kept, **args)  # type: ignore[arg-type]
    assert got == [(int(holes[0]), int(holes[1]) + MINUTE), (int(holes[2]), int(holes[2]) + MINUTE)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_ns": 10, "end_ns": 5}, "start_ns .* is after end_ns"),
        ({"answered": [(7, 3)]}, r"answered\[0\] .* ends before it starts"),
        ({"sessions": [(0, 10), (5, 20)]}, "overlap"),
    ],
)
def test_bad_input_is_refused_clearly(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "timeframe": M1,
        "start_ns": 0,
        "end_ns": 100 * MINUTE,
        "stored_ts": [],
        "answered": [],
        "sessions": [],
    }
    with pytest.raises(ValueError, match=message):
        plan_missing_segments(**(args | kwargs))  # type: ignore[arg-type]


# --- Property: against a brute-force model on a one-minute grid --------------------------------

BASE = utc(2024, 3, 9)  # spans the New York DST switch on 2024-03-10 07:00 UTC
SPAN_MIN = 4 * 1440


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    """Draw windows, stored stamps, answered ranges and a range, all on whole minutes."""
    zone = draw(st.sampled_from(["UTC", "America/New_York"]))
    windows, cursor = [], draw(st.integers(0, 300))
    for gap, length in draw(
        st.lists(st.tuples(st.integers(0, 400), st.integers(1, 900)), min_size=1, max_size=6)
    ):
        start = cursor + gap  # gap 0: windows abut, as forex sessions do
        if start + length > SPAN_MIN:
            break
        windows.append((start, start + length))
        cursor = start + length
    seed, fill = draw(st.integers(0, 2**32 - 1)), draw(st.sampled_from([0.0, 0.3, 0.8, 1.0]))
    strays = draw(st.lists(st.integers(0, SPAN_MIN - 1), max_size=3))
    answered = draw(st.lists(st.tuples(st.integers(0, SPAN_MIN), st.integers(0, 600)), max_size=3))
    reach = min(SPAN_MIN, cursor + 200)  # mostly over the windows, sometimes past them
    # Simple draws (which hypothesis favours) give a range from a window's open to the reach.
    lo = max(0, draw(st.sampled_from([o for o, _ in windows])) - draw(st.integers(0, 200)))
    hi = reach - draw(st.integers(0, reach - lo - 1))
    return {
        "zone": zone,
        "windows": windows,
        "seed": seed,
        "fill": fill,
        "strays": strays,
        "answered": [(a, a + n) for a, n in answered],
        "lo": lo,
        "hi": hi,
    }


class Model:
    """Which minutes are bar stamps, filled or answered: the rules, written out the slow way."""

    def __init__(self, timeframe: Timeframe, zone: str, windows: list[tuple[int, int]]) -> None:
        self.windows = windows
        self.step = (timeframe.nanos if timeframe.is_intraday else DAY_NS) // MINUTE
        clock = zoneinfo.ZoneInfo(zone if timeframe.is_intraday else "UTC")
        self.offsets = [self._offset(clock, o) for o, _ in windows]
        self.is_stamp = np.zeros(SPAN_MIN + 1, dtype=bool)
        for w, (o, c) in enumerate(windows):
            for m in range(o, c):
                self.is_stamp[m] = m == o or self.on_grid(m, w)

    @staticmethod
    def _offset(clock: zoneinfo.ZoneInfo, minute: int) -> int:
        moment = dt.datetime.fromtimestamp((BASE + minute * MINUTE) / NS, dt.UTC)
        offset = moment.astimezone(clock).utcoffset()
        assert offset is not None
        return int(offset.total_seconds()) // 60

    def on_grid(self, minute: int, window: int) -> bool:
        """Return whether a bar starts at ``minute`` on the clock of ``window`` (UTC if none)."""
        offset = self.offsets[window] if self.windows else 0
        return (BASE // MINUTE + minute + offset) % self.step == 0

    def slot_end(self, stamp: int) -> int:
        """Walk to the next grid point or window boundary after ``stamp``."""
        opened = [w for w, (o, _) in enumerate(self.windows) if o <= stamp]
        window = opened[-1] if opened else 0  # before the first window: that window's clock
        edges = {e for pair in self.windows for e in pair}
        m = stamp + 1
        while not (m in edges or self.on_grid(m, window)):
            m += 1
        return m

    def filled(self, stored: list[int], answered: list[tuple[int, int]]) -> np.ndarray:
        mask = np.zeros(SPAN_MIN + 2 * 1440, dtype=bool)
        for t in stored:
            mask[t : self.slot_end(t)] = True
        for a, b in answered:
            mask[a:b] = True
        return mask


@pytest.mark.parametrize("timeframe", [M1, M5, M15, H1, H4, D1])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=scenarios())
def test_plan_covers_every_missing_bar_and_nothing_stored_answered_or_closed(
    timeframe: Timeframe, case: dict[str, object]
) -> None:
    zone = case["zone"]
    windows, answered = case["windows"], case["answered"]
    lo, hi = case["lo"], case["hi"]
    assert isinstance(zone, str)
    assert isinstance(windows, list) and isinstance(answered, list)
    assert isinstance(lo, int) and isinstance(hi, int)
    model = Model(timeframe, zone, windows)
    rng = np.random.default_rng(case["seed"])  # type: ignore[arg-type]
    stamps = np.flatnonzero(model.is_stamp)
    stored = stamps[rng.random(len(stamps)) < case["fill"]].tolist() + case["strays"]  # type: ignore[operator]
    filled = model.filled(stored, answered)
    minutes = np.arange(SPAN_MIN + 1)
    missing = model.is_stamp & ~filled[: SPAN_MIN + 1] & (minutes >= lo) & (minutes < hi)

    got = plan_missing_segments(
        timeframe=timeframe,
        start_ns=BASE + lo * MINUTE,
        end_ns=BASE + hi * MINUTE,
        stored_ts=[BASE + t * MINUTE for t in stored],
        answered=[(BASE + a * MINUTE, BASE + b * MINUTE) for a, b in answered],
        sessions=[(BASE + o * MINUTE, BASE + c * MINUTE) for o, c in windows],
        zone=zone,
    )

    assert all((s - BASE) % MINUTE == 0 and (e - BASE) % MINUTE == 0 for s, e in got)
    segments = [((s - BASE) // MINUTE, (e - BASE) // MINUTE) for s, e in got]
    in_plan = np.zeros(SPAN_MIN + 1, dtype=bool)
    for s, e in segments:
        assert lo <= s < e <= hi
        assert model.is_stamp[s], "a segment starts where a bar can be stamped (open time)"
        assert not filled[s:e].any(), "a segment overlaps a stored bar or an answered range"
        assert missing[s:e].any(), "a segment holds at least one missing bar"
        in_plan[s:e] = True
    assert not (missing & ~in_plan).any(), "every missing bar is in some segment"
    for (_, e), (s, _) in itertools.pairwise(segments):
        assert e < s and filled[e:s].any(), "only a stored or answered range splits segments"


# --- The simulator's own bars: a full store plans nothing, every lost bar is found -------------

SIM_SIZES = {
    M1: "1 min",
    Timeframe.M30: "30 mins",
    H1: "1 hour",
    H4: "4 hours",
    D1: "1 day",
    W1: "1 week",
}
SIM_INSTRUMENTS = [
    ("AAPL", InstrumentType.STK),
    ("EUR", InstrumentType.CASH),
    ("ES", InstrumentType.FUT),
    ("SPX", InstrumentType.IND),
]


def sim_stamps(symbol: str, timeframe: Timeframe, start: int, end: int) -> np.ndarray:
    """Return the stamps the simulator serves in ``[start, end)``, as the connector stores them."""
    bars = pytest.importorskip("ktrdr_ib_sim.bars")
    catalogue = pytest.importorskip("ktrdr_ib_sim.catalogue")
    prices = pytest.importorskip("ktrdr_ib_sim.prices")
    sizes = pytest.importorskip("ktrdr_ib_sim.timeframes")
    instrument = {i.symbol: i for i in catalogue.build_catalogue(dt.date(2024, 6, 1))}[symbol]
    size = sizes.BAR_SIZES[SIM_SIZES[timeframe]]
    lo_s, hi_s = start // NS, end // NS
    if timeframe.is_intraday:
        sessions = bars.sessions_for(instrument, False)
        grouped = bars.intraday_bars(prices.PricePath(instrument, 1), sessions, size, lo_s, hi_s)
        return np.asarray(grouped.stamp, dtype=np.int64) * NS
    window = (lo_s - 10 * 86_400, hi_s + 86_400)  # daily bars are keyed by session open
    grouped = bars.period_bars(instrument, 1, False, size, window, 0)
    stamps = np.asarray(grouped.day, dtype=np.int64) * DAY_NS  # the connector's date stamps
    return stamps[(stamps >= start) & (stamps < end)]


@pytest.mark.parametrize(("symbol", "instrument"), SIM_INSTRUMENTS)
@pytest.mark.parametrize("timeframe", list(SIM_SIZES))
@pytest.mark.parametrize(
    "span", [(utc(2024, 3, 4), utc(2024, 3, 16)), (utc(2024, 6, 28), utc(2024, 7, 10))]
)
def test_plan_agrees_with_the_simulators_bars(
    symbol: str, instrument: InstrumentType, timeframe: Timeframe, span: tuple[int, int]
) -> None:
    start, end = span  # a DST switch; July 4 with its half day
    stamps = sim_stamps(symbol, timeframe, start, end)
    calendar = calendar_for(instrument)
    windows = calendar.bar_windows(timeframe, start, end)
    args = {
        "timeframe": timeframe,
        "start_ns": start,
        "end_ns": end,
        "answered": [],
        "sessions": windows,
        "zone": calendar.zone,
    }
    assert plan_missing_segments(stored_ts=stamps, **args) == []  # type: ignore[arg-type]
    lost = np.random.default_rng(7).random(len(stamps)) < 0.1
    lost[len(stamps) // 2] = True
    got = plan_missing_segments(stored_ts=stamps[~lost], **args)  # type: ignore[arg-type]
    starts, ends = np.array([s for s, _ in got]), np.array([e for _, e in got])
    where = np.searchsorted(starts, stamps, side="right") - 1
    planned = (where >= 0) & (stamps < ends[np.maximum(where, 0)])
    assert np.array_equal(planned, lost)


# --- resolve_range: the range each load mode covers ---------------------------------------------

NOW = dt.datetime(2024, 7, 10, 12, tzinfo=dt.UTC)
NOW_NS = to_unix_nanos(NOW)
HEAD = dt.datetime(2000, 1, 3, 9, tzinfo=dt.UTC)
LOOKBACK = dt.timedelta(days=30)


def resolve(mode: LoadMode, **kw: object) -> tuple[int, int]:
    args: dict[str, object] = {"now": NOW, "default_lookback": LOOKBACK}
    return resolve_range(mode, **(args | kw))  # type: ignore[arg-type]


def test_tail_runs_from_the_last_stored_bar_or_a_lookback_to_now() -> None:
    last = utc(2024, 7, 9, 15)
    assert resolve(LoadMode.TAIL, last_stored=last, first_stored=utc(2020, 1, 1)) == (last, NOW_NS)
    assert resolve(LoadMode.TAIL) == (NOW_NS - 30 * 24 * HOUR, NOW_NS)


def test_backfill_runs_from_the_head_to_the_first_stored_bar() -> None:
    first = utc(2023, 1, 3, 9)
    head_ns = to_unix_nanos(HEAD)
    assert resolve(LoadMode.BACKFILL, head_timestamp=HEAD, first_stored=first) == (head_ns, first)
    assert resolve(LoadMode.BACKFILL, head_timestamp=HEAD) == (head_ns, NOW_NS)  # empty store
    daily = resolve(LoadMode.BACKFILL, head_timestamp=HEAD, first_stored=first, timeframe=D1)
    assert daily == (utc(2000, 1, 3), first)  # the first daily bar is stamped 00:00 UTC


def test_full_runs_from_the_head_to_now() -> None:
    got = resolve(LoadMode.FULL, head_timestamp=HEAD, first_stored=utc(2023, 1, 3), last_stored=1)
    assert got == (to_unix_nanos(HEAD), NOW_NS)


def test_requested_start_and_end_override_the_mode() -> None:
    start, end = dt.datetime(2024, 1, 1, tzinfo=dt.UTC), dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    for mode in LoadMode:
        got = resolve(mode, requested_start=start, requested_end=end, last_stored=utc(2024, 7, 1))
        assert got == (utc(2024, 1, 1), utc(2024, 2, 1))
    assert resolve(LoadMode.TAIL, requested_start=utc(2024, 7, 1)) == (utc(2024, 7, 1), NOW_NS)


def test_a_store_already_past_the_range_gives_an_empty_range() -> None:
    got = resolve(LoadMode.BACKFILL, head_timestamp=HEAD, first_stored=to_unix_nanos(HEAD))
    assert got[0] == got[1]
    assert resolve(LoadMode.TAIL, requested_end=utc(2024, 1, 1), last_stored=utc(2024, 7, 1)) == (
        utc(2024, 7, 1),
        utc(2024, 7, 1),
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"requested_start": utc(2024, 2, 1), "requested_end": utc(2024, 1, 1)},
            "start 2024-02-01T00:00:00Z is not before end 2024-01-01",
        ),
        (
            {"requested_start": utc(2024, 1, 1), "requested_end": utc(2024, 1, 1)},
            "is not before end",
        ),
        ({"requested_start": dt.datetime(2024, 1, 1)}, "^start: naive datetime"),
        ({"requested_end": dt.datetime(2024, 1, 1)}, "^end: naive datetime"),
        ({"now": dt.datetime(2024, 7, 10)}, "^now: naive datetime"),
        ({"head_timestamp": dt.datetime(2024, 1, 1)}, "^head_timestamp: naive"),
        ({"requested_end": NOW + dt.timedelta(seconds=1)}, "^end .* is in the future"),
        ({"requested_start": NOW + dt.timedelta(days=1)}, "^start .* is in the future"),
        ({"default_lookback": dt.timedelta(0)}, "default_lookback"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve(LoadMode.FULL, **kwargs)


@pytest.mark.parametrize("mode", [LoadMode.BACKFILL, LoadMode.FULL])
def test_backfill_and_full_need_a_head_timestamp_or_a_start(mode: LoadMode) -> None:
    with pytest.raises(ValueError, match=r"head_timestamp is missing; ask ktrdr\.ib\."):
        resolve(mode, first_stored=utc(2024, 1, 1))
    assert resolve(mode, requested_start=utc(2024, 1, 1))[0] == utc(2024, 1, 1)
