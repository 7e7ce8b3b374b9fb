"""Bars of every size, cut from the deterministic price path and the session calendar.

Minute bars are the base of every size of one minute or more; bars under a minute are cut from
seconds that aggregate exactly to their minute. Daily bars aggregate a session's minutes (cached
per calendar year); weeks and months aggregate days. A bar belongs to a request window when its
start lies in ``[start, end)``; it exists once its end is at or before "now".
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

import numpy as np

from ktrdr_ib_sim.catalogue import Instrument
from ktrdr_ib_sim.prices import BaseBars, PricePath
from ktrdr_ib_sim.sessions import Sessions, schedule
from ktrdr_ib_sim.timeframes import BarKind, BarSize

_DAY_S = 86_400
_LOOKAROUND_S = 40 * _DAY_S  # enough sessions on either side to complete a week or a month


@dataclass(frozen=True)
class Grouped:
    """Aggregated bars in ticks: when each starts and ends, its session date and zone offset."""

    stamp: np.ndarray
    end: np.ndarray
    day: np.ndarray
    offset: np.ndarray
    base: BaseBars

    def __len__(self) -> int:
        return len(self.stamp)

    def take(self, mask: np.ndarray) -> Grouped:
        """Return the bars where ``mask`` is true."""
        b = self.base
        fields = {k: getattr(b, k)[mask] for k in b.__dataclass_fields__}
        return Grouped(
            self.stamp[mask], self.end[mask], self.day[mask], self.offset[mask], BaseBars(**fields)
        )


def sessions_for(instrument: Instrument, use_rth: bool) -> Sessions:
    """Return the instrument's sessions: regular hours only, or all trading hours."""
    return schedule(instrument.market, use_rth, instrument.zone)


def head_timestamp_s(instrument: Instrument, what_to_show: str, use_rth: bool) -> int | None:
    """Return the open of the first session with data for ``what_to_show``; None if IB has none."""
    head = instrument.head_date(what_to_show)
    if head is None:
        return None
    midnight = int(dt.datetime(head.year, head.month, head.day, tzinfo=dt.UTC).timestamp())
    return sessions_for(instrument, use_rth).first_open_at_or_after(midnight)


def last_close_s(instrument: Instrument) -> int | None:
    """Return when a dated contract stops trading: the close of its last trading day's session.

    None for contracts without a last trading day (stocks, forex, indexes).
    """
    if not instrument.last_trade_date:
        return None
    last = dt.date.fromisoformat(
        f"{instrument.last_trade_date[:4]}-{instrument.last_trade_date[4:6]}-"
        f"{instrument.last_trade_date[6:8]}"
    )
    sessions = sessions_for(instrument, use_rth=False)
    i = int(np.searchsorted(sessions.dates, (last - dt.date(1970, 1, 1)).days, side="right")) - 1
    return int(sessions.closes[i]) if i >= 0 else None


def open_seconds(sessions: Sessions, start_s: int, end_s: int) -> int:
    """Return how many seconds of ``[start_s, end_s)`` the market is open."""
    inside = sessions.overlapping(start_s, end_s)
    overlap = np.minimum(inside.closes, end_s) - np.maximum(inside.opens, start_s)
    return int(np.clip(overlap, 0, None).sum())


def aggregate(base: BaseBars, first: np.ndarray) -> BaseBars:
    """Aggregate consecutive base bars; ``first`` holds the index where each group starts."""
    if len(first) == 0:
        return base  # nothing to aggregate: the (empty) input is its own aggregate
    last = np.append(first[1:], len(base)) - 1
    return BaseBars(
        start=base.start[first],
        open=base.open[first],
        high=np.maximum.reduceat(base.high, first),
        low=np.minimum.reduceat(base.low, first),
        close=base.close[last],
        volume=np.add.reduceat(base.volume, first),
        count=np.add.reduceat(base.count, first),
        turnover=np.add.reduceat(base.turnover, first),
        mid_sum=np.add.reduceat(base.mid_sum, first),
        units=np.add.reduceat(base.units, first),
    )


def _group_starts(*keys: np.ndarray) -> np.ndarray:
    """Return the indices where any of the (sorted, parallel) key arrays changes value."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    changed = np.zeros(n, dtype=bool)
    changed[0] = True
    for key in keys:
        changed[1:] |= key[1:] != key[:-1]
    return np.flatnonzero(changed)


def _session_minutes(sessions: Sessions, lo_s: int, hi_s: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the open minutes within ``[lo_s, hi_s)`` and the session each belongs to."""
    inside = sessions.overlapping(lo_s, hi_s)
    first = np.maximum(inside.opens, (lo_s // 60) * 60) // 60
    stop = np.minimum(inside.closes, -(-hi_s // 60) * 60) // 60
    lengths = np.clip(stop - first, 0, None)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(len(inside)), lengths)
    offsets = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index_base = int(np.searchsorted(sessions.closes, lo_s, side="right"))
    return first[owner] + offsets, owner + index_base


def _rth_flags(instrument: Instrument, start_s: np.ndarray) -> np.ndarray:
    rth = sessions_for(instrument, use_rth=True)
    i = np.searchsorted(rth.opens, start_s, side="right") - 1
    valid = i >= 0
    return valid & (start_s < rth.closes[np.maximum(i, 0)])


def _minute_bars(
    path: PricePath, sessions: Sessions, lo_s: int, hi_s: int
) -> tuple[BaseBars, np.ndarray]:
    minutes, owner = _session_minutes(sessions, lo_s, hi_s)
    base = path.minute_bars(minutes, _rth_flags(path.instrument, minutes * 60))
    return base, owner


def intraday_bars(
    path: PricePath, sessions: Sessions, bar: BarSize, start_s: int, end_s: int
) -> Grouped:
    """Return the bars of an intraday size whose start lies in ``[start_s, end_s)``.

    A bar is cut on the ``bar.seconds`` grid of the instrument's local clock and clipped to its
    session, so a session that opens off the grid (09:30 with hourly bars) starts with a short
    bar stamped at the open, as IB does.
    """
    base, owner = _minute_bars(path, sessions, start_s, end_s + bar.seconds)
    if bar.seconds < 60:
        base = path.second_bars(base)
        owner = np.repeat(owner, 60)
    offset = sessions.utc_offsets[owner]
    grid = (base.start + offset) // bar.seconds * bar.seconds - offset
    first = _group_starts(owner, grid)
    sess = owner[first]
    stamp = np.maximum(grid[first], sessions.opens[sess])
    end = np.minimum(grid[first] + bar.seconds, sessions.closes[sess])
    grouped = Grouped(stamp, end, sessions.dates[sess], offset[first], aggregate(base, first))
    return grouped.take((stamp >= start_s) & (stamp < end_s))


@functools.lru_cache(maxsize=512)
def _daily_of_year(instrument: Instrument, seed: int, use_rth: bool, year: int) -> Grouped:
    """Return one bar per session whose date falls in ``year`` (all of it, future included)."""
    sessions = sessions_for(instrument, use_rth)
    first_day = (np.datetime64(f"{year}-01-01") - np.datetime64(0, "D")).astype(np.int64)
    last_day = (np.datetime64(f"{year + 1}-01-01") - np.datetime64(0, "D")).astype(np.int64)
    lo, hi = np.searchsorted(sessions.dates, [first_day, last_day])
    of_year = sessions.take(slice(int(lo), int(hi)))
    if len(of_year) == 0:
        return empty_grouped()
    base, owner = _minute_bars(
        PricePath(instrument, seed), of_year, int(of_year.opens[0]), int(of_year.closes[-1])
    )
    first = _group_starts(owner)
    sess = owner[first]  # the window starts at the year's first open, so owners index of_year
    return Grouped(
        of_year.opens[sess],
        of_year.closes[sess],
        of_year.dates[sess],
        of_year.utc_offsets[sess],
        aggregate(base, first),
    )


def empty_grouped() -> Grouped:
    """Return a set of zero bars."""
    empty = np.zeros(0, dtype=np.int64)
    base = BaseBars(*(empty,) * 10)
    return Grouped(empty, empty, empty, empty, base)


def concat(parts: list[Grouped]) -> Grouped:
    """Return the bars of every part, in order."""
    if not parts:
        return empty_grouped()
    base_fields = BaseBars.__dataclass_fields__
    base = BaseBars(**{k: np.concatenate([getattr(p.base, k) for p in parts]) for k in base_fields})
    stamp, end, day, offset = (
        np.concatenate([getattr(p, k) for p in parts]) for k in ("stamp", "end", "day", "offset")
    )
    return Grouped(stamp, end, day, offset, base)


def _year_of(epoch_s: int) -> int:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).year


def daily_bars(
    instrument: Instrument, seed: int, use_rth: bool, lo_s: int, hi_s: int, data_start_s: int
) -> Grouped:
    """Return daily bars for sessions opening in ``[lo_s, hi_s)`` and not before the data start."""
    years = range(max(_year_of(lo_s), 2000), min(_year_of(hi_s), 2059) + 1)
    days = concat([_daily_of_year(instrument, seed, use_rth, y) for y in years])
    return days.take((days.stamp >= max(lo_s, data_start_s)) & (days.stamp < hi_s))


def period_bars(
    instrument: Instrument,
    seed: int,
    use_rth: bool,
    bar: BarSize,
    window: tuple[int, int],
    data_start_s: int,
) -> Grouped:
    """Return day, week or month bars whose first session opens in ``window``."""
    start_s, end_s = window
    days = daily_bars(
        instrument, seed, use_rth, start_s - _LOOKAROUND_S, end_s + _LOOKAROUND_S, data_start_s
    )
    if bar.kind is BarKind.DAY or len(days) == 0:
        grouped = days
    else:
        calendar_day = days.day.astype("datetime64[D]")
        if bar.kind is BarKind.WEEK:
            key = (days.day + 3) // 7  # 1970-01-01 was a Thursday; weeks start on Monday
        else:
            key = calendar_day.astype("datetime64[M]").astype(np.int64)
        first = _group_starts(key)
        last = np.append(first[1:], len(days)) - 1
        grouped = Grouped(
            days.stamp[first],
            days.end[last],
            days.day[first],
            days.offset[first],
            aggregate(days.base, first),
        )
    return grouped.take((grouped.stamp >= start_s) & (grouped.stamp < end_s))
