"""End to end: the simulator's bars loaded through a real LoadData, a model trained on them,
stored in the object store, loaded back, and its test predictions reproduce the reported metrics.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable

import msgspec
import numpy as np
import pytest
import torch
from ktrdr_ib_connector.testing import NOW
from ktrdr_ib_sim import expected_bars
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import (
    Device,
    JobCompleted,
    LoadResult,
    LstmModel,
    QueryBars,
    StartTraining,
    TrainingResult,
    ZigZagLabel,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.artifacts import load_model
from ktrdr_trainer.data import fetch_bars, fingerprint
from ktrdr_trainer.pipeline import evaluate_run
from ktrdr_trainer.repository import ModelRepository
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

Starter = Callable[..., Awaitable[ServiceApp]]
DONE = {"completed", "failed", "cancelled"}
START = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


async def test_simulator_bars_train_a_stored_model_that_replays_its_metrics(
    connector: ServiceApp,
    start_store: Starter,
    start_trainer: Starter,
    nc: NATS,
    js: JetStreamContext,
) -> None:
    await start_store()
    await start_trainer()
    client = KtrdrClient(nc)

    load_id = await client.load_data("EURUSD", "1h", start=START)
    loaded = await wait_for_job_event(js, load_id, DONE, timeout_s=120)
    assert isinstance(loaded, JobCompleted), loaded
    assert isinstance(loaded.result, LoadResult)
    served = expected_bars("EURUSD", "CASH", "1 hour", "MIDPOINT", False, START, NOW, now_utc=NOW)
    assert loaded.result.fetched_bars == len(served) > 1500

    spec = StartTraining(
        symbols=["EURUSD"],
        timeframe=Timeframe.H1,
        start=START,
        epochs=4,
        label=ZigZagLabel(threshold=0.004),
        device=Device.CPU,
        model=LstmModel(seq_len=8, hidden_size=16),
    )
    job_id = await client.start_training(spec)
    done = await wait_for_job_event(js, job_id, DONE, timeout_s=120)
    assert isinstance(done, JobCompleted), done
    result = done.result
    assert isinstance(result, TrainingResult)

    # the artifact says what it was trained on: exactly the simulator's bars
    repository = ModelRepository(await js.object_store(streams.MODELS_BUCKET))
    manifest = await repository.manifest(result.model_id)
    assert manifest.spec == msgspec.structs.replace(spec, job_id=job_id)
    assert manifest.data.rows == len(served)
    assert manifest.data.first == served["start_utc"].iloc[0].to_pydatetime()

    async def query(request: QueryBars) -> bytes:
        return bytes(
            (await nc.request(subjects.STORE_QUERY, codec.encode(request), timeout=10)).data
        )

    bars = await fetch_bars(query, "EURUSD", Timeframe.H1, START, None)
    np.testing.assert_array_equal(bars.close.numpy(), served["close"].to_numpy())
    assert fingerprint([bars], START, None).sha256 == manifest.data.sha256

    # loaded back, its predictions on the test split reproduce the reported metrics
    model = load_model(manifest, await repository.weights(result.model_id), torch.device("cpu"))
    replayed, _ = evaluate_run(model.network, model.dataset([bars]), model.plan.device)
    assert replayed["samples"] == manifest.split.test > 100
    for key, value in replayed.items():
        assert result.metrics[key] == value, key
