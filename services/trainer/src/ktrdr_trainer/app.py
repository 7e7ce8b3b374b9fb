"""The trainer's lifecycle: connect, declare, serve, drain on SIGTERM."""

from __future__ import annotations

from ktrdr_shared import streams
from ktrdr_shared.runtime import ServiceApp, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_trainer import __version__
from ktrdr_trainer.config import TrainerSettings

SERVICE_NAME = "trainer"


def build_app(settings: TrainerSettings) -> ServiceApp:
    """Return the trainer service, ready to start."""

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await streams.ensure_streams(js)
        await streams.ensure_consumers(js, streams.TRAIN_COMMANDS)
        await streams.ensure_buckets(js)

    return ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        description="PyTorch training on stored bars, artifacts in the object store",
        settings=settings,
        setup=setup,
    )


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(TrainerSettings.from_env()))
