"""Labels: forward returns and zigzag swings against brute force; how far each label looks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_trainer.labels import (
    BUY,
    HOLD,
    SELL,
    UNKNOWN,
    forward_return_labels,
    zigzag_labels,
    zigzag_pivots,
)
from ktrdr_trainer.testing import synthetic_bars

pytestmark = pytest.mark.unit


def test_forward_return_labels_by_hand() -> None:
    close = torch.tensor([100.0, 101.0, 100.5, 99.0, 99.2, 100.0], dtype=torch.float64)
    labels = forward_return_labels(close, horizon=2, up=0.004, down=0.004)
    # 100 -> 100.5 buy; 101 -> 99 sell; 100.5 -> 99.2 sell; 99 -> 100 buy; last two unknown
    assert labels.classes.tolist() == [BUY, SELL, SELL, BUY, UNKNOWN, UNKNOWN]
    assert labels.horizon_end.tolist() == [2, 3, 4, 5, 6, 7]


@settings(max_examples=40)
@given(seed=st.integers(0, 2**16), horizon=st.integers(1, 12))
def test_forward_return_labels_match_brute_force(seed: int, horizon: int) -> None:
    close = synthetic_bars(200, pattern=True, seed=seed).close
    got = forward_return_labels(close, horizon, up=0.003, down=0.002).classes.tolist()
    c = close.tolist()
    for t, label in enumerate(got):
        if t + horizon >= len(c):
            assert label == UNKNOWN
            continue
        change = c[t + horizon] / c[t] - 1
        assert label == (BUY if change > 0.003 else SELL if change < -0.002 else HOLD)


def test_zigzag_pivots_by_hand() -> None:
    close = np.array([100, 101, 104, 103, 99, 98, 100, 103, 102, 101.0])
    pivots, confirmed = zigzag_pivots(close, 0.03)
    # trough 100 (confirmed by the rise to 104, +4%), peak 104 (by the drop to 99, -4.8%),
    # trough 98 (by 103, +5.1%); the last peak (103) is never confirmed: no 3% drop follows
    assert pivots.tolist() == [0, 2, 5]
    assert confirmed.tolist() == [2, 4, 7]
    labels = zigzag_labels(torch.from_numpy(close), 0.03)
    # buy while the rise left to the peak is >= 3%, sell while the fall left is >= 3%,
    # hold for the tail of a swing; nothing after the last confirmed pivot is known
    assert labels.classes.tolist() == [BUY, HOLD, SELL, SELL, HOLD] + [UNKNOWN] * 5
    assert labels.horizon_end[:5].tolist() == [4, 4, 7, 7, 7]


@settings(max_examples=40)
@given(seed=st.integers(0, 2**16), threshold=st.sampled_from([0.005, 0.01, 0.02]))
def test_zigzag_swings_alternate_and_each_exceeds_the_threshold(
    seed: int, threshold: float
) -> None:
    close = synthetic_bars(500, pattern=False, seed=seed, noise=0.004).close.numpy()
    pivots, confirmed = zigzag_pivots(close, threshold)
    assert (np.diff(pivots) > 0).all() and (confirmed > pivots).all()
    prices = close[pivots]
    swings = prices[1:] / prices[:-1] - 1
    assert (np.abs(swings) >= threshold - 1e-12).all()
    assert (np.sign(swings[1:]) != np.sign(swings[:-1])).all()  # peak, trough, peak, ...
    for p, c in zip(pivots, confirmed, strict=True):
        # a pivot is the extreme of the stretch up to its confirmation, and the
        # confirming bar is the first to reverse by the threshold
        segment = close[p : c + 1]
        is_peak = close[c] < close[p]
        assert close[p] == (segment.max() if is_peak else segment.min())
        moved = segment / close[p] - 1
        crossed = moved <= -threshold if is_peak else moved >= threshold
        assert int(np.argmax(crossed)) == c - p


def test_zigzag_labels_only_look_forward_to_their_confirmation() -> None:
    close = synthetic_bars(400, pattern=True, seed=5).close
    labels = zigzag_labels(close, 0.01)
    known = labels.classes != UNKNOWN
    rows = torch.arange(len(close))
    assert bool((labels.horizon_end[known] > rows[known]).all())
    assert int(known.sum()) > 300
