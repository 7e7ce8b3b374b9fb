"""A model artifact: everything needed to say what a model is, and to run it again.

An artifact is four objects in the ``ktrdr_models`` object store, under the
model id (see ``object_name``):

* ``info.json`` - the ``ModelInfo`` that ``ktrdr.train.models`` lists;
* ``manifest.json`` - the full ``StartTraining`` spec, the data fingerprint
  (symbols, timeframe, range, rows, SHA-256 of the bars), input columns,
  normalisation statistics, split bounds, epoch history, test metrics, the
  device, and the versions of torch, numpy, pyarrow, python and ktrdr;
* ``weights.pt`` - the network's ``state_dict`` (``torch.load(...,
  weights_only=True)`` reads it);
* ``report.png`` - loss curves and the test-period equity curve.

No NATS here: ``repository`` moves these bytes in and out of the store.
"""

from __future__ import annotations

import io
import platform
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import Any

import msgspec
import torch
from ktrdr_shared.messages import Device, ModelInfo, StartTraining
from ktrdr_shared.types import Timeframe, symbol_key, utc_now
from torch import nn

from ktrdr_trainer.data import Bars, DataFingerprint, fingerprint
from ktrdr_trainer.dataset import Dataset, Normalisation, SplitBounds
from ktrdr_trainer.labels import CLASSES
from ktrdr_trainer.model import build_model, parameter_count
from ktrdr_trainer.pipeline import JobPlan, TrainingRun, plan_job, prepare
from ktrdr_trainer.report import render_report
from ktrdr_trainer.training import EpochStats, available_device

FORMAT = "ktrdr-model/1"
INFO, MANIFEST, WEIGHTS, REPORT = "info.json", "manifest.json", "weights.pt", "report.png"
PACKAGES = ("torch", "numpy", "pyarrow", "msgspec", "ktrdr-shared", "ktrdr-trainer")


class SplitRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Where the split fell and how many samples each part held."""

    validation_start_ns: int
    test_start_ns: int
    train: int
    validation: int
    test: int


class ModelManifest(msgspec.Struct, frozen=True, kw_only=True):
    """``manifest.json``: what the model was trained on, how, and how it scored."""

    format: str = FORMAT
    model_id: str
    job_id: str
    created: datetime
    spec: StartTraining
    device: str
    versions: dict[str, str]
    data: DataFingerprint
    window: int
    input_columns: list[str]
    normalisation: Normalisation
    split: SplitRecord
    classes: list[str]
    parameters: int
    history: list[EpochStats]
    best_epoch: int
    stopped_early: bool
    metrics: dict[str, Any]

    @property
    def bounds(self) -> SplitBounds:
        """Return the split bounds to replay."""
        return SplitBounds(self.split.validation_start_ns, self.split.test_start_ns)


@dataclass(frozen=True)
class Artifact:
    """The encoded objects of one model, ready for the object store."""

    model_id: str
    info: bytes
    manifest: bytes
    weights: bytes
    report: bytes

    def objects(self) -> dict[str, bytes]:
        """Return object name -> bytes."""
        return {
            object_name(self.model_id, INFO): self.info,
            object_name(self.model_id, MANIFEST): self.manifest,
            object_name(self.model_id, WEIGHTS): self.weights,
            object_name(self.model_id, REPORT): self.report,
        }


def object_name(model_id: str, part: str) -> str:
    """Return the object-store name of one part of a model: ``<model_id>/<part>``."""
    return f"{model_id}/{part}"


def model_id_for(spec: StartTraining, job_id: str) -> str:
    """Return a readable, unique model id: ``AAPL-1h-0123456789ab``, ``AAPL-MSFT-1h-...``."""
    keys = "-".join(symbol_key(s) for s in spec.symbols[:3])[:36]
    more = f"-{len(spec.symbols) - 3}more" if len(spec.symbols) > 3 else ""
    return f"{keys}{more}-{Timeframe(spec.timeframe).value}-{job_id[:12]}"


def package_versions() -> dict[str, str]:
    """Return the versions of python and every package a model depends on."""
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    if torch.version.cuda:
        versions["cuda"] = str(torch.version.cuda)
    return versions


def build_artifact(run: TrainingRun, job_id: str, bars: list[Bars], device_name: str) -> Artifact:
    """Encode a finished run as its four objects."""
    spec, data = msgspec.structs.replace(run.plan.spec, job_id=job_id), run.dataset
    model_id = model_id_for(spec, job_id)
    created = utc_now()
    manifest = ModelManifest(
        model_id=model_id,
        job_id=job_id,
        created=created,
        spec=spec,
        device=device_name,
        versions=package_versions(),
        data=fingerprint(bars, spec.start, spec.end),
        window=data.window,
        input_columns=data.columns,
        normalisation=data.normalisation,
        split=SplitRecord(
            validation_start_ns=data.bounds.validation_start_ns,
            test_start_ns=data.bounds.test_start_ns,
            train=len(data.train),
            validation=len(data.validation),
            test=len(data.test),
        ),
        classes=list(CLASSES),
        parameters=parameter_count(run.outcome.model),
        history=run.outcome.history,
        best_epoch=run.outcome.best_epoch,
        stopped_early=run.outcome.stopped_early,
        metrics=run.metrics,
    )
    info = model_info(manifest)
    title = (
        f"{model_id}: {', '.join(spec.symbols)} {Timeframe(spec.timeframe).value}, {device_name}"
    )
    return Artifact(
        model_id=model_id,
        info=msgspec.json.encode(info),
        manifest=msgspec.json.encode(manifest),
        weights=encode_weights(run.outcome.model),
        report=render_report(title, run.outcome.history, run.outcome.best_epoch, run.curve),
    )


def model_info(manifest: ModelManifest, size_bytes: int = 0) -> ModelInfo:
    """Return the listing entry of a model."""
    return ModelInfo(
        model_id=manifest.model_id,
        job_id=manifest.job_id,
        created=manifest.created,
        symbols=manifest.data.symbols,
        timeframe=manifest.spec.timeframe,
        device=manifest.device,
        metrics=manifest.metrics,
        size_bytes=size_bytes,
        data_sha256=manifest.data.sha256,
        data_rows=manifest.data.rows,
    )


def encode_weights(model: nn.Module) -> bytes:
    """Return the model's weights as ``torch.save`` bytes (tensors moved to the CPU)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def decode_manifest(data: bytes) -> ModelManifest:
    """Return a stored manifest."""
    return msgspec.json.decode(data, type=ModelManifest)


@dataclass(frozen=True)
class LoadedModel:
    """A stored model, ready to predict on bars the way it was trained."""

    manifest: ModelManifest
    network: nn.Module
    plan: JobPlan

    def dataset(self, bars: list[Bars]) -> Dataset:
        """Return the dataset of ``bars`` scaled and split exactly as at training time."""
        return prepare(self.plan, bars, self.manifest.normalisation, self.manifest.bounds)


def load_model(
    manifest: ModelManifest, weights: bytes, device: torch.device | None = None
) -> LoadedModel:
    """Rebuild a stored model on ``device`` (default: the best one present)."""
    plan = plan_job(manifest.spec, device or available_device(Device.AUTO))
    network = build_model(manifest.spec.model, len(manifest.input_columns))
    state = torch.load(io.BytesIO(weights), map_location=plan.device, weights_only=True)
    network.load_state_dict(state)
    network.to(plan.device).eval()
    return LoadedModel(manifest, network, plan)
