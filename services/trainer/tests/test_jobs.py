"""A training job's handling on in-memory adapters: every decision, in milliseconds.

Each test delivers ``StartTraining`` commands through the real ``PullConsumer.dispatch``
to ``TrainingJobs`` on an in-memory event log, data-store and model store (``memory.py``),
and reads what was published, stored, and how each delivery was settled. The runs are
tiny (300 bars, one feature, an 8-unit MLP, a few epochs) so each takes well under a
second on one CPU thread. ``test_service.py`` keeps one wiring test per path on a real
nats-server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import torch
from ktrdr_shared.consumer import derived_job_id
from ktrdr_shared.errors import (
    DatasetDamaged,
    KtrdrError,
    NotFound,
    RetryableError,
    ServiceTimeout,
)
from ktrdr_shared.messages import (
    Device,
    EpochCompleted,
    Feature,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgress,
    MlpModel,
    ProgressReason,
    StartTraining,
    TrainingResult,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import Timeframe
from ktrdr_trainer.jobs import DEVICE_RETRIES
from ktrdr_trainer.memory import InMemory, command, in_memory
from ktrdr_trainer.testing import synthetic_bars

pytestmark = pytest.mark.unit

JOB = "0123456789abcdef" * 2
BARS = 300
T0 = datetime(2024, 6, 1, tzinfo=UTC)
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Train on one CPU thread (small shared machines), as the service tests do."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec(**fields: Any) -> StartTraining:
    values: dict[str, Any] = {
        "job_id": JOB,
        "symbols": ["AAPL"],
        "timeframe": Timeframe.H1,
        "epochs": 2,
        "batch_size": 64,
        "early_stopping_patience": 0,
        "features": [Feature(name="rsi")],
        "model": MlpModel(hidden_sizes=[8]),
        "device": Device.CPU,
        **fields,
    }
    return StartTraining(**values)


def trainer(**options: Any) -> InMemory:
    return in_memory(synthetic_bars(BARS, pattern=True, seed=3, symbol="AAPL"), **options)


def on_epoch(epoch: int, then: Callable[[], None]) -> Callable[[Event], None]:
    """Return an ``on_publish`` hook that calls ``then`` once epoch ``epoch`` is reported."""

    def hook(event: Event) -> None:
        if isinstance(event, EpochCompleted) and event.epoch == epoch:
            then()

    return hook


def ticking_clock(step: timedelta) -> Callable[[], datetime]:
    """Return a clock that moves ``step`` on every reading, from ``T0``."""
    readings = iter(range(10_000))
    return lambda: T0 + step * next(readings)


async def test_a_run_goes_from_accepted_to_completed_and_stores_its_model() -> None:
    t = trainer(clock=ticking_clock(timedelta(seconds=10)))
    t.store.page_rows = 128  # three pages of Arrow, the cursor in the schema's metadata
    msg = await t.deliver(command(spec()))

    assert msg.settled == ["ack"]
    assert t.events.types() == [
        "accepted",
        "progress",  # bars loaded
        "progress",  # training on cpu: N train, ...
        "epoch_completed",
        "progress",
        "epoch_completed",
        "progress",
        "completed",
    ]
    [accepted] = t.events.of(JobAccepted)
    assert accepted.kind == "training" and accepted.params["symbols"] == ["AAPL"]
    assert [q.cursor for q in t.store.queries] == [None, "128", "256"]
    loaded, prepared, *per_epoch = t.events.of(JobProgress)
    assert (loaded.unit, loaded.done, loaded.total) == ("bars", BARS, BARS)
    assert prepared.message.startswith("training on cpu: ") and prepared.total == 2
    assert all(p.reason is ProgressReason.TRAINING for p in t.events.of(JobProgress))
    # the clock reads 10 s later each time: prepared at T0+10s, epochs end at +20s and +30s,
    # so at the pace of the first epoch both estimates say T0+30s
    assert [(p.done, p.eta) for p in per_epoch] == [
        (1, T0 + timedelta(seconds=30)),
        (2, T0 + timedelta(seconds=30)),
    ]
    epochs = t.events.of(EpochCompleted)
    assert [(e.epoch, e.epochs, e.device) for e in epochs] == [(1, 2, "cpu"), (2, 2, "cpu")]

    [done] = t.events.of(JobCompleted)
    assert isinstance(done.result, TrainingResult)
    assert done.result.model_id == f"AAPL-1h-{JOB[:12]}" and done.result.device == "cpu"
    assert done.result.metrics["epochs_run"] == 2
    assert list(t.models.artifacts) == [done.result.model_id]
    [listed] = await t.models.list()
    assert (listed.job_id, listed.symbols) == (JOB, ["AAPL"])
    assert t.jobs.current_job is None and t.jobs.cancels.running_jobs() == []


async def test_an_early_stopped_run_says_so_in_its_last_progress() -> None:
    t = in_memory(synthetic_bars(BARS, pattern=False, seed=3, symbol="AAPL"))
    job = spec(epochs=40, early_stopping_patience=1, learning_rate=0.01)
    await t.deliver(command(job))

    [done] = t.events.of(JobCompleted)
    assert isinstance(done.result, TrainingResult)
    ran = done.result.metrics["epochs_run"]
    assert done.result.metrics["stopped_early"] and 0 < ran < 40  # noise: nothing to improve
    assert [e.epoch for e in t.events.of(EpochCompleted)] == list(range(1, ran + 1))
    last = t.events.of(JobProgress)[-1]
    assert (last.done, last.total, last.unit, last.eta) == (ran, ran, "epochs", None)
    assert last.message.startswith(f"stopped early after {ran} of 40 epochs")
    assert "no validation improvement for 1 epoch;" in last.message


async def test_a_job_cancelled_before_it_starts_ends_cancelled_without_running() -> None:
    t = trainer()
    t.jobs.cancels.stop(JOB, "enough")  # the cancel came while the command was queued
    msg = await t.deliver(command(spec()))

    assert msg.settled == ["ack"]
    assert t.events.types() == ["cancelled"]
    assert t.events.of(JobCancelled)[0].reason == "enough"
    assert t.store.queries == [] and t.models.artifacts == {}


async def test_a_job_cancelled_mid_run_stops_at_the_next_batch() -> None:
    t = trainer()
    seen: list[str | None] = []

    def cancel() -> None:
        seen.append(t.jobs.current_job)
        t.jobs.cancels.stop(JOB, "enough")

    t.events.on_publish = on_epoch(1, cancel)
    msg = await t.deliver(command(spec(epochs=50)))

    assert msg.settled == ["ack"]
    assert seen == [JOB]  # busy with it while it ran
    assert [e.epoch for e in t.events.of(EpochCompleted)] == [1]
    assert t.events.types()[-1] == "cancelled"
    assert t.events.of(JobCancelled)[0].reason == "enough"
    assert not TERMINAL - {"cancelled"} & set(t.events.types())
    assert t.models.artifacts == {} and t.jobs.current_job is None


async def test_shutdown_mid_run_gives_the_job_back_for_another_trainer() -> None:
    first = trainer()
    first.events.on_publish = on_epoch(1, first.jobs.interrupt)
    msg = await first.deliver(command(spec(epochs=50)))

    assert msg.settled == ["nak 1"]  # back to the queue at once: no terminal event
    assert not TERMINAL & set(first.events.types())
    assert first.models.artifacts == {}
    later = await first.deliver(command(spec(job_id="f" * 32)))
    assert later.settled == ["nak 1"] and first.events.of(JobAccepted)[-1].job_id == JOB

    second = trainer()  # another trainer takes the redelivery and runs it whole
    again = await second.deliver(msg.redelivered())
    assert again.settled == ["ack"] and second.events.types()[-1] == "completed"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"symbols": ["AAPL"], "timeframe": "2h"}, "field 'timeframe'"),
        ({"symbols": [], "timeframe": "1h"}, "field 'symbols'"),
        ({"symbols": ["AAPL"], "timeframe": "1h", "epochs": 0}, "field 'epochs'"),
        (
            {"symbols": ["AAPL"], "timeframe": "1h", "model": {"kind": "transformer"}},
            "field 'model.kind'",
        ),
        ({"symbols": ["AAPL"], "timeframe": "1h", "train_fraction": 0.9}, "test split"),
    ],
    ids=["timeframe", "symbols", "epochs", "model", "fractions"],
)
async def test_a_malformed_command_is_terminated_and_its_job_failed(
    payload: dict[str, Any], field: str
) -> None:
    t = trainer()
    msg = await t.deliver(command(json.dumps({"job_id": JOB, **payload}).encode()))

    assert msg.settled == ["term"]  # never redelivered
    [failed] = t.events.events
    assert isinstance(failed, JobFailed) and failed.job_id == JOB
    assert failed.code == "invalid_request" and field in failed.message


async def test_a_spec_the_schema_cannot_check_fails_at_planning_naming_the_field() -> None:
    t = trainer()
    bad = spec(features=[Feature(name="rsi", params={"perod": 14})])
    msg = await t.deliver(command(bad))

    assert msg.settled == ["ack"]
    [failed] = t.events.events
    assert isinstance(failed, JobFailed) and failed.code == "invalid_request"
    assert "field 'features[0].params.perod'" in failed.message
    assert t.store.queries == []


async def test_a_malformed_command_naming_no_job_is_only_terminated() -> None:
    t = trainer()
    msg = await t.deliver(command(b"\x00 not json"))
    assert msg.settled == ["term"] and t.events.events == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (NotFound("nothing is stored for AAPL 1h; load it"), "not_found"),
        (DatasetDamaged("AAPL 1h: 2024.parquet cannot be read"), "dataset_damaged"),
    ],
    ids=["not-found", "damaged"],
)
async def test_the_store_answering_an_error_fails_the_job_with_it(
    error: KtrdrError, code: str
) -> None:
    t = trainer()
    t.store.error = error
    msg = await t.deliver(command(spec()))

    assert msg.settled == ["ack"]
    assert t.events.types() == ["accepted", "failed"]
    [failed] = t.events.of(JobFailed)
    assert (failed.code, failed.message) == (code, error.message)
    assert error.code == code


async def test_a_symbol_with_no_bars_in_range_fails_saying_load_them_first() -> None:
    t = trainer()
    await t.deliver(command(spec(start=datetime(2030, 1, 1, tzinfo=UTC))))
    [failed] = t.events.of(JobFailed)
    assert failed.code == "not_found" and failed.message.endswith("load them first")


@pytest.mark.parametrize(
    "error",
    [
        RetryableError("the data-store is not answering ktrdr.store.query", delay_s=5.0),
        ServiceTimeout("the data-store did not answer a page within 30s", delay_s=5.0),
    ],
    ids=["no-responders", "timeout"],
)
async def test_a_store_not_answering_leaves_the_job_queued(error: RetryableError) -> None:
    t = trainer()
    t.store.error = error
    msg = await t.deliver(command(spec()))

    assert msg.settled == ["nak 5"]
    assert t.events.types() == ["accepted"]  # no terminal event: it runs when the store is back
    t.store.error = None
    again = await t.deliver(msg.redelivered())
    assert again.settled == ["ack"] and t.events.types()[-1] == "completed"


async def test_a_crash_in_training_fails_the_job_as_internal() -> None:
    t = trainer()
    t.store.error = RuntimeError("CUDA out of memory")  # not a KtrdrError: a bug or torch
    msg = await t.deliver(command(spec()))

    assert msg.settled == ["ack"]
    [failed] = t.events.of(JobFailed)
    assert failed.code == "internal" and "CUDA out of memory" in failed.message


async def test_a_redelivered_command_without_a_job_id_keeps_its_derived_id() -> None:
    raw = json.dumps({"symbols": ["aapl"], "timeframe": "1h", "epochs": 1, "device": "cpu"})
    first = trainer()
    first.events.on_publish = lambda e: (
        first.jobs.interrupt() if isinstance(e, JobAccepted) else None
    )
    msg = await first.deliver(command(raw.encode(), stream_seq=42))
    assert msg.settled == ["nak 1"]

    second = trainer()
    again = msg.redelivered()
    await second.deliver(again)
    job_id = derived_job_id(msg)
    assert job_id == derived_job_id(again)  # from the stream position, not the delivery
    assert [e.job_id for e in (*first.events.of(JobAccepted), *second.events.of(JobAccepted))] == [
        job_id,
        job_id,
    ]
    [done] = second.events.of(JobCompleted)
    assert done.job_id == job_id and isinstance(done.result, TrainingResult)
    assert done.result.model_id == f"AAPL-1h-{job_id[:12]}"


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this host has an MPS device")
async def test_a_device_this_trainer_lacks_is_left_for_another_then_failed() -> None:
    t = trainer()
    msg = await t.deliver(command(spec(device=Device.MPS)))
    settled = [msg.settled]
    for _ in range(DEVICE_RETRIES - 1):
        msg = await t.deliver(msg.redelivered())
        settled.append(msg.settled)

    assert settled == [["nak 2"]] * (DEVICE_RETRIES - 1) + [["ack"]]
    [failed] = t.events.events  # nothing was announced while it waited for another trainer
    assert isinstance(failed, JobFailed) and failed.code == "invalid_request"
    assert "mps" in failed.message


async def test_a_redelivery_of_a_job_cancelled_meanwhile_ends_cancelled() -> None:
    t = trainer()
    t.events.on_publish = on_epoch(1, t.jobs.interrupt)
    msg = await t.deliver(command(spec(epochs=50)))
    assert msg.settled == ["nak 1"]

    second = trainer()
    second.jobs.cancels.stop(JOB, "changed my mind")
    again = await second.deliver(msg.redelivered())
    assert again.settled == ["ack"]
    assert second.events.types() == ["cancelled"]
    assert second.events.of(JobCancelled)[0].reason == "changed my mind"
