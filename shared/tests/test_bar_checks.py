"""Bar validation: everything the simulator serves passes; every known corruption is caught."""

from __future__ import annotations

import datetime as dt
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_shared.bar_checks import (
    BarProblem,
    BatchHeader,
    _all_good,
    _all_good_many,
    _first_problem,
    batch_arrays,
    check_arrays,
    check_batch,
    check_many,
)
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.types import Timeframe, WhatToShow, to_unix_nanos

pytestmark = pytest.mark.unit

S = 10**9
DAY = 86_400 * S
T0 = 1_704_205_800 * S  # 2024-01-02 14:30 UTC
D0 = 1_704_153_600 * S  # 2024-01-02 00:00 UTC
NOW = 1_735_689_600 * S  # 2025-01-01 00:00 UTC

IB_BAR_SIZE = {
    Timeframe.S1: "1 secs", Timeframe.S5: "5 secs", Timeframe.S15: "15 secs",
    Timeframe.S30: "30 secs", Timeframe.M1: "1 min", Timeframe.M5: "5 mins",
    Timeframe.M15: "15 mins", Timeframe.M30: "30 mins", Timeframe.H1: "1 hour",
    Timeframe.H4: "4 hours", Timeframe.D1: "1 day", Timeframe.W1: "1W",
}  # fmt: skip


def good(
    n: int = 5,
    *,
    tf: Timeframe = Timeframe.M1,
    what: WhatToShow = WhatToShow.TRADES,
    start: int = T0,
) -> BarBatch:
    step = tf.nanos if tf.is_intraday else DAY
    prices = [100.0 + i for i in range(n)]
    return BarBatch(
        symbol="AAPL",
        timeframe=tf,
        what_to_show=what,
        start=start,
        end=start + (n + 2) * step,
        ts=[start + i * step for i in range(n)],
        open=prices,
        high=[p + 1 for p in prices],
        low=[p - 1 for p in prices],
        close=[p + 0.5 for p in prices],
        volume=[10.0] * n,
        wap=prices,
        count=[3] * n,
    )


def with_column(b: BarBatch, name: str, index: int, value: object, **more: object) -> BarBatch:
    column = list(getattr(b, name))
    column[index] = value
    return msgspec.structs.replace(b, **{name: column}, **more)


def test_a_good_batch_passes() -> None:
    assert check_batch(good(), subject="ktrdr.bars.AAPL.1m", now_ns=NOW) is None


def test_negative_prices_pass() -> None:  # CL settled at -37.63 on 2020-04-20
    b = msgspec.structs.replace(
        good(1), open=[-10.0], high=[-5.0], low=[-40.0], close=[-37.63], wap=[-20.0]
    )
    assert check_batch(b) is None


CORRUPTIONS: list[tuple[str, BarBatch, str, int | None, str | None]] = [
    ("inf high", with_column(good(), "high", 2, math.inf), "non_finite", 2, "high"),
    ("nan close", with_column(good(), "close", 1, math.nan), "non_finite", 1, "close"),
    ("-inf low", with_column(good(), "low", 0, -math.inf), "non_finite", 0, "low"),
    ("nan wap", with_column(good(), "wap", 3, math.nan), "non_finite", 3, "wap"),
    ("inf volume", with_column(good(), "volume", 4, math.inf), "non_finite", 4, "volume"),
    ("negative volume", with_column(good(), "volume", 1, -1.0), "negative", 1, "volume"),
    ("negative count", with_column(good(), "count", 2, -1), "negative", 2, "count"),
    ("high below low", msgspec.structs.replace(good(1), open=[1.0], high=[1.0], low=[1000.0],
                                               close=[1.0]), "ohlc_order", 0, "low"),
    ("close above high", with_column(good(), "close", 3, 500.0), "ohlc_order", 3, "high"),
    ("open below low", with_column(good(), "open", 1, 1.0), "ohlc_order", 1, "low"),
    ("stamp in 2200", with_column(good(), "ts", 2, 7_258_118_400 * S,
                                  end=7_258_118_400 * S + DAY), "future", 2, "ts"),
    ("stamp in 1970", with_column(good(start=0), "ts", 0, 5 * 60 * S), "too_early", 0, "ts"),
    ("stamp outside window", with_column(good(), "ts", 4, T0 + 50 * 60 * S),
     "outside_window", 4, "ts"),
    ("duplicate stamp", with_column(good(), "ts", 3, T0 + 60 * S), "duplicate_ts", 3, "ts"),
    ("fractional daily", with_column(good(tf=Timeframe.D1, start=D0), "ts", 1, D0 + DAY + S // 2),
     "off_grid", 1, "ts"),
    ("daily at session open", with_column(good(tf=Timeframe.D1, start=D0), "ts", 0,
                                          D0 + 14 * 3600 * S + 30 * 60 * S), "off_grid", 0, "ts"),
    ("minute off grid", with_column(good(), "ts", 1, T0 + 61 * S), "off_grid", 1, "ts"),
    ("hour at :15", with_column(good(tf=Timeframe.H1, start=T0 - 30 * 60 * S), "ts", 1,
                                T0 + 45 * 60 * S), "off_grid", 1, "ts"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "batch", "check", "index", "field"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS]
)
def test_each_corruption_is_caught_by_its_check(
    case: str, batch: BarBatch, check: str, index: int | None, field: str | None
) -> None:
    problem = check_batch(batch, now_ns=NOW)
    assert problem is not None, case
    assert (problem.check, problem.index, problem.field) == (check, index, field)
    assert problem.message


def test_the_future_is_only_checked_against_a_clock() -> None:
    b = good(start=NOW + 10 * DAY)
    assert check_batch(b) is None
    problem = check_batch(b, now_ns=NOW)
    assert problem is not None and (problem.check, problem.index) == ("future", 0)
    assert check_batch(good(1, start=NOW), now_ns=NOW - 60 * S) is None  # one bar's grace


@pytest.mark.parametrize(
    "subject", ["ktrdr.bars.MSFT.1d", "ktrdr.bars.AAPL.1w", "ktrdr.bars.AAPL", "ktrdr.evt.store.x"]
)
def test_a_subject_that_disagrees_with_the_body_is_caught(subject: str) -> None:
    problem = check_batch(good(tf=Timeframe.D1, start=D0), subject=subject)
    assert problem is not None and problem.check == "subject_mismatch"


def test_subjects_use_the_symbol_key() -> None:
    b = msgspec.structs.replace(good(), symbol="BRK B")
    assert check_batch(b, subject="ktrdr.bars.BRK_B.1m") is None


def test_bid_ask_bars_need_only_what_holds_for_aggregates() -> None:
    # open = avg bid, high = max ask, low = min bid, close = avg ask: in a crossed market the
    # average bid can top the max ask and the average ask sit below the min bid.
    crossed = msgspec.structs.replace(
        good(1, what=WhatToShow.BID_ASK), open=[10.5], high=[10.4], low=[10.0], close=[10.2]
    )
    assert check_batch(crossed) is None
    assert check_batch(msgspec.structs.replace(crossed, what_to_show=WhatToShow.TRADES))
    broken = msgspec.structs.replace(crossed, close=[10.6])  # avg ask above max ask
    assert (p := check_batch(broken)) is not None and p.check == "ohlc_order"


@st.composite
def valid_batches(
    draw: st.DrawFn, tf: Timeframe | None = None, what: WhatToShow | None = None
) -> BarBatch:
    tf = tf or draw(st.sampled_from(list(Timeframe)))
    what = what or draw(st.sampled_from(list(WhatToShow)))
    step = tf.nanos if tf.is_intraday else DAY
    start = D0 + draw(st.integers(0, 1000)) * step
    slots = draw(st.lists(st.integers(0, 200), unique=True, max_size=30))
    n = len(slots)
    mid = draw(st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n))
    spread = draw(st.lists(st.floats(0, 1e3), min_size=n, max_size=n))
    o = [m + s * 0.3 for m, s in zip(mid, spread, strict=True)]
    c = [m - s * 0.2 for m, s in zip(mid, spread, strict=True)]
    return BarBatch(
        symbol="ES",
        timeframe=tf,
        what_to_show=what,
        start=start,
        end=start + 201 * step,
        ts=[start + k * step for k in slots],
        open=o,
        high=[m + s for m, s in zip(mid, spread, strict=True)],
        low=[m - s for m, s in zip(mid, spread, strict=True)],
        close=c,
        volume=draw(st.lists(st.floats(0, 1e12), min_size=n, max_size=n)),
        wap=mid,
        count=draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)),
    )


@given(valid_batches())
@settings(max_examples=200)
def test_valid_batches_pass(batch: BarBatch) -> None:
    assert check_batch(batch, subject=f"ktrdr.bars.ES.{batch.timeframe}", now_ns=NOW * 2) is None


@given(valid_batches(), st.data())
@settings(max_examples=200)
def test_one_bad_value_anywhere_is_found_where_it_is(batch: BarBatch, data: st.DataObject) -> None:
    if not batch.ts:
        return
    i = data.draw(st.integers(0, len(batch.ts) - 1))
    name = data.draw(st.sampled_from(["open", "high", "low", "close", "volume", "wap"]))
    bad = data.draw(st.sampled_from([math.inf, -math.inf, math.nan]))
    problem = check_batch(with_column(batch, name, i, bad))
    assert problem is not None
    assert (problem.check, problem.index, problem.field) == ("non_finite", i, name)


@given(valid_batches(), st.data())
@settings(max_examples=200)
def test_a_repeated_stamp_is_found(batch: BarBatch, data: st.DataObject) -> None:
    if len(batch.ts) < 2:
        return
    i, j = sorted(
        data.draw(st.lists(st.integers(0, len(batch.ts) - 1), min_size=2, max_size=2, unique=True))
    )
    problem = check_batch(with_column(batch, "ts", j, batch.ts[i]))
    assert problem is not None and problem.check == "duplicate_ts"


def _simulated(
    symbol: str,
    sec_type: str,
    tf: Timeframe,
    what: str,
    use_rth: bool,
    lo: dt.datetime,
    hi: dt.datetime,
) -> BarBatch:
    """Return the batch the connector builds from the simulator's answer (see ``to_columns``)."""
    from ktrdr_ib_sim.series import expected_bars

    frame = expected_bars(
        symbol,
        sec_type,
        IB_BAR_SIZE[tf],
        what,
        use_rth,
        lo,
        hi,
        now_utc=dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
    )
    if tf.is_intraday:
        ts = [int(t.value) for t in frame["start_utc"]]  # pandas keeps ns in .value
    else:
        ts = [
            to_unix_nanos(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC)) for d in frame["date"]
        ]
    # Like ``to_columns``: keep the bars whose stamp (a daily bar's session date, which for a
    # session opening on Sunday evening is Monday) lies in the window asked for.
    keep = [to_unix_nanos(lo) <= t < to_unix_nanos(hi) for t in ts]
    frame, ts = frame.loc[keep], [t for t, k in zip(ts, keep, strict=True) if k]
    trades = bool(len(frame)) and bool((frame["barCount"] >= 0).all())
    return BarBatch(
        symbol=symbol,
        timeframe=tf,
        what_to_show=WhatToShow(what),
        start=to_unix_nanos(lo),
        end=to_unix_nanos(hi),
        ts=ts,
        open=frame["open"].tolist(),
        high=frame["high"].tolist(),
        low=frame["low"].tolist(),
        close=frame["close"].tolist(),
        volume=[max(v, 0.0) for v in frame["volume"].tolist()],
        wap=frame["average"].tolist() if trades else None,
        count=frame["barCount"].tolist() if trades else None,
    )


def _window(tf: Timeframe) -> tuple[dt.datetime, dt.datetime]:
    if tf.seconds < 60:  # the NYSE open (13:30 UTC) on the first day of 2024 US summer time
        day = dt.datetime(2024, 3, 11, tzinfo=dt.UTC)
        return day + dt.timedelta(hours=12), day + dt.timedelta(hours=15)
    if not tf.is_intraday:
        return dt.datetime(2023, 10, 2, tzinfo=dt.UTC), dt.datetime(2024, 4, 1, tzinfo=dt.UTC)
    return dt.datetime(2024, 3, 7, tzinfo=dt.UTC), dt.datetime(2024, 3, 13, tzinfo=dt.UTC)


@pytest.mark.parametrize("tf", list(Timeframe), ids=str)
def test_everything_the_simulator_serves_passes(tf: Timeframe) -> None:
    # The simulator is another package (shared's `testing` extra does not install it).
    build_catalogue = pytest.importorskip("ktrdr_ib_sim.catalogue").build_catalogue
    lo, hi = _window(tf)
    served = 0
    for instrument in build_catalogue(dt.date(2024, 3, 1)):
        for what in sorted(instrument.what_to_show):
            for use_rth in (True, False):
                b = _simulated(instrument.symbol, instrument.sec_type, tf, what, use_rth, lo, hi)
                subject = f"ktrdr.bars.{b.symbol.replace(' ', '_')}.{tf}"
                problem = check_batch(b, subject=subject, now_ns=NOW)
                assert problem is None, (instrument.symbol, what, use_rth, problem)
                served += len(b)
    assert served > 0


def _sorted_or_corrupted(batch: BarBatch, data: st.DataObject) -> BarBatch:
    """Return ``batch`` maybe sorted (what the fast path can pass), maybe with one bad value."""
    if data.draw(st.booleans()) and batch.ts:
        order = sorted(range(len(batch.ts)), key=batch.ts.__getitem__)
        columns = ("ts", "open", "high", "low", "close", "volume", "wap", "count")
        batch = msgspec.structs.replace(
            batch, **{name: [getattr(batch, name)[k] for k in order] for name in columns}
        )
    if batch.ts and data.draw(st.booleans()):  # one corrupted value, of any kind
        i = data.draw(st.integers(0, len(batch.ts) - 1))
        name = data.draw(
            st.sampled_from(["open", "high", "low", "close", "volume", "wap", "ts", "count"])
        )
        value = (
            data.draw(st.integers(-(2**62), 2**62))
            if name in ("ts", "count")
            else data.draw(st.floats(allow_nan=True, allow_infinity=True))
        )
        batch = with_column(batch, name, i, value)
    return batch


@given(valid_batches(), st.data())
@settings(max_examples=300)
def test_the_fast_path_never_passes_a_batch_the_exact_checks_refuse(
    batch: BarBatch, data: st.DataObject
) -> None:
    """``_all_good`` is only a shortcut: whatever it passes, every separate check passes too."""
    batch = _sorted_or_corrupted(batch, data)
    arrays = batch_arrays(batch)
    if isinstance(arrays, BarProblem):
        return
    names = ("open", "high", "low", "close", "volume", "wap")
    cols = {name: arrays[name] for name in names if name in arrays}
    exact = _first_problem(batch, cols, arrays.get("count"), arrays["ts"], NOW)
    if _all_good(batch, cols, arrays.get("count"), arrays["ts"], NOW):
        assert exact is None
    assert check_arrays(batch, arrays, now_ns=NOW) == exact


@given(st.sampled_from(list(Timeframe)), st.sampled_from(list(WhatToShow)), st.data())
@settings(max_examples=300)
def test_checking_many_batches_at_once_says_what_checking_each_says(
    tf: Timeframe, what: WhatToShow, data: st.DataObject
) -> None:
    kinds = st.one_of(valid_batches(tf, what), valid_batches())  # mostly one kind, as a dataset
    batches = [_sorted_or_corrupted(b, data) for b in data.draw(st.lists(kinds, max_size=6))]
    arrays = [batch_arrays(b) for b in batches]
    if any(isinstance(a, BarProblem) for a in arrays):
        return
    columns = [a for a in arrays if not isinstance(a, BarProblem)]
    one_by_one = [check_arrays(b, a, now_ns=NOW) for b, a in zip(batches, columns, strict=True)]
    headers = [BatchHeader.of(b) for b in batches]
    assert check_many(headers, columns, now_ns=NOW) == one_by_one


def _sorted(batch: BarBatch) -> BarBatch:
    order = sorted(range(len(batch.ts)), key=batch.ts.__getitem__)
    columns = ("ts", "open", "high", "low", "close", "volume", "wap", "count")
    return msgspec.structs.replace(
        batch, **{name: [getattr(batch, name)[k] for k in order] for name in columns}
    )


@given(st.sampled_from(list(Timeframe)), st.sampled_from(list(WhatToShow)), st.data())
@settings(max_examples=100)
def test_a_round_of_good_batches_of_one_dataset_passes_in_one_go(
    tf: Timeframe, what: WhatToShow, data: st.DataObject
) -> None:
    batches = [
        _sorted(b) for b in data.draw(st.lists(valid_batches(tf, what), min_size=1, max_size=8))
    ]
    columns = [batch_arrays(b) for b in batches]
    assert not any(isinstance(a, BarProblem) for a in columns)
    headers = [BatchHeader.of(b) for b in batches]
    later = NOW * 2  # the strategy's stamps reach past NOW
    assert _all_good_many(headers, columns, later)  # type: ignore[arg-type]
    assert check_many(headers, columns, now_ns=later) == [None] * len(batches)  # type: ignore[arg-type]
