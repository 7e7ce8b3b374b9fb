"""Synthetic bars for tests and benchmarks: a planted pattern, and a pure random walk."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from ktrdr_shared.types import Timeframe

from ktrdr_trainer.data import Bars

T0_NS = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC
HOUR_NS = 3_600 * 10**9


def synthetic_bars(
    n: int,
    *,
    pattern: bool,
    seed: int = 0,
    symbol: str = "SYN",
    period: int = 48,
    swing: float = 0.01,
    noise: float = 0.002,
) -> Bars:
    """Return ``n`` hourly bars, with a learnable cycle or as a pure random walk.

    With ``pattern`` the log price follows a cycle of ``period`` bars (of
    amplitude ``swing``) plus a random walk of ``noise`` per bar, so where the
    price heads next is visible in its recent past; without it only the random
    walk remains and nothing in the past says anything about the future.
    """
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, noise, n)
    log_price = np.cumsum(steps)
    if pattern:
        phase = rng.uniform(0, 2 * np.pi)
        log_price += swing * np.sin(2 * np.pi * np.arange(n) / period + phase)
    close = 100.0 * np.exp(log_price)
    opened = np.concatenate([[close[0]], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, noise / 2, n))
    high = np.maximum(opened, close) * (1 + wiggle)
    low = np.minimum(opened, close) * (1 - wiggle)
    volume = rng.lognormal(8.0, 0.4, n).round()
    values = np.column_stack([opened, high, low, close, volume])
    ts = T0_NS + np.arange(n, dtype=np.int64) * HOUR_NS
    return Bars(symbol, Timeframe.H1, ts, torch.from_numpy(np.ascontiguousarray(values)))


def bars_table(bars: Bars) -> pa.Table:
    """Return bars as a table in the data-store's schema (to write or serve them)."""
    v = bars.values.numpy()
    return pa.table(
        {
            "ts": pa.array(bars.ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": v[:, 0],
            "high": v[:, 1],
            "low": v[:, 2],
            "close": v[:, 3],
            "volume": v[:, 4],
            "wap": pa.nulls(len(bars), pa.float64()),
            "count": pa.nulls(len(bars), pa.int64()),
        }
    )
