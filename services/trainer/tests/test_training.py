"""Training learns a planted pattern, nothing from noise, and repeats itself on the CPU."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import torch
from ktrdr_shared.errors import InvalidRequest, PermanentError
from ktrdr_shared.messages import (
    Device,
    ForwardReturnLabel,
    LstmModel,
    MlpModel,
    StartTraining,
    ZigZagLabel,
)
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.pipeline import plan_job, run_training
from ktrdr_trainer.testing import synthetic_bars
from ktrdr_trainer.training import (
    DeviceUnavailable,
    TrainingStopped,
    available_device,
    describe_device,
    estimated_end,
    stopped_early_message,
)

pytestmark = pytest.mark.unit

BARS = 3000
LABEL = ForwardReturnLabel(horizon=6, up_threshold=0.003, down_threshold=0.003)


def spec(**overrides: object) -> StartTraining:
    fields: dict[str, Any] = {
        "symbols": ["SYN"],
        "timeframe": Timeframe.H1,
        "epochs": 12,
        "batch_size": 128,
        "device": Device.CPU,
        "label": LABEL,
        "model": MlpModel(hidden_sizes=[32, 16]),
        **overrides,
    }
    return StartTraining(**fields)


@pytest.mark.parametrize(
    "model",
    [MlpModel(hidden_sizes=[32, 16]), LstmModel(seq_len=12, hidden_size=16)],
    ids=["mlp", "lstm"],
)
def test_a_planted_pattern_is_learned_and_a_random_walk_is_not(model: object) -> None:
    planted = run_training(
        plan_job(spec(model=model)), [synthetic_bars(BARS, pattern=True, seed=11)]
    ).metrics
    noise = run_training(
        plan_job(spec(model=model)), [synthetic_bars(BARS, pattern=False, seed=11)]
    ).metrics
    # the cycle is visible in the past: a clear margin (10 points, over four standard errors
    # on ~430 test samples) over always answering the majority class
    assert planted["accuracy"] > planted["majority_baseline_accuracy"] + 0.10
    assert planted["macro_f1"] > 0.5
    assert planted["backtest"]["strategy"]["total_return"] > 0
    # with nothing to learn, nothing leaks: no better than the majority class, within two
    # standard errors of an accuracy measured on this many test samples
    two_se = 2 * math.sqrt(0.25 / noise["samples"])
    assert noise["accuracy"] < noise["majority_baseline_accuracy"] + two_se
    assert noise["macro_f1"] < 0.45


def test_zigzag_swings_of_a_planted_cycle_are_learned() -> None:
    # (zigzag labels are not a no-leakage probe: once a swing is confirmed, the past says
    # which way it runs, so even a random walk's zigzag labels are partly predictable)
    metrics = run_training(
        plan_job(spec(label=ZigZagLabel(threshold=0.01))),
        [synthetic_bars(BARS, pattern=True, seed=12)],
    ).metrics
    assert metrics["accuracy"] > metrics["majority_baseline_accuracy"] + 0.10


def test_the_same_seed_and_data_give_the_same_metrics_on_the_cpu() -> None:
    bars = [synthetic_bars(1500, pattern=True, seed=2)]
    lstm = LstmModel(seq_len=8, hidden_size=8)
    first = run_training(plan_job(spec(epochs=4, model=lstm)), bars)
    second = run_training(plan_job(spec(epochs=4, model=lstm)), bars)
    assert first.metrics == second.metrics
    assert first.outcome.history == second.outcome.history or all(
        (a.train_loss, a.val_loss) == (b.train_loss, b.val_loss)
        for a, b in zip(first.outcome.history, second.outcome.history, strict=True)
    )
    other = run_training(plan_job(spec(epochs=4, model=lstm, seed=43)), bars)
    assert [s.train_loss for s in other.outcome.history] != [
        s.train_loss for s in first.outcome.history
    ]


def test_early_stopping_keeps_the_best_epoch() -> None:
    plan = plan_job(spec(epochs=60, early_stopping_patience=2, learning_rate=0.01))
    run = run_training(plan, [synthetic_bars(1500, pattern=False, seed=3)])
    history = run.outcome.history
    assert run.outcome.stopped_early and len(history) < 60
    best = min(history, key=lambda s: s.val_loss)
    assert run.outcome.best_epoch == best.epoch == len(history) - 2
    assert all(s.samples_per_s > 0 for s in history)
    assert run.metrics["epochs_run"] == len(history)
    assert stopped_early_message(run.outcome, plan.params) == (
        f"stopped early after {len(history)} of 60 epochs (no validation improvement for 2 "
        f"epochs; best epoch {best.epoch})"
    )


T0 = datetime(2024, 6, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("done", "total", "eta"),
    [(0, 20, None), (1, 20, T0 + timedelta(seconds=200)), (5, 20, T0 + timedelta(seconds=40)),
     (20, 20, T0 + timedelta(seconds=10))],
)  # fmt: skip
def test_the_estimated_end_follows_the_pace_so_far(
    done: int, total: int, eta: datetime | None
) -> None:
    now = T0 + timedelta(seconds=10)
    assert estimated_end(T0, now, done, total) == eta


def test_a_stop_request_ends_the_run_at_the_next_batch() -> None:
    batches = 0

    def check_stop() -> None:
        nonlocal batches
        batches += 1
        if batches == 5:
            raise TrainingStopped("cancelled")

    with pytest.raises(TrainingStopped):
        run_training(
            plan_job(spec(epochs=50)), [synthetic_bars(1500, pattern=True)], check_stop=check_stop
        )
    assert batches == 5


def test_auto_picks_the_best_device_present_and_an_absent_one_is_refused() -> None:
    device = available_device(Device.AUTO)
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert device.type == expected
    assert describe_device(torch.device("cpu")) == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="field 'device': cuda is not available"):
            available_device(Device.CUDA)


def test_a_diverging_run_fails_with_advice() -> None:
    with pytest.raises(PermanentError, match=r"training diverged at epoch 1 .* lower the learning"):
        run_training(
            plan_job(spec(epochs=3, learning_rate=1e30)), [synthetic_bars(1500, pattern=True)]
        )


@pytest.mark.unit
def test_a_spec_over_the_memory_limit_is_refused_at_planning_naming_the_field() -> None:
    big = spec(model=MlpModel(hidden_sizes=[8192, 8192]))
    plan_job(big)  # fits the default limit
    with pytest.raises(InvalidRequest, match=r"make 'model' smaller") as raised:
        plan_job(big, max_bytes=2**28)
    assert raised.value.details["limit_bytes"] == 2**28
