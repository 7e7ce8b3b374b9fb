"""A simple backtest of the model's signals on the test period, against buy-and-hold.

At each test bar the predicted class sets the position until the next bar:
buy is long, sell is short, hold is flat. No costs, no slippage: it says
whether the signals carry information, not what a strategy would earn.
Several symbols are equally weighted at each instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ktrdr_shared.types import from_unix_nanos

YEAR_NS = 365.25 * 86_400 * 10**9


@dataclass(frozen=True)
class Curve:
    """Per-bar returns of the strategy and of buy-and-hold, at the instants ``ts``."""

    ts: np.ndarray
    strategy: np.ndarray
    buy_and_hold: np.ndarray
    positions: np.ndarray

    def equity(self, which: str = "strategy") -> np.ndarray:
        """Return the compounded equity (from 1) of ``strategy`` or ``buy_and_hold``."""
        return np.cumprod(1 + getattr(self, which))


def curve(
    rows: np.ndarray,
    positions: np.ndarray,
    close: np.ndarray,
    ts: np.ndarray,
    symbol_of_row: np.ndarray,
) -> Curve:
    """Return the equal-weighted returns of holding ``positions`` at ``rows`` for one bar each.

    Args:
        rows: test sample rows (ascending within each symbol).
        positions: +1 / 0 / -1 per row.
        close / ts / symbol_of_row: per stacked row.
    """
    has_next = rows + 1 < len(close)
    has_next[has_next] &= symbol_of_row[rows[has_next] + 1] == symbol_of_row[rows[has_next]]
    rows, positions = rows[has_next], positions[has_next]
    step = close[rows + 1] / close[rows] - 1
    instants, slot = np.unique(ts[rows], return_inverse=True)
    count = np.bincount(slot, minlength=len(instants)).astype(np.float64)

    def mean_at(values: np.ndarray) -> np.ndarray:
        return np.bincount(slot, weights=values, minlength=len(instants)) / count

    trades = np.bincount(slot, weights=positions, minlength=len(instants)) / count
    return Curve(instants, mean_at(positions * step), mean_at(step), trades)


def performance(returns: np.ndarray, ts: np.ndarray) -> dict[str, float]:
    """Return total return, annualised Sharpe ratio and maximum drawdown of per-bar returns.

    Sharpe is annualised by the number of bars per year the test period
    actually had (so overnight and weekend gaps are counted as they fell).
    """
    if len(returns) == 0:
        return {"total_return": 0.0, "sharpe": 0.0, "max_drawdown": 0.0}
    equity = np.cumprod(1 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    span = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
    per_year = (len(returns) - 1) / (span / YEAR_NS) if span > 0 else 0.0
    std = float(returns.std())
    sharpe = float(returns.mean() / std * np.sqrt(per_year)) if std > 0 else 0.0
    return {
        "total_return": float(equity[-1] - 1),
        "sharpe": sharpe,
        "max_drawdown": float(np.max(1 - equity / peak)),
    }


def count_trades(rows: np.ndarray, positions: np.ndarray, symbol_of_row: np.ndarray) -> int:
    """Return how often a position changes, entering from flat included, summed over symbols."""
    if len(rows) == 0:
        return 0
    symbols = symbol_of_row[rows]
    same_symbol = np.concatenate([[False], symbols[1:] == symbols[:-1]])
    previous = np.where(same_symbol, np.concatenate([[0.0], positions[:-1]]), 0.0)
    return int(np.count_nonzero(positions != previous))


def backtest(
    rows: np.ndarray,
    positions: np.ndarray,
    close: np.ndarray,
    ts: np.ndarray,
    symbol_of_row: np.ndarray,
) -> tuple[dict[str, Any], Curve]:
    """Return the backtest summary (strategy vs buy-and-hold) and its curve."""
    result = curve(rows, positions, close, ts, symbol_of_row)
    strategy = performance(result.strategy, result.ts)
    strategy["trades"] = count_trades(rows, positions, symbol_of_row)
    strategy["exposure"] = float(np.mean(np.abs(result.positions))) if len(result.ts) else 0.0
    hold = performance(result.buy_and_hold, result.ts)
    return {
        "bars": len(result.ts),
        "strategy": strategy,
        "buy_and_hold": hold,
        "excess_return": strategy["total_return"] - hold["total_return"],
        "costs": "none (signals only)",
    }, result


def equity_points(result: Curve, points: int = 200) -> dict[str, list[Any]]:
    """Return the equity curves (from 1) at no more than ``points`` evenly spaced instants.

    Small enough to travel in a run's metrics (the console draws it); the last instant is
    always kept, so the curve ends at the run's total return.
    """
    n = len(result.ts)
    if n == 0:
        return {"ts": [], "strategy": [], "buy_and_hold": []}
    at = np.unique(np.linspace(0, n - 1, min(n, points)).round().astype(np.int64))
    strategy, hold = result.equity("strategy")[at], result.equity("buy_and_hold")[at]
    return {
        "ts": [from_unix_nanos(int(t)).isoformat().replace("+00:00", "Z") for t in result.ts[at]],
        "strategy": [round(float(v), 6) for v in strategy],
        "buy_and_hold": [round(float(v), 6) for v in hold],
    }
