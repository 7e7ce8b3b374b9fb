"""One training run from bars to an evaluated model (no NATS: the handler feeds and reports).

``plan_job`` checks a ``StartTraining`` beyond what its schema can (feature
parameters, the device); ``run_training`` builds the dataset, trains and
evaluates on the test split; ``evaluate_run`` is also what a stored model's
predictions are checked with, so reported and replayed metrics come from one
function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ktrdr_shared.messages import StartTraining
from ktrdr_shared.training_size import MAX_TRAINING_BYTES, check_training_size
from torch import nn

from ktrdr_trainer.backtest import Curve, backtest, equity_points
from ktrdr_trainer.data import Bars
from ktrdr_trainer.dataset import (
    Dataset,
    Normalisation,
    SplitBounds,
    build_dataset,
    input_columns,
)
from ktrdr_trainer.features import FeatureSpec, resolve_features
from ktrdr_trainer.labels import POSITIONS
from ktrdr_trainer.metrics import classification_metrics
from ktrdr_trainer.model import build_model, window_length
from ktrdr_trainer.training import (
    EpochStats,
    TrainingParams,
    TrainOutcome,
    available_device,
    deterministic,
    predict,
    seed_everything,
    train_model,
)


@dataclass(frozen=True)
class JobPlan:
    """A checked ``StartTraining`` with its features resolved and its device chosen."""

    spec: StartTraining
    features: list[FeatureSpec]
    device: torch.device

    @property
    def window(self) -> int:
        """Return the rows per sample of the model."""
        return window_length(self.spec.model)

    @property
    def params(self) -> TrainingParams:
        """Return the loop's knobs."""
        s = self.spec
        return TrainingParams(
            s.epochs, s.batch_size, s.learning_rate, s.early_stopping_patience, s.seed
        )


@dataclass
class TrainingRun:
    """A finished run: the model, the data it saw, its history and test metrics."""

    plan: JobPlan
    dataset: Dataset
    outcome: TrainOutcome
    metrics: dict[str, Any]
    curve: Curve


def plan_job(
    spec: StartTraining,
    device: torch.device | None = None,
    max_bytes: int = MAX_TRAINING_BYTES,
) -> JobPlan:
    """Check a training spec and choose its device (``device`` overrides the spec's).

    Raises:
        InvalidRequest: a feature parameter is wrong, the device is absent, or the run would
            need more than ``max_bytes`` (see ``ktrdr_shared.training_size``), naming the field.
    """
    features = resolve_features(spec.features)
    check_training_size(spec, max_bytes, inputs=len(input_columns(features)))
    return JobPlan(spec, features, device or available_device(spec.device))


def prepare(
    plan: JobPlan,
    bars: list[Bars],
    normalisation: Normalisation | None = None,
    bounds: SplitBounds | None = None,
) -> Dataset:
    """Return the run's dataset on the plan's device (replaying stored statistics if given)."""
    s = plan.spec
    return build_dataset(
        bars,
        plan.features,
        s.label,
        window=plan.window,
        device=plan.device,
        train_fraction=s.train_fraction,
        validation_fraction=s.validation_fraction,
        normalisation=normalisation,
        bounds=bounds,
    )


def run_training(
    plan: JobPlan,
    bars: list[Bars],
    on_epoch: Callable[[EpochStats], None] = lambda _: None,
    check_stop: Callable[[], None] = lambda: None,
    on_prepared: Callable[[Dataset], None] = lambda _: None,
) -> TrainingRun:
    """Build the dataset, train, and evaluate on the test split (deterministic on the CPU)."""
    with deterministic(plan.device):
        seed_everything(plan.spec.seed)
        data = prepare(plan, bars)
        on_prepared(data)
        model = build_model(plan.spec.model, len(data.columns))
        outcome = train_model(model, data, plan.params, plan.device, on_epoch, check_stop)
        metrics, result = evaluate_run(outcome.model, data, plan.device)
    metrics |= {
        "best_epoch": outcome.best_epoch,
        "epochs_run": len(outcome.history),
        "stopped_early": outcome.stopped_early,
        "split_samples": {
            "train": len(data.train),
            "validation": len(data.validation),
            "test": len(data.test),
        },
    }
    return TrainingRun(plan, data, outcome, metrics, result)


def evaluate_run(
    model: nn.Module, data: Dataset, device: torch.device
) -> tuple[dict[str, Any], Curve]:
    """Return the test split's classification metrics and backtest, and the equity curve."""
    predicted = predict(model, data, data.test, device).argmax(dim=1).cpu().numpy()
    truth = data.y[data.test].cpu().numpy()
    majority = int(data.class_counts(data.train).argmax())
    metrics = classification_metrics(truth, predicted, majority)
    rows = data.test.cpu().numpy()
    summary, result = backtest(
        rows, np.asarray(POSITIONS)[predicted], data.close, data.ts, data.symbol_of_row
    )
    metrics["backtest"] = summary
    metrics["equity_curve"] = equity_points(result)
    return metrics, result
