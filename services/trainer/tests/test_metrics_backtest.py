"""Test metrics and the signal backtest, by hand."""

from __future__ import annotations

import numpy as np
import pytest
from ktrdr_trainer.backtest import Curve, backtest, count_trades, equity_points, performance
from ktrdr_trainer.labels import BUY, HOLD, SELL
from ktrdr_trainer.metrics import classification_metrics, confusion_matrix

pytestmark = pytest.mark.unit

HOUR = 3_600 * 10**9


def test_classification_metrics_by_hand() -> None:
    truth = np.array([BUY, BUY, BUY, HOLD, HOLD, SELL, SELL, SELL, SELL, SELL])
    guess = np.array([BUY, HOLD, BUY, HOLD, SELL, SELL, SELL, BUY, SELL, HOLD])
    m = classification_metrics(truth, guess, majority_class=HOLD)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["majority_class"] == "hold"
    assert m["majority_baseline_accuracy"] == pytest.approx(0.2)
    buy = m["per_class"]["buy"]
    assert (buy["precision"], buy["recall"], buy["support"]) == (
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
        3,
    )
    sell = m["per_class"]["sell"]
    assert sell["precision"] == pytest.approx(3 / 4)
    assert sell["recall"] == pytest.approx(3 / 5)
    assert sell["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert m["per_class"]["hold"]["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (5 / 6))
    assert m["macro_f1"] == pytest.approx(np.mean([2 / 3, 0.4, 2 * 0.75 * 0.6 / 1.35]))


def test_a_class_never_predicted_has_zero_precision_not_nan() -> None:
    m = classification_metrics(np.array([0, 1, 2]), np.array([0, 0, 0]), majority_class=0)
    assert m["per_class"]["sell"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert confusion_matrix(np.array([2]), np.array([1]), 3).tolist() == [
        [0, 0, 0],
        [0, 0, 0],
        [0, 1, 0],
    ]


def test_always_long_is_buy_and_hold_and_short_mirrors_it() -> None:
    close = np.array([100.0, 110.0, 99.0, 108.9, 120.0])
    ts = np.arange(5) * HOUR
    rows = np.arange(4)  # the last bar has no next bar to earn on
    symbols = np.zeros(5, dtype=np.int64)
    long, _ = backtest(rows, np.ones(4), close, ts, symbols)
    assert long["strategy"]["total_return"] == pytest.approx(0.2)
    assert long["strategy"] == pytest.approx({**long["buy_and_hold"], "trades": 1, "exposure": 1})
    assert long["buy_and_hold"]["max_drawdown"] == pytest.approx(0.1)  # 110 -> 99
    short, _ = backtest(rows, -np.ones(4), close, ts, symbols)
    assert short["strategy"]["total_return"] == pytest.approx(
        0.9 * 1.1 * 0.9 * (2 - 120 / 108.9) - 1
    )
    flat, curve = backtest(rows, np.zeros(4), close, ts, symbols)
    assert flat["strategy"] == {
        "total_return": 0.0,
        "sharpe": 0.0,
        "max_drawdown": 0.0,
        "trades": 0,
        "exposure": 0.0,
    }
    assert curve.equity("buy_and_hold")[-1] == pytest.approx(1.2)


def test_symbols_are_weighted_equally_and_never_earn_across_their_boundary() -> None:
    close = np.array([100.0, 110.0, 121.0, 50.0, 45.0, 36.0])
    ts = np.array([0, 1, 2, 0, 1, 2]) * HOUR
    symbols = np.array([0, 0, 0, 1, 1, 1])
    rows = np.array([0, 1, 2, 3, 4])  # row 2 is the first symbol's last bar: nothing to earn
    result, curve = backtest(rows, np.array([1.0, 1, 1, 1, 1]), close, ts, symbols)
    np.testing.assert_allclose(curve.strategy, [(0.1 - 0.1) / 2, (0.1 - 0.2) / 2], atol=1e-12)
    assert result["bars"] == 2
    assert count_trades(rows, np.array([1.0, 1, -1, -1, 0]), symbols) == 4


def test_sharpe_is_annualised_by_the_bars_the_period_had() -> None:
    returns = np.array([0.01, -0.005, 0.02, 0.0, 0.01])
    ts = np.arange(5) * 24 * HOUR  # daily bars, every day
    sharpe = performance(returns, ts)["sharpe"]
    assert sharpe == pytest.approx(returns.mean() / returns.std() * np.sqrt(365.25))


def test_equity_points_thin_the_curve_and_keep_its_ends() -> None:
    n = 1_000
    ts = np.arange(n, dtype=np.int64) * HOUR
    strategy = np.full(n, 0.001)
    hold = np.full(n, -0.0005)
    curve = Curve(ts, strategy, hold, np.ones(n))
    points = equity_points(curve, points=50)
    assert len(points["ts"]) == len(points["strategy"]) == len(points["buy_and_hold"]) == 50
    assert points["ts"][0] == "1970-01-01T00:00:00Z"
    assert points["ts"][-1] == "1970-02-11T15:00:00Z"  # the last instant (999 h) is kept
    assert points["strategy"][-1] == pytest.approx(1.001**n, rel=1e-6)
    assert points["buy_and_hold"][-1] == pytest.approx(0.9995**n, rel=1e-6)


def test_equity_points_of_an_empty_curve() -> None:
    empty = np.array([], dtype=np.int64)
    assert equity_points(Curve(empty, empty * 1.0, empty * 1.0, empty * 1.0)) == {
        "ts": [],
        "strategy": [],
        "buy_and_hold": [],
    }
