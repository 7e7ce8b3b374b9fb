"""The ib-connector's lifecycle: connect, declare, serve, drain on SIGTERM."""

from __future__ import annotations

from ktrdr_shared import streams
from ktrdr_shared.runtime import ServiceApp, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_ib_connector import __version__
from ktrdr_ib_connector.config import IbConnectorSettings

SERVICE_NAME = "ib-connector"


def build_app(settings: IbConnectorSettings) -> ServiceApp:
    """Return the ib-connector service, ready to start."""

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await streams.ensure_streams(js)
        await streams.ensure_consumers(js, streams.IB_COMMANDS)
        await streams.ensure_buckets(js)

    return ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        description="the one IB connection: pacing, chunking, bar batches and connection events",
        settings=settings,
        setup=setup,
    )


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(IbConnectorSettings.from_env()))
