"""The dataset: chronological split with purged label overlap; scaling fitted on train only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from ktrdr_shared.errors import PermanentError
from ktrdr_shared.messages import Feature, FeatureName, ForwardReturnLabel, ZigZagLabel
from ktrdr_shared.messages.training import default_features
from ktrdr_trainer.data import Bars
from ktrdr_trainer.dataset import Dataset, build_dataset, gather
from ktrdr_trainer.features import compute_features, resolve_features
from ktrdr_trainer.labels import make_labels
from ktrdr_trainer.testing import HOUR_NS, synthetic_bars

pytestmark = pytest.mark.unit

CPU = torch.device("cpu")
FEATURES = resolve_features(default_features())
LABEL = ForwardReturnLabel(horizon=6)
Label = ForwardReturnLabel | ZigZagLabel


def build(bars: list[Bars], window: int = 1, label: Label = LABEL, **kw: Any) -> Dataset:
    return build_dataset(
        bars,
        FEATURES,
        label,
        window=window,
        device=CPU,
        train_fraction=0.7,
        validation_fraction=0.15,
        **kw,
    )


@pytest.mark.parametrize("label", [ForwardReturnLabel(horizon=12), ZigZagLabel(threshold=0.01)])
def test_split_is_chronological_and_no_label_straddles_a_boundary(label: Label) -> None:
    bars = synthetic_bars(2000, pattern=True, seed=2)
    data = build([bars], label=label)
    ts = data.ts
    train, val, test = (ts[r.numpy()] for r in (data.train, data.validation, data.test))
    assert train.max() < data.bounds.validation_start_ns <= val.min()
    assert val.max() < data.bounds.test_start_ns <= test.min()
    assert 0.6 < len(train) / (len(train) + len(val) + len(test)) < 0.72
    # every train label's last look is before validation starts; likewise validation -> test
    labels = make_labels(bars.close, label)
    last_look = ts[labels.horizon_end.clamp(max=len(ts) - 1).numpy()]
    assert last_look[data.train.numpy()].max() < data.bounds.validation_start_ns
    assert last_look[data.validation.numpy()].max() < data.bounds.test_start_ns
    # and the purge is what makes it so: some samples were dropped at each boundary
    purged = ts[(labels.classes >= 0).numpy() & (ts < data.bounds.validation_start_ns)]
    assert len(purged) > len(train)


def test_normalisation_comes_from_the_train_split_only() -> None:
    bars = synthetic_bars(2000, pattern=True, seed=3)
    data = build([bars])
    raw = compute_features(bars.values, FEATURES)[data.train]
    np.testing.assert_allclose(data.normalisation.mean, raw.mean(dim=0).numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        data.normalisation.std, raw.std(dim=0, correction=0).numpy(), rtol=1e-9
    )
    assert data.normalisation.columns == [c for s in FEATURES for c in s.columns]
    # train rows come out standardised; later periods do not have to
    assert torch.allclose(data.x[data.train].mean(dim=0), torch.zeros(len(data.columns)), atol=1e-5)

    # wild values after the training period change neither the statistics nor train inputs
    changed = bars.values.clone()
    changed[int(data.validation[0]) :, 3] *= 3.0
    changed[int(data.validation[0]) :, 4] *= 50.0
    other = build([Bars(bars.symbol, bars.timeframe, bars.ts, changed)], bounds=data.bounds)
    assert other.normalisation == data.normalisation
    assert torch.equal(other.x[data.train], data.x[data.train])
    assert not torch.equal(other.x[data.test], data.x[data.test])


def test_replaying_stored_statistics_and_bounds_rebuilds_the_same_inputs() -> None:
    bars = synthetic_bars(1500, pattern=False, seed=4)
    data = build([bars])
    again = build([bars], normalisation=data.normalisation, bounds=data.bounds)
    assert torch.equal(again.x, data.x)
    assert torch.equal(again.test, data.test)


def test_symbols_share_the_split_instants_and_windows_stay_inside_a_symbol() -> None:
    a = synthetic_bars(900, pattern=True, seed=5, symbol="AAA")
    b = synthetic_bars(700, pattern=True, seed=6, symbol="BBB")
    b = Bars("BBB", b.timeframe, b.ts + 200 * HOUR_NS, b.values)  # starts later, ends later
    data = build([a, b], window=16)
    rows = torch.cat([data.train, data.validation, data.test])
    symbol = torch.from_numpy(data.symbol_of_row)
    first_row_of_window = rows - 15
    assert bool((symbol[first_row_of_window] == symbol[rows]).all())
    assert set(data.symbol_of_row[data.test.numpy()]) == {0, 1}
    window = gather(data.x, data.test[:4], 16)
    assert window.shape == (4, 16, len(data.columns))
    assert torch.equal(window[:, -1], data.x[data.test[:4]])


def test_fuzzy_sets_replace_a_column_with_its_memberships() -> None:
    features = resolve_features(
        [Feature(name=FeatureName.RETURNS), Feature(name=FeatureName.RSI, fuzzy_sets=3)]
    )
    data = build_dataset(
        [synthetic_bars(800, pattern=True, seed=1)],
        features,
        LABEL,
        window=1,
        device=CPU,
        train_fraction=0.7,
        validation_fraction=0.15,
    )
    assert data.columns == [
        "return_1",
        "return_5",
        "return_20",
        "rsi_14_fuzzy0",
        "rsi_14_fuzzy1",
        "rsi_14_fuzzy2",
    ]
    memberships = data.x[data.train][:, 3:]
    assert torch.allclose(memberships.sum(dim=1), torch.ones(len(data.train)))


def test_too_few_bars_is_a_clear_permanent_error() -> None:
    with pytest.raises(PermanentError, match=r"too little data to train on SYN 1h \(60 bars\)"):
        build([synthetic_bars(60, pattern=True)])
