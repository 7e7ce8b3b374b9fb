"""Thin handlers: decode a command, run the core, publish events and store the artifact."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
import torch
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import request_raw
from ktrdr_shared.consumer import deliveries, derived_job_id, keep_alive, salvage_job_id
from ktrdr_shared.errors import KtrdrError, NoReply, NoResponders, RetryableError, ServiceTimeout
from ktrdr_shared.messages import (
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobKind,
    JobProgress,
    ModelList,
    ProgressReason,
    QueryBars,
    StartTraining,
    StatusRequest,
    TrainerStatus,
    TrainingResult,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import utc_now
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ktrdr_trainer.artifacts import build_artifact
from ktrdr_trainer.config import TrainerSettings
from ktrdr_trainer.data import Bars, fetch_bars, read_parquet_bars
from ktrdr_trainer.dataset import Dataset
from ktrdr_trainer.pipeline import JobPlan, TrainingRun, plan_job, run_training
from ktrdr_trainer.repository import ModelRepository
from ktrdr_trainer.training import (
    DeviceUnavailable,
    EpochStats,
    TrainingStopped,
    describe_device,
    estimated_end,
    stopped_early_message,
)

log = logging.getLogger(__name__)

# A job asking for a device this trainer lacks is left for another trainer a
# few times (they share the durable consumer) before it fails.
DEVICE_RETRIES = 3
EVENT_TIMEOUT_S = 10.0


@dataclass
class Trainer:
    """What the handlers share: NATS, the model store, this host's device, the job in hand."""

    nc: NATS
    js: JetStreamContext
    settings: TrainerSettings
    models: ModelRepository
    device: torch.device
    keep_alive_s: float = 60.0
    current_job: str | None = None
    cancelled_jobs: OrderedDict[str, str] = field(default_factory=OrderedDict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_reason: str = ""
    _shutting_down: bool = False

    # -- commands ---------------------------------------------------------------------

    async def handle_start(self, msg: Msg) -> None:
        """Run one ``StartTraining`` to a terminal event: completed, failed or cancelled."""
        command = codec.decode(msg.data, StartTraining, subject=msg.subject, headers=msg.headers)
        job_id = command.job_id or derived_job_id(msg)
        if self._shutting_down:
            raise RetryableError("the trainer is stopping; the job stays queued", delay_s=1.0)
        if job_id in self.cancelled_jobs:
            await self.publish(JobCancelled(job_id=job_id, reason=self.cancelled_jobs[job_id]))
            return
        plan = await self._plan(msg, job_id, command)
        if plan is None:
            return
        params = msgspec.to_builtins(command)
        await self.publish(JobAccepted(job_id=job_id, kind=JobKind.TRAINING, params=params))
        beat = await keep_alive(msg, self.keep_alive_s)
        self.current_job, self._stop_reason = job_id, ""
        self._stop.clear()
        try:
            await self._run(job_id, plan)
        finally:
            beat.cancel()
            self.current_job = None

    async def _plan(self, msg: Msg, job_id: str, command: StartTraining) -> JobPlan | None:
        """Return the checked plan, or publish why there is none (None)."""
        try:
            return plan_job(
                command,
                None if command.device != "auto" else self.device,
                max_bytes=self.settings.trainer_max_training_bytes,
            )
        except DeviceUnavailable as e:
            if deliveries(msg) < DEVICE_RETRIES:
                raise RetryableError(f"{e.message} (left for another trainer)", delay_s=2.0) from e
            error: KtrdrError = e
        except KtrdrError as e:
            error = e
        await self.publish(
            JobFailed(job_id=job_id, code=error.code, message=error.message, details=error.details)
        )
        return None

    async def _run(self, job_id: str, plan: JobPlan) -> None:
        try:
            bars = await self._load_bars(plan.spec)
            await self.publish(
                JobProgress(
                    job_id=job_id,
                    done=sum(map(len, bars)),
                    total=sum(map(len, bars)),
                    unit="bars",
                    message=f"loaded bars of {len(bars)} symbol(s)",
                    reason=ProgressReason.TRAINING,
                )
            )
            loop = asyncio.get_running_loop()
            run = await asyncio.to_thread(self._train, loop, job_id, plan, bars)
            device_name = describe_device(plan.device)
            artifact = await asyncio.to_thread(build_artifact, run, job_id, bars, device_name)
            await self.models.save(artifact)
        except TrainingStopped as e:
            if job_id not in self.cancelled_jobs:  # shutting down: another trainer redoes it
                raise RetryableError(
                    "the trainer is stopping; the job goes back to the queue", delay_s=1.0
                ) from e
            await self.publish(JobCancelled(job_id=job_id, reason=self.cancelled_jobs[job_id]))
            return
        except RetryableError:
            raise
        except KtrdrError as e:
            await self.publish(
                JobFailed(job_id=job_id, code=e.code, message=e.message, details=e.details)
            )
            return
        except Exception as e:  # a bug or a torch failure (e.g. out of memory): report it
            log.exception("training job %s failed", job_id)
            await self.publish(
                JobFailed(job_id=job_id, code="internal", message=f"training failed: {e!r}")
            )
            return
        result = TrainingResult(model_id=artifact.model_id, device=device_name, metrics=run.metrics)
        await self.publish(JobCompleted(job_id=job_id, result=result))

    def _train(
        self, loop: asyncio.AbstractEventLoop, job_id: str, plan: JobPlan, bars: list[Bars]
    ) -> TrainingRun:
        """Run the core in a worker thread; events hop back to the event loop."""
        epochs, name = plan.spec.epochs, describe_device(plan.device)
        started = utc_now()

        def emit(event: Event) -> None:
            self._publish_from_thread(loop, event)

        def on_prepared(data: Dataset) -> None:
            nonlocal started
            started = utc_now()
            emit(
                JobProgress(
                    job_id=job_id,
                    done=0,
                    total=epochs,
                    unit="epochs",
                    message=f"training on {name}: {len(data.train)} train, "
                    f"{len(data.validation)} validation, {len(data.test)} test "
                    "samples",
                    reason=ProgressReason.TRAINING,
                )
            )

        def on_epoch(s: EpochStats) -> None:
            emit(
                EpochCompleted(
                    job_id=job_id,
                    epoch=s.epoch,
                    epochs=epochs,
                    train_loss=s.train_loss,
                    val_loss=s.val_loss,
                    val_accuracy=s.val_accuracy,
                    samples_per_s=s.samples_per_s,
                    device=name,
                )
            )
            now = utc_now()
            emit(
                JobProgress(
                    job_id=job_id,
                    done=s.epoch,
                    total=epochs,
                    unit="epochs",
                    message=f"epoch {s.epoch}/{epochs} on {name}",
                    reason=ProgressReason.TRAINING,
                    eta=estimated_end(started, now, s.epoch, epochs),
                )
            )

        def check_stop() -> None:
            if self._stop.is_set():
                raise TrainingStopped(self._stop_reason)

        run = run_training(plan, bars, on_epoch, check_stop, on_prepared)
        if run.outcome.stopped_early:  # the epochs that ran are the whole run: say so last
            ran = len(run.outcome.history)
            message = stopped_early_message(run.outcome, plan.params)
            emit(
                JobProgress(
                    job_id=job_id,
                    done=ran,
                    total=ran,
                    unit="epochs",
                    message=message,
                    reason=ProgressReason.TRAINING,
                )
            )
        return run

    async def on_rejected(self, msg: Msg, error: KtrdrError) -> None:
        """Report a command that can never run (malformed), to its job when it names one."""
        job_id = salvage_job_id(msg.data)
        if job_id is None:
            log.warning("rejected %s with no job to report to: %s", msg.subject, error.message)
            return
        await self.publish(
            JobFailed(job_id=job_id, code=error.code, message=error.message, details=error.details)
        )

    def note_cancel(self, job_id: str, reason: str) -> None:
        """Remember a cancelled job; stop it at its next batch if it is running here."""
        self.cancelled_jobs[job_id] = reason or "cancel requested"
        while len(self.cancelled_jobs) > 1000:
            self.cancelled_jobs.popitem(last=False)
        if job_id == self.current_job:
            self._stop_reason = reason
            self._stop.set()

    def interrupt(self) -> None:
        """Stop the job in hand at its next batch (shutdown); it is redelivered elsewhere."""
        self._shutting_down = True
        self._stop_reason = "shutdown"
        self._stop.set()

    # -- requests ---------------------------------------------------------------------

    async def status(self, _: StatusRequest) -> TrainerStatus:
        """Answer ``ktrdr.train.status``: this host's device, busy or idle, the current job."""
        return TrainerStatus(
            device=describe_device(self.device),
            busy=self.current_job is not None,
            job_id=self.current_job,
        )

    async def list_models(self, _: StatusRequest) -> ModelList:
        """Answer ``ktrdr.train.models`` with every stored model, newest first."""
        return ModelList(models=await self.models.list())

    # -- helpers ----------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Append a training job's event to the event log (under the training kind)."""
        await publish_event(self.js, event, kind=JobKind.TRAINING)

    async def query_store(self, request: QueryBars) -> bytes:
        """Send one ``QueryBars`` to the data-store; return the Arrow reply's bytes."""
        timeout = self.settings.trainer_query_timeout_s
        try:
            reply = await request_raw(self.nc, subjects.STORE_QUERY, request, timeout_s=timeout)
        except NoResponders as e:
            raise RetryableError(
                "the data-store is not answering ktrdr.store.query; the job waits in the queue",
                delay_s=5.0,
            ) from e
        except NoReply as e:
            raise ServiceTimeout(
                f"the data-store did not answer a page within {timeout}s",
                details={"symbol": request.symbol},
            ) from e
        return bytes(reply.data)

    async def _load_bars(self, spec: StartTraining) -> list[Bars]:
        store_dir = self.settings.trainer_store_dir
        if store_dir:
            return [
                await asyncio.to_thread(
                    read_parquet_bars, store_dir, symbol, spec.timeframe, spec.start, spec.end
                )
                for symbol in spec.symbols
            ]
        return [
            await fetch_bars(self.query_store, symbol, spec.timeframe, spec.start, spec.end)
            for symbol in spec.symbols
        ]

    def _publish_from_thread(self, loop: asyncio.AbstractEventLoop, event: Event) -> None:
        coro: Coroutine[Any, Any, None] = self.publish(event)
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            future.result(EVENT_TIMEOUT_S)
        except (nats.errors.Error, TimeoutError) as e:  # the run goes on; its result still lands
            log.warning(
                "could not publish %s of job %s: %r",
                type(event).__name__,
                getattr(event, "job_id", "?"),
                e,
            )
