"""Deterministic prices: a counter-based random walk that any window can evaluate on its own.

Every number is a pure function of (seed, contract, instant), so the same bar comes out the same
whichever request window asks for it. The model has three levels:

* a daily log-price level, a random walk over calendar days (cumulated once per contract);
* one-minute points inside each UTC day, a Brownian bridge between two daily levels;
* one-second points inside each minute, a bridge that starts at the minute's open, ends at its
  close and touches its high and low, so seconds aggregate exactly to their minute.

Prices are integer ticks (``price = ticks / ticks_per_unit``), which keeps aggregation exact.

A contract with price knots (CLK0) replaces the first two levels: its minute points are the
straight line through the knots plus a Brownian bridge pinned to zero at every knot, in price
units rather than logs, so the path passes exactly through each knot and may go negative.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

import numpy as np

from ktrdr_ib_sim.catalogue import Instrument

_DAY_MINUTES = 1440
_FIRST_DAY = 10_592  # 1999-01-01: the walk starts before any calendar session
_LAST_DAY = 32_872  # 2060-01-01
_ANCHOR_DAY = 19_723  # 2024-01-01: the day each contract sits at its base price
_DAYS_PER_CHUNK = 128  # bounds the (days x 1441) working arrays to a few MB

# Independent random streams (mixed into the counter so streams never collide).
_S_DAY, _S_MINUTE, _S_HIGH, _S_LOW, _S_VOLUME = 1, 3, 5, 7, 9
_S_SEC_PATH, _S_SEC_HIGH, _S_SEC_LOW, _S_SEC_VOL, _S_SEC_PICK = 11, 13, 15, 17, 19

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """Scramble uint64 counters with the splitmix64 finaliser."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def uniforms(key: int, stream: int, counters: np.ndarray) -> np.ndarray:
    """Return one uniform in (0, 1) per counter, a pure function of (key, stream, counter)."""
    base = np.uint64((key ^ (stream * 0x632BE59BD9B4E019)) & 0xFFFFFFFFFFFFFFFF)
    bits = _mix(np.asarray(counters, dtype=np.int64).astype(np.uint64) * _GOLDEN + base)
    return ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


def normals(key: int, stream: int, counters: np.ndarray) -> np.ndarray:
    """Return one standard normal per counter (Box-Muller over two uniform streams)."""
    u1 = uniforms(key, stream, counters)
    u2 = uniforms(key, stream + 1, counters)
    return np.asarray(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2), dtype=np.float64)


def contract_key(seed: int, con_id: int) -> int:
    """Return the 64-bit key of one contract's price path under one seed."""
    digest = hashlib.blake2b(f"{seed}:{con_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class BaseBars:
    """Minute or second bars in integer ticks, with the sums aggregation needs.

    ``turnover`` is (high + low + close) * volume (three times the tick-valued typical price),
    ``mid_sum`` is open + close summed over base units, ``units`` counts base units; together
    they give exact volume-weighted and time-averaged prices at any aggregation level.
    """

    start: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    count: np.ndarray
    turnover: np.ndarray
    mid_sum: np.ndarray
    units: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


@functools.lru_cache(maxsize=256)
def _knot_bridge(key: int, first: int, last: int, sigma: float) -> np.ndarray:
    """Return the noise at minutes ``first..last``: a random walk pinned to zero at both ends."""
    steps = normals(key, _S_MINUTE, np.arange(first, last, dtype=np.int64)) * sigma
    walk = np.concatenate(([0.0], np.cumsum(steps)))
    frac = np.arange(last - first + 1) / max(last - first, 1)
    return np.asarray(walk - frac * walk[-1], dtype=np.float64)


@functools.lru_cache(maxsize=64)
def _day_levels(key: int, annual_vol: float, base_price: float) -> np.ndarray:
    """Return the log price at 00:00 UTC of every day from ``_FIRST_DAY`` to ``_LAST_DAY``."""
    days = np.arange(_FIRST_DAY, _LAST_DAY + 1, dtype=np.int64)
    steps = normals(key, _S_DAY, days) * (annual_vol / np.sqrt(365.0))
    walk = np.concatenate(([0.0], np.cumsum(steps[:-1])))
    levels = walk - walk[_ANCHOR_DAY - _FIRST_DAY] + np.log(base_price)
    return np.asarray(levels, dtype=np.float64)


class PricePath:
    """The price path of one contract under one seed."""

    def __init__(self, instrument: Instrument, seed: int) -> None:
        self.instrument = instrument
        self.key = contract_key(seed, instrument.con_id)
        self._levels = _day_levels(self.key, instrument.annual_vol, instrument.base_price)
        self._sigma_minute = instrument.annual_vol / np.sqrt(365.0 * _DAY_MINUTES)
        self._additive = bool(instrument.knots)
        self._knot_minutes = np.array([m for m, _ in instrument.knots], dtype=np.int64)
        self._knot_prices = np.array([p for _, p in instrument.knots], dtype=np.float64)
        self._knot_sigma = instrument.knot_noise / np.sqrt(_DAY_MINUTES)  # price units a minute

    def _points(self, days: np.ndarray) -> np.ndarray:
        """Return the model's values at the 1441 minute boundaries of each UTC day."""
        return self._knot_points(days) if self._additive else self._log_points(days)

    def _knot_points(self, days: np.ndarray) -> np.ndarray:
        """Return prices at the minute boundaries of each day: knot line plus pinned noise."""
        minutes = days[:, None] * _DAY_MINUTES + np.arange(_DAY_MINUTES + 1)
        flat = minutes.ravel()
        knots = self._knot_minutes
        prices = np.interp(flat, knots, self._knot_prices)
        segment = np.searchsorted(knots, flat, side="right") - 1
        inside = (segment >= 0) & (segment < len(knots) - 1)
        for seg in np.unique(segment[inside]).tolist():
            first, last = int(knots[seg]), int(knots[seg + 1])
            mask = segment == seg
            noise = _knot_bridge(self.key, first, last, float(self._knot_sigma))
            prices[mask] += noise[flat[mask] - first]
        return np.asarray(prices.reshape(minutes.shape), dtype=np.float64)

    def _log_points(self, days: np.ndarray) -> np.ndarray:
        """Return log prices at the 1441 minute boundaries of each UTC day, shape (n, 1441)."""
        if days.size and (days.min() < _FIRST_DAY or days.max() >= _LAST_DAY):
            raise ValueError(f"days outside the modelled range {_FIRST_DAY}..{_LAST_DAY}")
        counters = days[:, None] * _DAY_MINUTES + np.arange(_DAY_MINUTES)
        steps = normals(self.key, _S_MINUTE, counters) * self._sigma_minute
        walk = np.concatenate((np.zeros((len(days), 1)), np.cumsum(steps, axis=1)), axis=1)
        frac = np.arange(_DAY_MINUTES + 1) / _DAY_MINUTES
        start = self._levels[days - _FIRST_DAY]
        drift = self._levels[days + 1 - _FIRST_DAY] - start
        points = start[:, None] + walk - frac * (walk[:, -1:] - drift[:, None])
        return np.asarray(points, dtype=np.float64)

    def _ticks(self, log_price: np.ndarray) -> np.ndarray:
        if self._additive:  # already a price, and it may be negative
            return np.asarray(np.rint(log_price * self.instrument.ticks_per_unit), dtype=np.int64)
        scaled = np.exp(log_price) * self.instrument.ticks_per_unit
        return np.asarray(np.maximum(np.rint(scaled), 1), dtype=np.int64)

    def open_close(self, minutes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return open and close ticks of each minute (minutes since the epoch, sorted)."""
        opens = np.empty(len(minutes), dtype=np.int64)
        closes = np.empty(len(minutes), dtype=np.int64)
        days = minutes // _DAY_MINUTES
        unique_days = np.unique(days)
        for i in range(0, len(unique_days), _DAYS_PER_CHUNK):
            chunk = unique_days[i : i + _DAYS_PER_CHUNK]
            lo, hi = np.searchsorted(days, [chunk[0], chunk[-1] + 1])
            rows = np.searchsorted(chunk, days[lo:hi])
            cols = minutes[lo:hi] % _DAY_MINUTES
            points = self._points(chunk)
            opens[lo:hi] = self._ticks(points[rows, cols])
            closes[lo:hi] = self._ticks(points[rows, cols + 1])
        return opens, closes

    def minute_bars(self, minutes: np.ndarray, in_rth: np.ndarray) -> BaseBars:
        """Return the one-minute bars starting at ``minutes`` (minutes since the epoch, sorted).

        Args:
            minutes: Minute indices, strictly increasing.
            in_rth: Whether each minute lies in regular trading hours (volume is thinner outside).
        """
        inst = self.instrument
        opens, closes = self.open_close(minutes)
        if self._additive:
            spread = np.full(len(minutes), self._knot_sigma * inst.ticks_per_unit * 0.6)
        else:
            spread = np.maximum(opens, closes) * self._sigma_minute * 0.6
        highs = np.maximum(opens, closes) + np.floor(
            np.abs(normals(self.key, _S_HIGH, minutes)) * spread
        ).astype(np.int64)
        lows = np.minimum(opens, closes) - np.floor(
            np.abs(normals(self.key, _S_LOW, minutes)) * spread
        ).astype(np.int64)
        if not self._additive:
            lows = np.maximum(lows, 1)
        shape = np.where(in_rth, 1.0, 0.06) * (0.4 + 1.2 * uniforms(self.key, _S_VOLUME, minutes))
        volume = np.floor(inst.minute_volume * shape).astype(np.int64)
        count = np.where(volume > 0, np.maximum(volume // inst.trade_size, 1), 0)
        return BaseBars(
            start=minutes * 60,
            open=opens,
            high=highs,
            low=lows,
            close=closes,
            volume=volume,
            count=count,
            turnover=(highs + lows + closes) * volume,
            mid_sum=opens + closes,
            units=np.ones(len(minutes), dtype=np.int64),
        )

    def second_bars(self, minute: BaseBars) -> BaseBars:
        """Split minute bars into one-second bars that aggregate back to them exactly."""
        n = len(minute)
        counters = (minute.start[:, None] + np.arange(60)).astype(np.int64)
        path = self._second_path(minute, counters)
        o, c = path[:, :-1], path[:, 1:]
        hi_col, lo_col = minute.high[:, None], minute.low[:, None]
        wiggle = np.maximum((minute.high - minute.low)[:, None] / 8.0, 0.0)
        h = np.maximum(o, c) + np.floor(np.abs(normals(self.key, _S_SEC_HIGH, counters)) * wiggle)
        low = np.minimum(o, c) - np.floor(np.abs(normals(self.key, _S_SEC_LOW, counters)) * wiggle)
        h = np.minimum(h.astype(np.int64), hi_col)
        low = np.maximum(low.astype(np.int64), lo_col)
        picks = (uniforms(self.key, _S_SEC_PICK, minute.start) * 60).astype(np.int64)
        h[np.arange(n), picks] = minute.high  # one second reaches the minute's high ...
        low[np.arange(n), (picks * 7 + 13) % 60] = minute.low  # ... and one its low
        weights = 0.2 + uniforms(self.key, _S_SEC_VOL, counters)
        volume = _split_integer(minute.volume, weights)
        count = _split_integer(minute.count, weights)
        return BaseBars(
            start=counters.ravel(),
            open=o.ravel(),
            high=h.ravel(),
            low=low.ravel(),
            close=c.ravel(),
            volume=volume.ravel(),
            count=count.ravel(),
            turnover=((h + low + c) * volume).ravel(),
            mid_sum=(o + c).ravel(),
            units=np.ones(n * 60, dtype=np.int64),
        )

    def _second_path(self, minute: BaseBars, counters: np.ndarray) -> np.ndarray:
        """Return 61 tick points per minute: open, 59 interior points, close; within [low, high]."""
        sigma = np.maximum(minute.high - minute.low, 1)[:, None] / 6.0
        steps = normals(self.key, _S_SEC_PATH, counters) * sigma
        walk = np.concatenate((np.zeros((len(minute), 1)), np.cumsum(steps, axis=1)), axis=1)
        frac = np.arange(61) / 60.0
        line = minute.open[:, None] + frac * (minute.close - minute.open)[:, None]
        path = np.rint(line + walk - frac * walk[:, -1:]).astype(np.int64)
        path[:, 0], path[:, -1] = minute.open, minute.close
        return np.asarray(np.clip(path, minute.low[:, None], minute.high[:, None]), dtype=np.int64)


def _split_integer(totals: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Split each total into len(weights[i]) non-negative integers that sum to it exactly."""
    shares = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    cumulative = np.floor(totals[:, None] * shares).astype(np.int64)
    cumulative[:, -1] = totals
    cumulative = np.maximum.accumulate(cumulative, axis=1)
    return np.diff(cumulative, axis=1, prepend=0)
