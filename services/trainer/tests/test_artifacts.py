"""Artifacts: a stored model says what it was trained on and replays its own test metrics."""

from __future__ import annotations

import io

import msgspec
import pytest
import torch
from ktrdr_shared.messages import Device, LstmModel, ModelInfo, StartTraining
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.artifacts import (
    build_artifact,
    decode_manifest,
    load_model,
    model_id_for,
    package_versions,
)
from ktrdr_trainer.data import fingerprint
from ktrdr_trainer.pipeline import evaluate_run, plan_job, run_training
from ktrdr_trainer.testing import synthetic_bars

pytestmark = pytest.mark.unit

JOB = "0123456789abcdef0123456789abcdef"


def test_a_model_round_trips_and_replays_its_metrics() -> None:
    bars = [synthetic_bars(1500, pattern=True, seed=7, symbol="EURUSD")]
    spec = StartTraining(
        symbols=["EURUSD"],
        timeframe=Timeframe.H1,
        epochs=3,
        device=Device.CPU,
        model=LstmModel(seq_len=8, hidden_size=8),
    )
    run = run_training(plan_job(spec), bars)
    artifact = build_artifact(run, JOB, bars, "cpu")

    assert artifact.model_id == "EURUSD-1h-0123456789ab"
    assert set(artifact.objects()) == {
        f"EURUSD-1h-0123456789ab/{p}"
        for p in ("info.json", "manifest.json", "weights.pt", "report.png")
    }
    assert artifact.report.startswith(b"\x89PNG\r\n\x1a\n")
    manifest = decode_manifest(artifact.manifest)
    assert manifest.spec == msgspec.structs.replace(spec, job_id=JOB)
    assert manifest.data == fingerprint(bars, None, None)
    assert manifest.device == "cpu"
    assert {"python", "torch", "numpy", "pyarrow", "ktrdr-shared", "ktrdr-trainer"} <= set(
        manifest.versions
    )
    assert manifest.versions["torch"] == torch.__version__
    assert manifest.normalisation == run.dataset.normalisation
    assert manifest.split.test == len(run.dataset.test)
    assert len(manifest.history) == 3
    info = msgspec.json.decode(artifact.info, type=ModelInfo)
    assert (info.model_id, info.job_id, info.symbols) == (artifact.model_id, JOB, ["EURUSD"])
    assert info.metrics["accuracy"] == run.metrics["accuracy"]
    assert (info.data_sha256, info.data_rows) == (manifest.data.sha256, manifest.data.rows)
    assert len(info.metrics["equity_curve"]["ts"]) == len(info.metrics["equity_curve"]["strategy"])

    loaded = load_model(manifest, artifact.weights, torch.device("cpu"))
    data = loaded.dataset(bars)
    replayed, _ = evaluate_run(loaded.network, data, loaded.plan.device)
    for key, value in replayed.items():
        assert manifest.metrics[key] == value, key


def test_weights_load_without_pickled_code() -> None:
    bars = [synthetic_bars(800, pattern=True, seed=1)]
    spec = StartTraining(symbols=["SYN"], timeframe=Timeframe.H1, epochs=1, device=Device.CPU)
    artifact = build_artifact(run_training(plan_job(spec), bars), JOB, bars, "cpu")
    state = torch.load(io.BytesIO(artifact.weights), weights_only=True)
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values())


def test_model_ids_are_readable_and_valid() -> None:
    many = StartTraining(symbols=["BRK B", "eur.usd", "ES", "NQ", "SPY"], timeframe=Timeframe.M5)
    assert model_id_for(many, JOB) == "BRK_B-EUR_USD-ES-2more-5m-0123456789ab"
    assert package_versions()["python"].count(".") == 2
