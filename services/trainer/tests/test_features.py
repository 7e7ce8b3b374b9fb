"""Features: causal (a row never sees a later bar), right against brute force, specs checked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import Feature, FeatureName
from ktrdr_shared.messages.training import default_features
from ktrdr_trainer.features import (
    compute_features,
    ema,
    fuzzify,
    lookback,
    resolve_features,
    rolling_mean,
    rolling_std,
    rsi,
)
from ktrdr_trainer.testing import synthetic_bars

pytestmark = pytest.mark.unit

ALL = resolve_features(
    [*default_features(), Feature(name=FeatureName.RETURNS, params={"horizon": 3})]
)


def test_default_features_build_finite_columns_after_their_lookback() -> None:
    bars = synthetic_bars(600, pattern=True, seed=1)
    specs = resolve_features(default_features())
    matrix = compute_features(bars.values, specs)
    columns = [c for s in specs for c in s.columns]
    assert matrix.shape == (600, len(columns))
    assert columns[:3] == ["return_1", "return_5", "return_20"]
    warm = max(lookback(s) for s in specs)
    assert bool(torch.isfinite(matrix[warm:]).all())
    assert not bool(torch.isfinite(matrix[0]).any())  # no history at all on the first bar


@settings(max_examples=30)
@given(cut=st.integers(min_value=1, max_value=398), seed=st.integers(0, 2**16))
def test_no_feature_at_a_row_depends_on_any_later_bar(cut: int, seed: int) -> None:
    bars = synthetic_bars(400, pattern=False, seed=seed)
    before = compute_features(bars.values, ALL)
    future = bars.values.clone()
    future[cut + 1 :] *= torch.linspace(0.5, 2.0, len(future) - cut - 1, dtype=future.dtype)[
        :, None
    ]
    after = compute_features(future, ALL)
    # bit-for-bit equal up to the cut, NaNs included
    assert torch.equal(before[: cut + 1].nan_to_num(7.0), after[: cut + 1].nan_to_num(7.0))
    assert not torch.equal(before[cut + 1 :].nan_to_num(7.0), after[cut + 1 :].nan_to_num(7.0))


def _ema_brute(x: np.ndarray, alpha: float) -> np.ndarray:
    """The adjusted EMA: every past value weighted by (1 - alpha)^age, normalised."""
    out = np.empty_like(x)
    for t in range(len(x)):
        w = (1 - alpha) ** np.arange(t, -1, -1)
        out[t] = (w * x[: t + 1]).sum() / w.sum()
    return out


@pytest.mark.parametrize("period", [2, 9, 26])
def test_ema_matches_the_adjusted_ema_over_all_history(period: int) -> None:
    x = synthetic_bars(700, pattern=True, seed=period).close
    got = ema(x, 2 / (period + 1), warmup=1).numpy()
    want = _ema_brute(x.numpy(), 2 / (period + 1))
    np.testing.assert_allclose(got, want, rtol=1e-7)


def test_ema_warmup_and_skipped_gaps() -> None:
    x = torch.tensor([1.0, 2.0, math.nan, 4.0, 5.0], dtype=torch.float64)
    out = ema(x, 0.5, warmup=2)
    assert math.isnan(out[0]) and math.isnan(out[2])
    # after the gap the average goes on over the known values 1, 2, 4; the gap still ages them
    assert out[3].item() == pytest.approx((0.125 * 1 + 0.25 * 2 + 1 * 4) / 1.375)


def test_rolling_mean_and_std_match_numpy() -> None:
    x = synthetic_bars(50, pattern=False, seed=4).close
    mean, std = rolling_mean(x, 7).numpy(), rolling_std(x, 7).numpy()
    windows = np.lib.stride_tricks.sliding_window_view(x.numpy(), 7)
    assert np.isnan(mean[:6]).all() and np.isnan(std[:6]).all()
    np.testing.assert_allclose(mean[6:], windows.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(std[6:], windows.std(axis=1), rtol=1e-9)


@pytest.mark.parametrize(
    ("closes", "expected"),
    [
        (np.full(60, 100.0), 50.0),  # never moved
        (np.linspace(100, 160, 60), 100.0),  # only rose
        (np.linspace(160, 100, 60), 0.0),  # only fell
    ],
)
def test_rsi_extremes(closes: np.ndarray, expected: float) -> None:
    out = rsi(torch.from_numpy(closes), 5)
    assert out[-1].item() == pytest.approx(expected)


def test_rsi_is_wilders_ratio_of_smoothed_gains_to_losses() -> None:
    close = synthetic_bars(300, pattern=True, seed=8).close.numpy()
    delta = np.diff(close)
    gain = _ema_brute(np.clip(delta, 0, None), 1 / 14)
    loss = _ema_brute(np.clip(-delta, 0, None), 1 / 14)
    want = 100 - 100 / (1 + gain / loss)
    got = rsi(torch.from_numpy(close), 14).numpy()[1:]
    np.testing.assert_allclose(got[100:], want[100:], rtol=1e-6)
    assert np.isnan(got[: 3 * 14 - 1]).all()


@given(z=st.floats(-5, 5), sets=st.integers(1, 9))
def test_fuzzy_memberships_are_triangles_that_sum_to_one(z: float, sets: int) -> None:
    memberships = fuzzify(torch.tensor([z], dtype=torch.float64), sets)[0]
    assert memberships.shape == (sets,)
    assert memberships.sum().item() == pytest.approx(1.0)
    assert bool((memberships >= 0).all())
    assert int((memberships > 0).sum()) <= 2  # a value sits between two neighbouring centres


def test_fuzzy_centres_carry_full_membership() -> None:
    centres = torch.linspace(-2, 2, 5, dtype=torch.float64)
    assert torch.equal(fuzzify(centres, 5), torch.eye(5, dtype=torch.float64))


@pytest.mark.parametrize(
    ("features", "field", "problem"),
    [
        ([{"name": "rsi", "params": {"perod": 14}}], "features[0].params.perod", "use period"),
        (
            [{"name": "atr"}, {"name": "sma_distance", "params": {"period": 2.5}}],
            "features[1].params.period",
            "whole number",
        ),
        ([{"name": "macd", "params": {"fast": 30}}], "features[0].params.fast", "below slow"),
        ([{"name": "bollinger_b", "params": {"width": 0}}], "features[0].params.width", "above 0"),
        (
            [{"name": "rsi"}, {"name": "rsi", "params": {"period": 14}}],
            "features[1]",
            "already built by features[0]",
        ),
        ([], "features", "at least one"),
    ],
)
def test_bad_feature_specs_are_refused_naming_the_field(
    features: list[dict[str, object]], field: str, problem: str
) -> None:
    import msgspec

    parsed = msgspec.convert(features, list[Feature])
    with pytest.raises(InvalidRequest) as caught:
        resolve_features(parsed)
    assert f"field '{field}'" in caught.value.message
    assert problem in caught.value.message
    assert caught.value.details["field"] == field
