"""From bars to a device-resident dataset: features, labels, a chronological split, scaling.

Symbols are stacked into one ``[rows, columns]`` matrix; a sample is a row
index (an LSTM sample is the window of rows ending there, never crossing into
another symbol). The split is by time, the same instants for every symbol:
the first ``train_fraction`` of the samples' timestamps train, the next
``validation_fraction`` validate, the rest test. A training (validation) row
whose label looks at a bar inside the next period is purged, so no label
straddles a boundary. Normalisation statistics come from training rows only
and are stored with the model, so prediction replays them exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ktrdr_shared.errors import PermanentError
from ktrdr_shared.messages import ForwardReturnLabel, ZigZagLabel

from ktrdr_trainer.data import CLOSE, Bars
from ktrdr_trainer.features import FeatureSpec, compute_features, fuzzify
from ktrdr_trainer.labels import make_labels

MIN_SPLIT_SAMPLES = 10


@dataclass(frozen=True)
class Normalisation:
    """Per-column mean and standard deviation of the raw features over the training rows."""

    columns: list[str]
    mean: list[float]
    std: list[float]


@dataclass(frozen=True)
class SplitBounds:
    """Where the periods meet: validation starts at one instant, test at another (ns)."""

    validation_start_ns: int
    test_start_ns: int


@dataclass(frozen=True)
class Dataset:
    """Everything training and evaluation read, resident on one device.

    Attributes:
        x: ``[rows, columns]`` float32 model inputs (normalised, fuzzified).
        y: ``[rows]`` class per row (-1 where unknown; never sampled).
        train / validation / test: row indices of each split's samples.
        window: rows per sample (1 for an MLP, ``seq_len`` for an LSTM).
        columns: the model's input columns.
        normalisation: the statistics used to scale ``x``.
        bounds: where the split fell.
        symbols: the symbols, in stacking order.
        symbol_of_row / ts / close: per row, on the CPU (for the backtest).
    """

    x: torch.Tensor
    y: torch.Tensor
    train: torch.Tensor
    validation: torch.Tensor
    test: torch.Tensor
    window: int
    columns: list[str]
    normalisation: Normalisation
    bounds: SplitBounds
    symbols: list[str]
    symbol_of_row: np.ndarray
    ts: np.ndarray
    close: np.ndarray

    def class_counts(self, rows: torch.Tensor, classes: int = 3) -> torch.Tensor:
        """Return how many samples of each class ``rows`` holds."""
        return torch.bincount(self.y[rows], minlength=classes)


def feature_dtype(device: torch.device) -> torch.dtype:
    """Return the dtype features are computed in (MPS has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def build_dataset(
    bars: list[Bars],
    features: list[FeatureSpec],
    label: ZigZagLabel | ForwardReturnLabel,
    *,
    window: int,
    device: torch.device,
    train_fraction: float,
    validation_fraction: float,
    normalisation: Normalisation | None = None,
    bounds: SplitBounds | None = None,
) -> Dataset:
    """Return the dataset of a run.

    Args:
        bars: one entry per symbol.
        features: the resolved feature specs.
        label: the label spec.
        window: rows per sample.
        device: where the tensors live.
        train_fraction / validation_fraction: the split by time.
        normalisation: replay these statistics instead of fitting them (a stored model).
        bounds: replay this split instead of computing it (a stored model).

    Raises:
        PermanentError: a split would hold fewer than ``MIN_SPLIT_SAMPLES`` samples.
    """
    parts = [_symbol_rows(b, features, label, window, device) for b in bars]
    raw = torch.cat([p.raw for p in parts])
    sample = torch.cat([p.sample for p in parts]).cpu().numpy()
    end_ts = np.concatenate([p.end_ts for p in parts])
    ts = np.concatenate([b.ts for b in bars])
    bounds = bounds or _split_bounds(ts[sample], train_fraction, validation_fraction, bars)
    v, t = bounds.validation_start_ns, bounds.test_start_ns
    train = np.flatnonzero(sample & (ts < v) & (end_ts < v))
    validation = np.flatnonzero(sample & (ts >= v) & (ts < t) & (end_ts < t))
    test = np.flatnonzero(sample & (ts >= t))
    _require_samples(bars, train, validation, test)
    raw_columns = [c for spec in features for c in spec.columns]
    normalisation = normalisation or fit_normalisation(raw, train, raw_columns)
    return Dataset(
        x=scale(raw, normalisation, features).to(torch.float32),
        y=torch.cat([p.classes for p in parts]),
        train=torch.from_numpy(train).to(device),
        validation=torch.from_numpy(validation).to(device),
        test=torch.from_numpy(test).to(device),
        window=window,
        columns=input_columns(features),
        normalisation=normalisation,
        bounds=bounds,
        symbols=[b.symbol for b in bars],
        symbol_of_row=np.concatenate([np.full(len(b), i) for i, b in enumerate(bars)]),
        ts=ts,
        close=np.concatenate([b.close.numpy() for b in bars]),
    )


def fit_normalisation(raw: torch.Tensor, train: np.ndarray, columns: list[str]) -> Normalisation:
    """Return mean and standard deviation of each raw column over the training rows."""
    rows = raw[torch.from_numpy(train).to(raw.device)].to(torch.float64)
    mean = rows.mean(dim=0)
    std = rows.std(dim=0, correction=0)
    std = torch.where(torch.isfinite(std) & (std > 0), std, 1.0)
    return Normalisation(columns, mean.cpu().tolist(), std.cpu().tolist())


def scale(raw: torch.Tensor, norm: Normalisation, features: list[FeatureSpec]) -> torch.Tensor:
    """Return normalised features, with fuzzy memberships in place of fuzzified columns."""
    mean = torch.tensor(norm.mean, dtype=raw.dtype, device=raw.device)
    std = torch.tensor(norm.std, dtype=raw.dtype, device=raw.device)
    z = torch.nan_to_num((raw - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
    blocks, column = [], 0
    for spec in features:
        for _ in spec.columns:
            values = z[:, column]
            blocks.append(fuzzify(values, spec.fuzzy_sets) if spec.fuzzy_sets else values[:, None])
            column += 1
    return torch.cat(blocks, dim=1)


def input_columns(features: list[FeatureSpec]) -> list[str]:
    """Return the model's input columns (a fuzzified column becomes one per set)."""
    names: list[str] = []
    for spec in features:
        for column in spec.columns:
            sets = spec.fuzzy_sets
            names += [f"{column}_fuzzy{k}" for k in range(sets)] if sets else [column]
    return names


def gather(x: torch.Tensor, rows: torch.Tensor, window: int) -> torch.Tensor:
    """Return the inputs of samples ``rows``: ``[b, columns]``, or ``[b, window, columns]``."""
    if window == 1:
        return x[rows]
    offsets = torch.arange(1 - window, 1, device=rows.device)
    return x[rows[:, None] + offsets[None, :]]


@dataclass(frozen=True)
class _SymbolRows:
    raw: torch.Tensor
    classes: torch.Tensor
    sample: torch.Tensor
    end_ts: np.ndarray


def _symbol_rows(
    bars: Bars,
    features: list[FeatureSpec],
    label: ZigZagLabel | ForwardReturnLabel,
    window: int,
    device: torch.device,
) -> _SymbolRows:
    values = bars.values.to(device=device, dtype=feature_dtype(device))
    raw = compute_features(values, features)
    labels = make_labels(values[:, CLOSE], label)
    bad = torch.cumsum((~torch.isfinite(raw).all(dim=1)).to(torch.int64), 0)
    before = torch.cat([torch.zeros(window, dtype=torch.int64, device=device), bad])[: len(bad)]
    rows = torch.arange(len(bad), device=device)
    whole_window = (bad - before == 0) & (rows >= window - 1)
    end = labels.horizon_end.clamp(max=len(bars) - 1).cpu().numpy()
    return _SymbolRows(raw, labels.classes, whole_window & (labels.classes >= 0), bars.ts[end])


def _split_bounds(
    sample_ts: np.ndarray, train_fraction: float, validation_fraction: float, bars: list[Bars]
) -> SplitBounds:
    if len(sample_ts) < 3 * MIN_SPLIT_SAMPLES:
        raise _too_little(
            bars, f"only {len(sample_ts)} rows have full feature history and a known label"
        )
    ordered = np.sort(sample_ts)
    n = len(ordered)
    return SplitBounds(
        int(ordered[int(n * train_fraction)]),
        int(ordered[min(n - 1, int(n * (train_fraction + validation_fraction)))]),
    )


def _require_samples(
    bars: list[Bars], train: np.ndarray, validation: np.ndarray, test: np.ndarray
) -> None:
    counts = {"train": len(train), "validation": len(validation), "test": len(test)}
    if min(counts.values()) < MIN_SPLIT_SAMPLES:
        shown = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise _too_little(
            bars, f"the split leaves {shown} samples (at least {MIN_SPLIT_SAMPLES} each are needed)"
        )


def _too_little(bars: list[Bars], what: str) -> PermanentError:
    names = ", ".join(f"{b.symbol} {b.timeframe.value} ({len(b)} bars)" for b in bars)
    return PermanentError(
        f"too little data to train on {names}: {what}; load a longer range "
        "or use shorter feature periods",
        details={"rows": sum(map(len, bars))},
    )
