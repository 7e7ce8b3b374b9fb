"""A training job's handling: one ``StartTraining`` delivery to a terminal event, or back
to the queue.

No NATS here: ``TrainingJobs`` talks to its ports (``ports.py``), so the whole handling
(accepted, progress, epochs, the model stored, completed / failed / cancelled; a device
left for another trainer; a job given back on shutdown) is tested in milliseconds on
in-memory adapters (``memory.py``). A message's fate follows from how ``handle_start``
returns or raises (``ktrdr_shared.consumer``): returns -> ack; ``RetryableError`` -> nak
with its delay, the job stays queued; ``PermanentError`` -> term and ``on_rejected``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import nats.errors
import torch
from ktrdr_shared import codec
from ktrdr_shared.cancel import CancelWatcher
from ktrdr_shared.consumer import deliveries, derived_job_id, keep_alive, salvage_job_id
from ktrdr_shared.errors import KtrdrError, RetryableError
from ktrdr_shared.messages import (
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobKind,
    JobProgress,
    ProgressReason,
    StartTraining,
    TrainingResult,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.training_size import MAX_TRAINING_BYTES
from ktrdr_shared.types import utc_now

from ktrdr_trainer.artifacts import build_artifact
from ktrdr_trainer.data import Bars
from ktrdr_trainer.dataset import Dataset
from ktrdr_trainer.pipeline import JobPlan, TrainingRun, plan_job, run_training
from ktrdr_trainer.ports import BarsSource, CommandMessage, JobEvents, ModelStore
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
SHUTDOWN = "shutdown"


@dataclass
class TrainingJobs:
    """One trainer's job handling: one job at a time, on this host's device."""

    events: JobEvents
    bars: BarsSource
    models: ModelStore
    device: torch.device
    max_training_bytes: int = MAX_TRAINING_BYTES
    keep_alive_s: float = 60.0
    clock: Callable[[], datetime] = utc_now  # stamps the epochs' pace (a progress's eta)
    cancels: CancelWatcher = field(default_factory=CancelWatcher)
    current_job: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _stop_reason: str = ""
    _shutting_down: bool = False

    async def handle_start(self, msg: CommandMessage) -> None:
        """Run one ``StartTraining`` to a terminal event: completed, failed or cancelled.

        Raises:
            RetryableError: the job goes back to the queue (this trainer is stopping, lacks
                the device asked for, or the data-store is not answering).
        """
        command = codec.decode(msg.data, StartTraining, subject=msg.subject, headers=msg.headers)
        job_id = command.job_id or derived_job_id(msg)
        if self._shutting_down:
            raise RetryableError("the trainer is stopping; the job stays queued", delay_s=1.0)
        self._stop.clear()  # from here on a shutdown or a cancel stops this job
        cancelled = self.cancels.reason(job_id)
        if cancelled is not None:
            await self.events.publish(JobCancelled(job_id=job_id, reason=cancelled))
            return
        plan = await self._plan(msg, job_id, command)
        if plan is None:
            return
        params = msgspec.to_builtins(command)
        self.current_job = job_id
        try:
            with self.cancels.running(job_id, self._stop_run):
                await self.events.publish(
                    JobAccepted(job_id=job_id, kind=JobKind.TRAINING, params=params)
                )
                beat = await keep_alive(msg, self.keep_alive_s)
                try:
                    await self._run(job_id, plan)
                finally:
                    beat.cancel()
        finally:
            self.current_job = None

    async def on_rejected(self, msg: CommandMessage, error: KtrdrError) -> None:
        """Report a command that can never run (malformed), to its job when it names one."""
        job_id = salvage_job_id(msg.data)
        if job_id is None:
            log.warning("rejected %s with no job to report to: %s", msg.subject, error.message)
            return
        await self.events.publish(
            JobFailed(job_id=job_id, code=error.code, message=error.message, details=error.details)
        )

    def interrupt(self) -> None:
        """Stop the job in hand at its next batch (shutdown); it is redelivered elsewhere."""
        self._shutting_down = True
        self._stop_run(SHUTDOWN)

    def _stop_run(self, reason: str) -> None:
        """Stop the running job at its next batch (the loop runs in a worker thread)."""
        self._stop_reason = reason
        self._stop.set()

    async def _plan(
        self, msg: CommandMessage, job_id: str, command: StartTraining
    ) -> JobPlan | None:
        """Return the checked plan, or publish why there is none (None)."""
        try:
            return plan_job(
                command,
                None if command.device != "auto" else self.device,
                max_bytes=self.max_training_bytes,
            )
        except DeviceUnavailable as e:
            if deliveries(msg) < DEVICE_RETRIES:
                raise RetryableError(f"{e.message} (left for another trainer)", delay_s=2.0) from e
            error: KtrdrError = e
        except KtrdrError as e:
            error = e
        await self.events.publish(
            JobFailed(job_id=job_id, code=error.code, message=error.message, details=error.details)
        )
        return None

    async def _run(self, job_id: str, plan: JobPlan) -> None:
        try:
            bars = await self.bars.load(plan.spec)
            await self.events.publish(
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
            cancelled = self.cancels.reason(job_id)
            if cancelled is None:  # shutting down: another trainer redoes it
                raise RetryableError(
                    "the trainer is stopping; the job goes back to the queue", delay_s=1.0
                ) from e
            await self.events.publish(JobCancelled(job_id=job_id, reason=cancelled))
            return
        except RetryableError:
            raise
        except KtrdrError as e:
            await self.events.publish(
                JobFailed(job_id=job_id, code=e.code, message=e.message, details=e.details)
            )
            return
        except Exception as e:  # a bug or a torch failure (e.g. out of memory): report it
            log.exception("training job %s failed", job_id)
            await self.events.publish(
                JobFailed(job_id=job_id, code="internal", message=f"training failed: {e!r}")
            )
            return
        result = TrainingResult(model_id=artifact.model_id, device=device_name, metrics=run.metrics)
        await self.events.publish(JobCompleted(job_id=job_id, result=result))

    def _train(
        self, loop: asyncio.AbstractEventLoop, job_id: str, plan: JobPlan, bars: list[Bars]
    ) -> TrainingRun:
        """Run the core in a worker thread; events hop back to the event loop."""
        epochs, name = plan.spec.epochs, describe_device(plan.device)
        started = self.clock()

        def emit(event: Event) -> None:
            self._publish_from_thread(loop, event)

        def on_prepared(data: Dataset) -> None:
            nonlocal started
            started = self.clock()
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
            measured = {k: v for k, v in dataclasses.asdict(s).items() if k != "seconds"}
            emit(EpochCompleted(job_id=job_id, epochs=epochs, device=name, **measured))
            now = self.clock()
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

    def _publish_from_thread(self, loop: asyncio.AbstractEventLoop, event: Event) -> None:
        coro: Coroutine[Any, Any, None] = self.events.publish(event)
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
