"""The trainer over a real nats-server, paging bars out of a real data-store: one wiring
test per path (the store query, the Parquet files, a rejected command, a hand-published
command, a shutdown and then a cancel). Every decision of the job handling is in
``test_jobs.py`` (a store's error reply crossing the wire is ``request_raw``'s, tested in
``shared/tests/test_client.py``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from ktrdr_data_store.objstore import ObjectBarStore
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_shared import streams, subjects
from ktrdr_shared.client import KtrdrClient, new_job_id
from ktrdr_shared.messages import (
    CancelRequested,
    Device,
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobEvent,
    JobFailed,
    JobKind,
    JobProgress,
    MlpModel,
    ModelList,
    StartTraining,
    StatusRequest,
    TrainerStatus,
    TrainingResult,
)
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.runtime import ServiceApp, publish_event
from ktrdr_shared.testing.events import read_all, wait_for_job_event
from ktrdr_shared.testing.seaweed import SeaweedServer, store_url
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.repository import ModelRepository
from ktrdr_trainer.testing import bars_table, synthetic_bars
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

Starter = Callable[..., Awaitable[ServiceApp]]
DONE = {"completed", "failed", "cancelled"}


def store_bars(data_dir: Path, symbol: str = "AAPL", n: int = 1500) -> None:
    bars = synthetic_bars(n, pattern=True, seed=3, symbol=symbol)
    ParquetBarStore(data_dir).merge(symbol, Timeframe.H1, bars_table(bars))


def training(symbol: str = "AAPL", **fields: Any) -> StartTraining:
    values: dict[str, Any] = {
        "symbols": [symbol],
        "timeframe": Timeframe.H1,
        "epochs": 3,
        "batch_size": 128,
        "model": MlpModel(hidden_sizes=[16]),
        **fields,
    }
    return StartTraining(**values)


async def finished(js: JetStreamContext, job_id: str, timeout_s: float = 60) -> Any:
    return await wait_for_job_event(js, job_id, DONE, timeout_s=timeout_s)


async def test_a_job_trains_reports_each_epoch_and_stores_its_model(
    start_store: Starter, start_trainer: Starter, data_dir: Path, nc: NATS, js: JetStreamContext
) -> None:
    store_bars(data_dir)
    await start_store()
    await start_trainer()
    client = KtrdrClient(nc)
    job_id = await client.start_training(training())
    done = await finished(js, job_id)
    assert isinstance(done, JobCompleted), done
    result = done.result
    assert isinstance(result, TrainingResult)
    assert result.device == "cpu"
    assert result.model_id == f"AAPL-1h-{job_id[:12]}"
    assert result.metrics["split_samples"]["test"] > 100
    assert set(result.metrics) >= {"accuracy", "per_class", "confusion_matrix", "backtest"}

    events = await read_all(js, subjects.job_events(job_id), JobEvent)
    kinds = [event_type(e) for e in events]
    assert kinds[0] == "accepted" and kinds[-1] == "completed"
    accepted = events[0]
    assert isinstance(accepted, JobAccepted) and accepted.kind == "training"
    assert accepted.params["symbols"] == ["AAPL"]
    epochs = [e for e in events if isinstance(e, EpochCompleted)]
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert all(e.device == "cpu" and e.samples_per_s > 0 and e.epochs == 3 for e in epochs)
    progress = [e for e in events if isinstance(e, JobProgress)]
    assert progress[0].unit == "bars" and progress[0].done == 1500
    assert "training on cpu" in progress[1].message

    models = await client.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
    [model] = models.models
    assert (model.model_id, model.job_id, model.symbols) == (result.model_id, job_id, ["AAPL"])
    assert model.metrics["accuracy"] == result.metrics["accuracy"]
    repository = ModelRepository(await js.object_store(streams.MODELS_BUCKET))
    report = await repository.get(result.model_id, "report.png")
    weights = await repository.weights(result.model_id)
    assert report.startswith(b"\x89PNG")
    manifest = await repository.manifest(result.model_id)
    assert model.size_bytes > len(report) + len(weights)
    assert manifest.data.rows == 1500 and manifest.data.symbols == ["AAPL"]
    status = await client.request(subjects.TRAIN_STATUS, StatusRequest(), TrainerStatus)
    assert status == TrainerStatus(device="cpu", busy=False, job_id=None)


async def test_a_malformed_command_is_rejected_naming_the_field(
    start_trainer: Starter, nc: NATS, js: JetStreamContext
) -> None:
    """The consumer's term -> on_rejected wiring; test_jobs has every field's case."""
    await start_trainer()
    job_id = new_job_id()
    payload = {"job_id": job_id, "symbols": ["AAPL"], "timeframe": "2h"}
    await js.publish(subjects.CMD_TRAIN_START, json.dumps(payload).encode())
    done = await finished(js, job_id)
    assert isinstance(done, JobFailed), done
    assert done.code == "invalid_request"
    assert "field 'timeframe'" in done.message
    # and the trainer goes on serving
    status = await KtrdrClient(nc).request(subjects.TRAIN_STATUS, StatusRequest(), TrainerStatus)
    assert status.busy is False


async def test_a_command_published_by_hand_gets_a_job_id_and_runs(
    start_store: Starter, start_trainer: Starter, data_dir: Path, nc: NATS, js: JetStreamContext
) -> None:
    store_bars(data_dir, "EURUSD")
    await start_store()
    await start_trainer()
    accepted = await nc.subscribe("ktrdr.evt.job.training.*.accepted")
    await js.publish(subjects.CMD_TRAIN_START, b"\x00 not json")  # no job to tell: only logged
    await js.publish(
        subjects.CMD_TRAIN_START,
        json.dumps(
            {"symbols": ["eurusd"], "timeframe": "1h", "epochs": 2, "device": "cpu"}
        ).encode(),
    )
    msg = await accepted.next_msg(timeout=30)
    job_id = subjects.parse_job_event(msg.subject).job_id
    done = await finished(js, job_id)
    assert isinstance(done, JobCompleted), done
    assert isinstance(done.result, TrainingResult)
    assert done.result.model_id.startswith("EURUSD-1h-")


async def test_a_trainer_beside_the_store_reads_its_parquet_files(
    start_trainer: Starter, data_dir: Path, nc: NATS, js: JetStreamContext
) -> None:
    store_bars(data_dir)  # and no data-store running at all
    await start_trainer(KTRDR_TRAINER_STORE_DIR=str(data_dir))
    job_id = await KtrdrClient(nc).start_training(training(epochs=1))
    done = await finished(js, job_id)
    assert isinstance(done, JobCompleted), done


async def test_a_stopped_trainer_puts_its_job_back_for_another(
    start_store: Starter, start_trainer: Starter, data_dir: Path, nc: NATS, js: JetStreamContext
) -> None:
    store_bars(data_dir)
    await start_store()
    first = await start_trainer()
    client = KtrdrClient(nc)
    long = training(epochs=10_000, batch_size=16, early_stopping_patience=0, device=Device.CPU)
    job_id = await client.start_training(long)
    await wait_for_job_event(js, job_id, {"epoch_completed"}, timeout_s=60)
    await first.stop()  # SIGTERM's path: stop at the next batch, nak, drain
    info = await js.consumer_info(streams.COMMANDS.name or "", streams.TRAIN_COMMANDS.durable)
    assert info.num_ack_pending + info.num_pending == 1  # the job is queued again, not lost
    accepted = await nc.subscribe(subjects.job_event(JobKind.TRAINING, job_id, "accepted"))
    await start_trainer()
    await accepted.next_msg(timeout=30)  # the second trainer took it on
    status = await client.request(subjects.TRAIN_STATUS, StatusRequest(), TrainerStatus)
    assert status.busy is True and status.job_id == job_id
    await publish_event(
        js, CancelRequested(job_id=job_id, reason="done testing"), kind=JobKind.TRAINING
    )
    assert isinstance(await finished(js, job_id), JobCancelled)
    kinds = [event_type(e) for e in await read_all(js, subjects.job_events(job_id), JobEvent)]
    # the second trainer announced it again (seen above); the log keeps one: the repeat has
    # the first's Nats-Msg-Id (job_log.event_msg_id) and JetStream dropped it
    assert kinds.count("accepted") == 1 and kinds[-1] == "cancelled"
    # every event of the run is under the training kind, none under the data-load kind
    assert await read_all(js, subjects.job_events(job_id, JobKind.DATA_LOAD), JobEvent) == []
    assert "failed" not in kinds and "completed" not in kinds
    models = await client.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
    assert models.models == []


@pytest.mark.xdist_group("seaweed")
async def test_a_trainer_that_reaches_the_bucket_trains_on_the_same_bars_as_one_paging(
    start_store: Starter,
    start_trainer: Starter,
    data_dir: Path,
    seaweed: SeaweedServer,
    nc: NATS,
    js: JetStreamContext,
) -> None:
    url = store_url()
    bucket_env = seaweed.store_env(url)
    bucket = seaweed.bucket(url)
    bars = bars_table(synthetic_bars(1500, pattern=True, seed=3, symbol="AAPL"))
    ObjectBarStore(bucket).merge("AAPL", Timeframe.H1, bars)
    client = KtrdrClient(nc)

    fingerprints = []
    for env in (bucket_env, {}):  # straight from the bucket, then paged over NATS
        if not env:  # no data-store until now: the first trainer could only read the bucket
            await start_store(**bucket_env)
        trainer = await start_trainer(**env)
        job_id = await client.start_training(training(epochs=1))
        done = await finished(js, job_id)
        assert isinstance(done, JobCompleted), done
        assert isinstance(done.result, TrainingResult)
        models = await client.request(subjects.TRAIN_MODELS, StatusRequest(), ModelList)
        [info] = [m for m in models.models if m.model_id == done.result.model_id]
        fingerprints.append((info.data_sha256, info.data_rows))
        await trainer.stop()
    assert fingerprints[0] == fingerprints[1] and fingerprints[0][1] == 1500
