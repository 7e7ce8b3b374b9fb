"""Trainer throughput: the device-resident loop against a per-sample Dataset/DataLoader.

Both train the same network (same initial weights, loss, optimiser, clipping,
mixed precision on CUDA) on the same rows, on the same device, with the same
batch size. The resident loop is ``ktrdr_trainer.training.train_model``: the
whole training set lives on the device and a batch is an index gather. The
baseline is the usual PyTorch recipe: a ``torch.utils.data.Dataset`` whose
``__getitem__`` returns one sample, a shuffling ``DataLoader`` collating
them, and each batch copied to the device. Figures are training samples per
second (forward, backward, step), the median of the measured epochs.

Standalone: ``python bench/bench_trainer.py [--device auto|cpu|cuda|mps] [--quick]``
prints one JSON object per result; ``bench/run.py`` calls ``run(quick)``,
which picks CUDA when present (then MPS, then the CPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch
from ktrdr_shared.messages import Device, ForwardReturnLabel, LstmModel, MlpModel, StartTraining
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.dataset import Dataset
from ktrdr_trainer.model import build_model
from ktrdr_trainer.pipeline import plan_job, prepare
from ktrdr_trainer.testing import synthetic_bars
from ktrdr_trainer.training import (
    Step,
    TrainingParams,
    available_device,
    class_weights,
    describe_device,
    make_optimiser,
    train_model,
)
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

SEED = 7


class RowSamples(TorchDataset[tuple[torch.Tensor, torch.Tensor]]):
    """The baseline's data: one sample per ``__getitem__``, from host memory."""

    def __init__(self, data: Dataset) -> None:
        self.x = data.x.cpu()
        self.y = data.y.cpu()
        self.rows = data.train.cpu()
        self.window = data.window

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.rows[i])
        x = self.x[row] if self.window == 1 else self.x[row - self.window + 1 : row + 1]
        return x, self.y[row]


def dataloader_epochs(
    model: nn.Module, data: Dataset, device: torch.device, epochs: int, batch: int, lr: float = 1e-3
) -> list[float]:
    """Train like the resident loop, fed by a DataLoader; return samples/s of each epoch."""
    model.to(device)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(data).to(device))
    optimiser = make_optimiser(model, lr, device)
    amp = device.type == "cuda"
    step = Step(model, loss_fn, optimiser, torch.amp.GradScaler("cuda", enabled=amp), amp)
    loader = DataLoader(
        RowSamples(data),
        batch_size=batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(SEED),
        pin_memory=device.type == "cuda",
    )
    rates = []
    for _ in range(epochs):
        model.train()
        started, seen = time.perf_counter(), 0
        total = torch.zeros((), device=device)
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            total += step(x, y) * len(y)
            seen += len(y)
        float(total)  # the same one sync per epoch as the resident loop
        rates.append(seen / (time.perf_counter() - started))
    return rates


def measure(
    model_spec: MlpModel | LstmModel, bars: int, epochs: int, device: torch.device, batch: int = 256
) -> dict[str, Any]:
    """Return resident vs DataLoader samples/s for one network on one device."""
    spec = StartTraining(
        symbols=["SYN"],
        timeframe=Timeframe.H1,
        model=model_spec,
        label=ForwardReturnLabel(horizon=6),
        batch_size=batch,
        train_fraction=0.8,
        validation_fraction=0.1,
        device=Device.CPU,
    )
    plan = plan_job(spec, device)
    data = prepare(plan, [synthetic_bars(bars, pattern=True, seed=SEED)])
    one_epoch = TrainingParams(1, batch, 1e-3, patience=0, seed=SEED)
    torch.manual_seed(SEED)
    resident_model = build_model(model_spec, len(data.columns))
    torch.manual_seed(SEED)
    baseline_model = build_model(model_spec, len(data.columns))
    train_model(resident_model, data, one_epoch, device)  # warm-up: lazy inits, caches
    dataloader_epochs(baseline_model, data, device, 1, batch)
    # Alternate the two, epoch by epoch, so that a shared machine's load falls on both alike.
    resident, baseline = [], []
    for _ in range(epochs):
        outcome = train_model(resident_model, data, one_epoch, device)
        resident.append(outcome.history[0].samples_per_s)
        baseline += dataloader_epochs(baseline_model, data, device, 1, batch)
    resident_rate, baseline_rate = statistics.median(resident), statistics.median(baseline)
    kind = "lstm" if isinstance(model_spec, LstmModel) else "mlp"
    return {
        "name": f"trainer.{kind}_b{batch}_samples_per_s_{device.type}",
        "value": resident_rate,
        "baseline": baseline_rate,
        "ratio": resident_rate / baseline_rate,
        "unit": "samples/s",
        "baseline_name": "per-sample torch Dataset + shuffling DataLoader, batches copied to the "
        "device",
        "target": ">= 10",
        "device": describe_device(device),
        "paired_ratios": [round(r / b, 2) for r, b in zip(resident, baseline, strict=True)],
        "train_samples": len(data.train),
        "batch_size": batch,
        "epochs_measured": epochs,
        "torch_threads": torch.get_num_threads(),
    }


def run(quick: bool = False, device: str = "auto") -> list[dict[str, Any]]:
    """Measure an MLP (small and large batches) and an LSTM on the best device present."""
    target = available_device(Device(device))
    gpu = target.type != "cpu"
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True
    bars, epochs = (6_000, 3) if quick else (60_000, 5)
    bars *= 10 if gpu else 1  # enough rows per epoch for a GPU to reach its pace
    return [
        measure(MlpModel(), bars, epochs, target, batch=256),
        measure(MlpModel(), bars, epochs, target, batch=4096),
        measure(
            LstmModel(seq_len=32, hidden_size=64),
            bars if gpu else bars // 4,
            epochs,
            target,
            batch=256,
        ),
    ]


def main() -> int:
    """Run standalone and print one JSON object per result."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto", choices=[d.value for d in Device])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for result in run(args.quick, args.device):
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
