"""Causal features from bars, computed as tensors on the target device.

Every feature at row ``t`` depends on bars ``0..t`` only; a row without enough
history is NaN (the dataset drops it). Moving averages are convolutions and
rolling windows are ``unfold`` views, so nothing loops over rows in Python.
Exponential averages are *adjusted* EMAs over a window long enough that older
weights fall below 1e-8, which keeps them exact to that tolerance and strictly
causal. Fuzzy memberships (triangular sets, as the old neuro-fuzzy models
used) are applied to normalised values by the dataset, see ``fuzzify``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import Feature, FeatureName

from ktrdr_trainer.data import CLOSE, HIGH, LOW, VOLUME

# Every parameter a feature takes, with its default. ``returns`` without a
# horizon builds the default horizons; with one, that horizon alone.
DEFAULT_PARAMS: dict[FeatureName, dict[str, float]] = {
    FeatureName.RETURNS: {"horizon": 0},
    FeatureName.SMA_DISTANCE: {"period": 20},
    FeatureName.EMA_DISTANCE: {"period": 20},
    FeatureName.RSI: {"period": 14},
    FeatureName.MACD: {"fast": 12, "slow": 26, "signal": 9},
    FeatureName.ATR: {"period": 14},
    FeatureName.BOLLINGER_B: {"period": 20, "width": 2.0},
    FeatureName.VOLUME_Z: {"period": 20},
}
DEFAULT_RETURN_HORIZONS = (1, 5, 20)
_FLOAT_PARAMS = {"width"}
MAX_PERIOD = 1_000  # EMA kernels grow with the period; keep a convolution cheap
EMA_TOLERANCE = 1e-8


@dataclass(frozen=True)
class FeatureSpec:
    """One requested feature with its parameters resolved and checked."""

    name: FeatureName
    params: dict[str, float]
    fuzzy_sets: int

    @property
    def columns(self) -> list[str]:
        """Return the names of the columns this feature produces."""
        p = self.params
        match self.name:
            case FeatureName.RETURNS:
                return [f"return_{h}" for h in _horizons(p)]
            case FeatureName.MACD:
                tag = f"{int(p['fast'])}_{int(p['slow'])}_{int(p['signal'])}"
                return [f"macd_{tag}", f"macd_hist_{tag}"]
            case FeatureName.BOLLINGER_B:
                return [f"bollinger_b_{int(p['period'])}_{p['width']:g}"]
            case _:
                return [f"{self.name.value}_{int(p['period'])}"]


def resolve_features(features: list[Feature]) -> list[FeatureSpec]:
    """Check the requested features and fill in default parameters.

    Raises:
        InvalidRequest: naming the field (``features[2].params.perod``) and the fix.
    """
    if not features:
        raise _invalid("features", "give at least one feature")
    specs: list[FeatureSpec] = []
    seen: dict[str, int] = {}
    for i, feature in enumerate(features):
        spec = _resolve(feature, f"features[{i}]")
        for column in spec.columns:
            if column in seen:
                raise _invalid(
                    f"features[{i}]",
                    f"column {column!r} is already built by "
                    f"features[{seen[column]}]; drop one of them",
                )
            seen[column] = i
        specs.append(spec)
    return specs


def lookback(spec: FeatureSpec) -> int:
    """Return how many bars of history a feature needs before its first valid row."""
    p = spec.params
    match spec.name:
        case FeatureName.RETURNS:
            return max(_horizons(p))
        case FeatureName.MACD:
            return 3 * int(p["slow"]) + 3 * int(p["signal"])
        case FeatureName.EMA_DISTANCE | FeatureName.RSI | FeatureName.ATR:
            return 3 * int(p["period"])
        case _:
            return int(p["period"])


def compute_features(values: torch.Tensor, specs: list[FeatureSpec]) -> torch.Tensor:
    """Return the ``[n, columns]`` feature matrix of one symbol's ``[n, 5]`` OHLCV tensor."""
    parts = [_compute(values, spec) for spec in specs]
    return torch.cat([p if p.dim() == 2 else p[:, None] for p in parts], dim=1)


def fuzzify(z: torch.Tensor, sets: int, span: float = 2.0) -> torch.Tensor:
    """Return ``sets`` triangular memberships of each value of ``z`` (``[n]`` -> ``[n, sets]``).

    Centres are spread evenly over ``[-span, span]`` (normalised units); each
    triangle reaches zero at its neighbours' centres, and the outer sets are
    shoulders (full membership beyond the outermost centres), so memberships
    of a value always sum to 1.
    """
    if sets == 1:
        return torch.ones_like(z)[:, None]
    # A value's place between the centres: the lower neighbour takes 1 - frac, the upper frac.
    # (Distances to every centre, as before, left rounding crumbs on both neighbours of a value
    # sitting on a centre: three memberships above zero.)
    position = (z.clamp(-span, span) + span) * ((sets - 1) / (2 * span))
    lower = position.floor().clamp(0, sets - 2)
    frac = (position - lower)[:, None]
    below = lower.long()[:, None]
    out = torch.zeros((len(z), sets), dtype=z.dtype, device=z.device)
    out.scatter_(1, below, 1 - frac)
    return out.scatter_add(1, below + 1, frac)


# -- the features ----------------------------------------------------------------------


def log_returns(close: torch.Tensor, horizon: int) -> torch.Tensor:
    """Return ``log(close[t] / close[t - horizon])``."""
    out = torch.full_like(close, math.nan)
    if horizon < len(close):
        out[horizon:] = torch.log(close[horizon:] / close[:-horizon])
    return out


def rolling_mean(x: torch.Tensor, period: int) -> torch.Tensor:
    """Return the mean of the last ``period`` values (NaN before)."""
    return _rolling(x, period, lambda w: w.mean(dim=1))


def rolling_std(x: torch.Tensor, period: int) -> torch.Tensor:
    """Return the population standard deviation of the last ``period`` values (NaN before)."""
    return _rolling(x, period, lambda w: w.std(dim=1, correction=0))


def ema(x: torch.Tensor, alpha: float, warmup: int) -> torch.Tensor:
    """Return the adjusted exponential moving average of ``x`` (NaN inputs are skipped).

    Args:
        x: ``[n]`` values, NaN where unknown.
        alpha: smoothing factor in ``(0, 1]``.
        warmup: the first ``warmup`` known values give NaN (too little history).
    """
    known = torch.isfinite(x)
    length = min(
        len(x), max(1, math.ceil(math.log(EMA_TOLERANCE) / math.log1p(-alpha)) if alpha < 1 else 1)
    )
    weights = (1 - alpha) ** torch.arange(length - 1, -1, -1, dtype=x.dtype, device=x.device)
    numerator = _causal_conv(torch.where(known, x, 0), weights)
    denominator = _causal_conv(known.to(x.dtype), weights)
    out = numerator / denominator
    enough = torch.cumsum(known.to(torch.int64), 0) >= warmup
    return torch.where(enough & known, out, math.nan)


def rsi(close: torch.Tensor, period: int) -> torch.Tensor:
    """Return Wilder's relative strength index (0..100; 50 when the price never moved)."""
    delta = _diff(close)
    gain = ema(delta.clamp(min=0), 1 / period, 3 * period)
    loss = ema((-delta).clamp(min=0), 1 / period, 3 * period)
    out = 100 - 100 / (1 + gain / loss)
    out = torch.where(loss == 0, torch.where(gain > 0, 100.0, 50.0), out)
    return torch.where(torch.isfinite(gain) & torch.isfinite(loss), out, math.nan)


def macd(close: torch.Tensor, fast: int, slow: int, signal: int) -> torch.Tensor:
    """Return the MACD line and histogram, both divided by the close (``[n, 2]``)."""
    line = (ema(close, 2 / (fast + 1), 3 * slow) - ema(close, 2 / (slow + 1), 3 * slow)) / close
    hist = line - ema(line, 2 / (signal + 1), 3 * signal)
    return torch.stack([line, hist], dim=1)


def atr(values: torch.Tensor, period: int) -> torch.Tensor:
    """Return Wilder's average true range divided by the close."""
    high, low, close = values[:, HIGH], values[:, LOW], values[:, CLOSE]
    previous = torch.cat([close[:1] * math.nan, close[:-1]])
    ranges = torch.stack([high - low, (high - previous).abs(), (low - previous).abs()], dim=1)
    true_range = torch.where(torch.isfinite(previous), ranges.max(dim=1).values, high - low)
    return ema(true_range, 1 / period, 3 * period) / close


def bollinger_b(close: torch.Tensor, period: int, width: float) -> torch.Tensor:
    """Return Bollinger %B: 0 at the lower band, 1 at the upper (0.5 when the bands close)."""
    mean, std = rolling_mean(close, period), rolling_std(close, period)
    out = (close - (mean - width * std)) / (2 * width * std)
    return torch.where(std > 0, out, torch.where(torch.isfinite(std), 0.5, math.nan))


def volume_z(volume: torch.Tensor, period: int) -> torch.Tensor:
    """Return the z-score of the volume against its last ``period`` bars (0 when flat)."""
    mean, std = rolling_mean(volume, period), rolling_std(volume, period)
    return torch.where(
        std > 0, (volume - mean) / std, torch.where(torch.isfinite(std), 0.0, math.nan)
    )


# -- helpers ---------------------------------------------------------------------------


def _compute(values: torch.Tensor, spec: FeatureSpec) -> torch.Tensor:
    close, p = values[:, CLOSE], spec.params
    match spec.name:
        case FeatureName.RETURNS:
            return torch.stack([log_returns(close, h) for h in _horizons(p)], dim=1)
        case FeatureName.SMA_DISTANCE:
            return close / rolling_mean(close, int(p["period"])) - 1
        case FeatureName.EMA_DISTANCE:
            period = int(p["period"])
            return close / ema(close, 2 / (period + 1), 3 * period) - 1
        case FeatureName.RSI:
            return rsi(close, int(p["period"]))
        case FeatureName.MACD:
            return macd(close, int(p["fast"]), int(p["slow"]), int(p["signal"]))
        case FeatureName.ATR:
            return atr(values, int(p["period"]))
        case FeatureName.BOLLINGER_B:
            return bollinger_b(close, int(p["period"]), p["width"])
        case FeatureName.VOLUME_Z:
            return volume_z(values[:, VOLUME], int(p["period"]))
    raise AssertionError(f"unhandled feature {spec.name}")


def _resolve(feature: Feature, field: str) -> FeatureSpec:
    name = FeatureName(feature.name)
    defaults = DEFAULT_PARAMS[name]
    unknown = sorted(set(feature.params) - set(defaults))
    if unknown:
        raise _invalid(
            f"{field}.params.{unknown[0]}",
            f"unknown parameter for {name.value}; use {' '.join(sorted(defaults))}",
        )
    params = {**defaults, **feature.params}
    for key, value in feature.params.items():
        where = f"{field}.params.{key}"
        if key in _FLOAT_PARAMS:
            if not (0 < value < 100):
                raise _invalid(where, f"must be above 0 and below 100, got {value:g}")
        elif value != int(value) or not (1 <= value <= MAX_PERIOD):
            raise _invalid(
                where, f"must be a whole number of bars from 1 to {MAX_PERIOD}, got {value:g}"
            )
    if name is FeatureName.MACD and params["fast"] >= params["slow"]:
        raise _invalid(
            f"{field}.params.fast",
            f"must be below slow ({params['slow']:g}), got {params['fast']:g}",
        )
    return FeatureSpec(name, params, feature.fuzzy_sets)


def _horizons(params: dict[str, float]) -> tuple[int, ...]:
    return (int(params["horizon"]),) if params["horizon"] else DEFAULT_RETURN_HORIZONS


def _rolling(
    x: torch.Tensor, period: int, reduce: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    out = torch.full_like(x, math.nan)
    if period <= len(x):
        out[period - 1 :] = reduce(x.unfold(0, period, 1))
    return out


def _causal_conv(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Return ``sum_k weights[k] * x[t - len + 1 + k]`` for every ``t`` (zeros before the start)."""
    padded = F.pad(x[None, None, :], (len(weights) - 1, 0))
    return F.conv1d(padded, weights[None, None, :])[0, 0]


def _diff(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x[:1] * math.nan, x[1:] - x[:-1]])


def _invalid(field: str, problem: str) -> InvalidRequest:
    return InvalidRequest(
        f"invalid StartTraining: field '{field}': {problem}",
        details={"field": field, "problem": problem},
    )
