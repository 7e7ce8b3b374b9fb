"""The data-store's lifecycle: connect, declare, serve, drain on SIGTERM."""

from __future__ import annotations

from ktrdr_shared import streams
from ktrdr_shared.runtime import ServiceApp, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_data_store import __version__
from ktrdr_data_store.config import DataStoreSettings

SERVICE_NAME = "data-store"


def build_app(settings: DataStoreSettings) -> ServiceApp:
    """Return the data-store service, ready to start."""

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await streams.ensure_streams(js)
        await streams.ensure_consumers(js, streams.DATA_COMMANDS, streams.STORE_BARS)

    return ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        description="the Parquet bar store: ingest, gap planning, load jobs, queries",
        settings=settings,
        setup=setup,
    )


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(DataStoreSettings.from_env()))
