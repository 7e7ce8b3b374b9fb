"""The training loop: the whole training set on the device, no framework in between.

Each epoch shuffles the training rows with a seeded generator and walks them
in index batches gathered straight from the resident matrix; the loss is
class-weighted cross-entropy, the optimiser AdamW, gradients are clipped, and
training stops early once the validation loss has not improved for
``patience`` epochs (the best epoch's weights are kept). On CUDA the forward
pass runs under ``torch.autocast`` (float16) with a ``GradScaler``; on the CPU
the run is deterministic for a seed.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import torch
from ktrdr_shared.errors import InvalidRequest, PermanentError
from ktrdr_shared.messages import Device
from torch import nn

from ktrdr_trainer.dataset import Dataset, gather

GRAD_CLIP_NORM = 1.0
WEIGHT_DECAY = 1e-2
EVAL_BATCH = 8192


@dataclass(frozen=True)
class TrainingParams:
    """The knobs of one run (from ``StartTraining``)."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int  # 0: never stop early
    seed: int


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    samples_per_s: float
    seconds: float


@dataclass
class TrainOutcome:
    """The trained model (best validation epoch's weights) and its history."""

    model: nn.Module
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool


class DeviceUnavailable(InvalidRequest):
    """The spec asks for a device this host does not have."""


class TrainingStopped(Exception):
    """Raised inside the loop at the next batch when the run must stop (cancel, shutdown)."""


def available_device(requested: Device | str = Device.AUTO) -> torch.device:
    """Return the device to train on: ``auto`` picks CUDA, then MPS, then the CPU.

    Raises:
        InvalidRequest: the requested device is not present on this host.
    """
    requested = Device(requested)
    has = {Device.CUDA: torch.cuda.is_available(), Device.MPS: _mps_available(), Device.CPU: True}
    if requested is Device.AUTO:
        return torch.device(next(d.value for d in (Device.CUDA, Device.MPS, Device.CPU) if has[d]))
    if not has[requested]:
        present = " ".join(d.value for d, ok in has.items() if ok)
        raise DeviceUnavailable(
            f"invalid StartTraining: field 'device': {requested.value} is not "
            f"available on this trainer (it has {present}); use auto or one of "
            f"those",
            details={"field": "device"},
        )
    return torch.device(requested.value)


def describe_device(device: torch.device) -> str:
    """Return a device's name for events: ``cpu``, ``mps``, ``cuda:0 (NVIDIA H200)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def seed_everything(seed: int) -> None:
    """Seed torch (every device) and NumPy."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Use deterministic algorithms on the CPU for the duration (restored after)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(device.type == "cpu" or before)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def class_weights(data: Dataset, classes: int = 3) -> torch.Tensor:
    """Return inverse-frequency weights of the training classes (0 for an absent class)."""
    counts = data.class_counts(data.train, classes).to(torch.float32)
    weights = counts.sum() / (classes * counts)
    return torch.where(counts > 0, weights, 0.0)


def make_optimiser(
    model: nn.Module, learning_rate: float, device: torch.device
) -> torch.optim.AdamW:
    """Return AdamW over the model's parameters, fused into one kernel per step.

    On CUDA the fused kernel also takes the ``GradScaler``'s inf check as a
    tensor, so a step never waits for the host; on the CPU it saves a Python
    loop over the parameters.
    """
    return torch.optim.AdamW(
        model.parameters(),
        lr=learning_rate,
        weight_decay=WEIGHT_DECAY,
        fused=device.type in ("cuda", "cpu"),
    )


@dataclass(frozen=True)
class Step:
    """One optimiser step on a batch: mixed precision on CUDA, gradients clipped."""

    model: nn.Module
    loss_fn: nn.Module
    optimiser: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp: bool

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Train on ``(x, y)``; return the batch's mean loss, detached, on the device."""
        with torch.autocast(x.device.type, dtype=torch.float16, enabled=self.amp):
            loss = self.loss_fn(self.model(x), y)
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimiser)
        nn.utils.clip_grad_norm_(self.model.parameters(), GRAD_CLIP_NORM)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        mean: torch.Tensor = loss.detach().float()
        return mean


def train_model(
    model: nn.Module,
    data: Dataset,
    params: TrainingParams,
    device: torch.device,
    on_epoch: Callable[[EpochStats], None] = lambda _: None,
    check_stop: Callable[[], None] = lambda: None,
) -> TrainOutcome:
    """Train ``model`` on ``data`` (already on ``device``).

    Args:
        model: a freshly built network.
        data: the resident dataset.
        params: epochs, batch size, learning rate, patience, seed.
        device: where ``data`` lives and the model trains.
        on_epoch: told after every epoch.
        check_stop: called before every batch; raises ``TrainingStopped`` to end the run.
    """
    model.to(device)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(data).to(device))
    optimiser = make_optimiser(model, params.learning_rate, device)
    amp = device.type == "cuda"
    step = Step(model, loss_fn, optimiser, torch.amp.GradScaler("cuda", enabled=amp), amp)
    shuffler = torch.Generator().manual_seed(params.seed)  # on the CPU: same order on any device
    history: list[EpochStats] = []
    best_loss, best_epoch, best_state = math.inf, 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, params.epochs + 1):
        started = time.perf_counter()
        order = data.train[torch.randperm(len(data.train), generator=shuffler).to(device)]
        model.train()
        total = torch.zeros((), device=device)
        for start in range(0, len(order), params.batch_size):
            check_stop()
            rows = order[start : start + params.batch_size]
            total += step(gather(data.x, rows, data.window), data.y[rows]) * len(rows)
        train_loss = float(total) / len(order)  # the one sync of the epoch
        seconds = time.perf_counter() - started
        val_loss, val_accuracy = evaluate(model, data, data.validation, loss_fn, device)
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            raise PermanentError(
                f"training diverged at epoch {epoch} (train loss {train_loss}, validation loss "
                f"{val_loss}); lower the learning rate ({params.learning_rate:g})",
                details={"field": "learning_rate", "epoch": epoch},
            )
        stats = EpochStats(
            epoch, train_loss, val_loss, val_accuracy, len(order) / max(seconds, 1e-9), seconds
        )
        history.append(stats)
        on_epoch(stats)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif params.patience and epoch - best_epoch >= params.patience:
            break
    model.load_state_dict(best_state)
    return TrainOutcome(model, history, best_epoch, stopped_early=len(history) < params.epochs)


def stopped_early_message(outcome: TrainOutcome, params: TrainingParams) -> str:
    """Return why a run ended before its last epoch, naming the epochs that ran."""
    ran, unit = len(outcome.history), "epoch" if params.patience == 1 else "epochs"
    return (
        f"stopped early after {ran} of {params.epochs} epochs (no validation improvement "
        f"for {params.patience} {unit}; best epoch {outcome.best_epoch})"
    )


def estimated_end(started: datetime, now: datetime, done: int, total: int) -> datetime | None:
    """Return when ``total`` epochs end at the pace of the ``done`` so far (None before one)."""
    if done <= 0:
        return None
    return now + (now - started) / done * max(0, total - done)


def predict(
    model: nn.Module, data: Dataset, rows: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """Return the logits of samples ``rows`` (float32, on ``device``)."""
    model.eval()
    amp = device.type == "cuda"
    outputs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for start in range(0, len(rows), EVAL_BATCH):
            batch = rows[start : start + EVAL_BATCH]
            outputs.append(model(gather(data.x, batch, data.window)).float())
    if not outputs:
        return torch.empty((0, 3), device=device)
    return torch.cat(outputs)


def evaluate(
    model: nn.Module, data: Dataset, rows: torch.Tensor, loss_fn: nn.Module, device: torch.device
) -> tuple[float, float]:
    """Return the loss and accuracy of the model on samples ``rows``."""
    logits = predict(model, data, rows, device)
    truth = data.y[rows]
    loss = float(loss_fn(logits, truth))
    accuracy = float((logits.argmax(dim=1) == truth).float().mean())
    return loss, accuracy


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
