"""/api/v1/training/runs and /api/v1/models: 503 until a trainer runs, then wired to its
subjects (a small real micro responder stands in for the trainer) and to the real
``ktrdr_models`` object store."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from ktrdr_api.controllers.models import archive_entry
from ktrdr_api.testing import Responder, take_command
from ktrdr_shared import streams, subjects
from ktrdr_shared.client import new_job_id
from ktrdr_shared.messages import (
    JobAccepted,
    JobCompleted,
    JobKind,
    LstmModel,
    ModelInfo,
    ModelList,
    StartTraining,
    StatusRequest,
    TrainerStatus,
    TrainingResult,
    ZigZagLabel,
)
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import Timeframe
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

JOB = "0123456789abcdef0123456789abcdef"
MODEL = ModelInfo(
    model_id="m-aapl-1",
    job_id=JOB,
    created=datetime(2024, 7, 1, tzinfo=UTC),
    symbols=["AAPL"],
    timeframe=Timeframe.H1,
    device="cpu",
    metrics={"accuracy": 0.41},
    size_bytes=12,
)


@pytest.fixture
async def trainer(nats_url: str, js: JetStreamContext) -> AsyncIterator[Responder]:
    """A stand-in trainer answering status and models; one model's objects in the store."""
    await streams.ensure_buckets(js)
    store = await js.object_store(streams.MODELS_BUCKET)
    await store.put(f"{MODEL.model_id}/weights.pt", b"weights-bytes")
    await store.put(f"{MODEL.model_id}/manifest.json", b'{"features": []}')

    async def status(_: StatusRequest) -> TrainerStatus:
        return TrainerStatus(device="cpu", busy=False)

    async def models(_: StatusRequest) -> ModelList:
        return ModelList(models=[MODEL])

    responder = Responder(nats_url, "trainer")
    responder.on("status", subjects.TRAIN_STATUS, StatusRequest, status)
    responder.on("models", subjects.TRAIN_MODELS, StatusRequest, models)
    async with responder:
        yield responder


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/api/v1/training/runs"), ("GET", "/api/v1/models"),
     ("GET", "/api/v1/models/m-aapl-1"), ("GET", "/api/v1/models/m-aapl-1/download")],
)  # fmt: skip
async def test_without_a_trainer_every_route_is_a_clear_503(
    http: httpx.AsyncClient, method: str, path: str
) -> None:
    body = {"symbols": ["AAPL"], "timeframe": "1h"} if method == "POST" else None
    response = await http.request(method, path, json=body)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("no trainer is running")


async def test_a_run_publishes_start_training_and_is_followed_from_its_events(
    trainer: Responder, http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    response = await http.post(
        "/api/v1/training/runs",
        json={
            "symbols": ["aapl", "msft"],
            "timeframe": "1h",
            "start": "2024-01-01T00:00:00+02:00",
            "label": {"kind": "zigzag", "threshold": 0.03},
            "model": {"kind": "lstm", "seq_len": 16},
            "epochs": 3,
        },
    )
    assert response.status_code == 202, response.text
    run = response.json()
    command = await take_command(js, streams.TRAIN_COMMANDS, StartTraining)
    assert command.job_id == run["job_id"]
    assert command.symbols == ["AAPL", "MSFT"]
    assert command.start == datetime(2023, 12, 31, 22, tzinfo=UTC)
    assert command.label == ZigZagLabel(threshold=0.03)
    assert command.model == LstmModel(seq_len=16)
    assert len(command.features) == 8  # the trainer's defaults when none are named

    job = run["job_id"]
    await publish_event(js, JobAccepted(job_id=job, kind=JobKind.TRAINING, params={}))
    await publish_event(
        js,
        JobCompleted(
            job_id=job,
            result=TrainingResult(model_id="m-aapl-1", device="cpu", metrics={"accuracy": 0.41}),
        ),
    )
    state = (await http.get(f"/api/v1/training/runs/{job}")).json()
    assert state["status"] == "completed"
    assert state["result"] == {
        "kind": "training",
        "model_id": "m-aapl-1",
        "device": "cpu",
        "metrics": {"accuracy": 0.41},
    }


async def test_a_training_run_is_validated_before_anything_is_sent(
    trainer: Responder, http: httpx.AsyncClient
) -> None:
    bad = await http.post(
        "/api/v1/training/runs",
        json={
            "symbols": ["AAPL"],
            "timeframe": "1h",
            "train_fraction": 0.9,
            "validation_fraction": 0.2,
        },
    )
    assert bad.status_code == 400
    assert "must leave room for a test split" in bad.json()["detail"]
    unknown = await http.post(
        "/api/v1/training/runs",
        json={"symbols": ["AAPL"], "timeframe": "1h", "model": {"kind": "transformer"}},
    )
    assert unknown.status_code == 400
    assert "model" in unknown.json()["detail"]
    coerced = await http.post(  # a number as text is refused, not converted
        "/api/v1/training/runs", json={"symbols": ["AAPL"], "timeframe": "1h", "epochs": "20"}
    )
    assert coerced.status_code == 400
    assert [e["field"] for e in coerced.json()["errors"]] == ["epochs"]
    assert coerced.json()["detail"] == "body field 'epochs': Expected 'int', got 'str'"


async def test_a_load_job_is_not_a_training_run(
    trainer: Responder, http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    await publish_event(js, JobAccepted(job_id=job, kind=JobKind.DATA_LOAD, params={}))
    response = await http.get(f"/api/v1/training/runs/{job}")
    assert response.status_code == 404
    assert "is a data_load job" in response.json()["detail"]


async def test_models_list_show_and_download(trainer: Responder, http: httpx.AsyncClient) -> None:
    listed = (await http.get("/api/v1/models")).json()["models"]
    assert [m["model_id"] for m in listed] == ["m-aapl-1"]
    shown = (await http.get("/api/v1/models/m-aapl-1")).json()
    assert shown["created"] == "2024-07-01T00:00:00Z"
    assert shown["metrics"] == {"accuracy": 0.41}
    assert shown["links"]["download"] == "/api/v1/models/m-aapl-1/download"

    archive = await http.get(shown["links"]["download"])
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert sorted(z.namelist()) == ["m-aapl-1/manifest.json", "m-aapl-1/weights.pt"]
        assert z.read("m-aapl-1/weights.pt") == b"weights-bytes"
    weights = await http.get(shown["links"]["download"], params={"part": "weights.pt"})
    assert weights.content == b"weights-bytes"

    assert (await http.get("/api/v1/models/m-other")).status_code == 404
    missing = await http.get(shown["links"]["download"], params={"part": "report.png"})
    assert missing.status_code == 404
    assert "no object 'report.png' of model m-aapl-1" in missing.json()["detail"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("name", "entry"),
    [("weights.pt", "m/weights.pt"), ("../../etc/cron.d/x", "m/etc/cron.d/x"),
     ("/abs/path", "m/abs/path"), ("..\\..\\win.ini", "m/win.ini"), ("C:/x", "m/x"),
     ("..", None), ("a/./b", "m/a/b"), ("bad\nname", None)],
)  # fmt: skip
def test_zip_entry_names_stay_inside_the_model_s_folder(name: str, entry: str | None) -> None:
    assert archive_entry("m", name) == entry


async def test_a_stored_object_name_that_climbs_out_is_flattened_in_the_zip(
    trainer: Responder, js: JetStreamContext, http: httpx.AsyncClient
) -> None:
    store = await js.object_store(streams.MODELS_BUCKET)
    await store.put(f"{MODEL.model_id}/../../../tmp/evil.sh", b"evil")
    await store.put(f"{MODEL.model_id}//etc/passwd", b"root")
    archive = await http.get("/api/v1/models/m-aapl-1/download")
    assert archive.status_code == 200, archive.text
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        names = z.namelist()
    assert sorted(names) == [
        "m-aapl-1/etc/passwd",
        "m-aapl-1/manifest.json",
        "m-aapl-1/tmp/evil.sh",
        "m-aapl-1/weights.pt",
    ]
    assert not any(".." in n.split("/") or n.startswith("/") for n in names)


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [({"model": {"kind": "mlp", "hidden_sizes": [10**7]}}, "model.hidden_sizes[0]", "<= 65536"),
     ({"model": {"kind": "lstm", "hidden_size": 10**7}}, "model.hidden_size", "<= 65536"),
     ({"seed": 2**70}, "seed", "<= 4294967295"),
     ({"model": {"kind": "mlp", "hidden_sizes": [65_536, 65_536, 65_536]}}, "model",
      "over the limit of 4 GiB"),
     ({"batch_size": 1_000_000, "model": {"kind": "lstm", "seq_len": 4096}}, "batch_size",
      "over the limit of 4 GiB")],
)  # fmt: skip
async def test_a_training_spec_too_big_is_a_400_naming_the_field(
    http: httpx.AsyncClient,
    js: JetStreamContext,
    extra: dict[str, object],
    field: str,
    words: str,
) -> None:
    before = (await js.stream_info(streams.COMMANDS.name)).state.messages
    response = await http.post(
        "/api/v1/training/runs", json={"symbols": ["AAPL"], "timeframe": "1h", **extra}
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field]
    assert words in problem["detail"]
    assert (await js.stream_info(streams.COMMANDS.name)).state.messages == before
