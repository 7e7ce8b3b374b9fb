"""The trainer's lifecycle: connect, declare, take training commands, serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging

import torch
from ktrdr_shared import streams, subjects
from ktrdr_shared.consumer import PullConsumer
from ktrdr_shared.messages import JobKind, StatusRequest
from ktrdr_shared.runtime import ServiceApp, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_trainer import __version__
from ktrdr_trainer.config import TrainerSettings
from ktrdr_trainer.handlers import Trainer
from ktrdr_trainer.repository import ModelRepository
from ktrdr_trainer.training import available_device, describe_device

SERVICE_NAME = "trainer"

log = logging.getLogger(__name__)


def build_app(settings: TrainerSettings) -> ServiceApp:
    """Return the trainer service, ready to start."""
    app = ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        settings=settings,
        description="PyTorch training on stored bars, artifacts in the object store",
    )

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await app.prepare(js, streams.TRAIN_COMMANDS, buckets=True)
        if settings.trainer_threads:
            torch.set_num_threads(settings.trainer_threads)
        trainer = Trainer(
            nc=nc,
            js=js,
            settings=settings,
            models=ModelRepository(await js.object_store(streams.MODELS_BUCKET)),
            device=available_device(),
            keep_alive_s=max(1.0, (streams.TRAIN_COMMANDS.config.ack_wait or 300.0) / 4),
        )
        log.info("trainer: training on %s", describe_device(trainer.device))
        app.endpoint(
            "status", subjects.TRAIN_STATUS, StatusRequest, "device, busy or idle, current job"
        )(trainer.status)
        app.endpoint("models", subjects.TRAIN_MODELS, StatusRequest, "every stored model")(
            trainer.list_models
        )
        # One job at a time per trainer: more trainers (GPU hosts) share the consumer.
        jobs = trainer.jobs
        consumer = PullConsumer(
            js=js,
            spec=streams.TRAIN_COMMANDS,
            handler=jobs.handle_start,
            on_permanent=jobs.on_rejected,
            batch=1,
            fetch_timeout_s=0.5,  # commands are rare; a short fetch keeps shutdown quick
            declare=settings.declares,
        )

        async def follow_cancels(stopping: asyncio.Event) -> None:
            await jobs.cancels.follow(nc, JobKind.TRAINING, stopping)
            jobs.interrupt()  # the job in hand stops at its next batch and is redelivered

        app.background(consumer.run)
        app.background(follow_cancels)

    app.setup = setup
    return app


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(TrainerSettings.from_env()))
