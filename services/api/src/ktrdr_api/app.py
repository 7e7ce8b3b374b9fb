"""The api's lifecycle: connect, declare, serve, drain on SIGTERM."""

from __future__ import annotations

from ktrdr_shared import streams
from ktrdr_shared.runtime import ServiceApp, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_api import __version__
from ktrdr_api.config import ApiSettings

SERVICE_NAME = "api"


def build_app(settings: ApiSettings) -> ServiceApp:
    """Return the api service, ready to start."""

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await streams.ensure_streams(js)

    return ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        description="the REST gateway: REST in, subjects out",
        settings=settings,
        setup=setup,
    )


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(ApiSettings.from_env()))
