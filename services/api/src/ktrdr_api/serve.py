"""Run the gateway under granian: ``python -m ktrdr_api`` (or ``ktrdr-api``).

Granian (a Rust HTTP server with an ASGI interface) was chosen over uvicorn
by measurement: ``just bench`` runs the same Litestar app under both on the
same machine in the same run (``bench/bench_api.py``; README has the figures).
Each worker process builds its own app (and NATS connection) from the
environment through ``app_from_env``.
"""

from __future__ import annotations

import asyncio

from ktrdr_shared import streams
from ktrdr_shared.errors import ConfigError
from ktrdr_shared.runtime import configure_logging, connect, exit_on_config_error
from litestar import Litestar

from ktrdr_api.app import SERVICE_NAME, create_app
from ktrdr_api.config import ApiSettings, check_exposure


def app_from_env() -> Litestar:
    """Build the app from ``KTRDR_*`` variables (granian calls this in each worker).

    Where the api only verifies JetStream (NATS has users), ``main`` did so once before any
    worker started: the workers do not read it again.
    """
    settings = ApiSettings.from_env()
    configure_logging(settings.log_level, SERVICE_NAME)
    return create_app(settings, verified=not settings.declares)


def load_settings() -> ApiSettings:
    """Return the settings, or exit 2 with one clear line on a configuration error."""
    try:
        settings = ApiSettings.from_env()
        check_exposure(settings)
    except ConfigError as e:
        exit_on_config_error(SERVICE_NAME, e)
    return settings


def verify_jetstream(settings: ApiSettings) -> None:
    """Check once, before any worker starts, that the admin declared what the api reads.

    Where NATS has users the api only verifies (``streams.prepare``); drift or a
    missing stream exits 2 with one line naming it and the fix, not a worker's
    traceback. The workers trust it (``app_from_env``): JetStream is verified once.
    """

    async def check() -> None:
        nc = await connect(settings, name=f"{SERVICE_NAME}-preflight")
        try:
            await streams.prepare(
                nc.jetstream(),
                buckets=True,
                declare=False,
                service=SERVICE_NAME,
                wait_s=settings.nats_declare_wait_s,
            )
        finally:
            await nc.close()

    try:
        asyncio.run(check())
    except ConfigError as e:
        exit_on_config_error(SERVICE_NAME, e)


def main() -> None:
    """Serve until SIGTERM/SIGINT: granian stops taking connections and the lifespan drains NATS."""
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    settings = load_settings()
    if not settings.declares:
        verify_jetstream(settings)
    level = settings.log_level.lower()
    Server(
        "ktrdr_api.serve:app_from_env",
        factory=True,
        address=settings.api_host,
        port=settings.api_port,
        interface=Interfaces.ASGI,
        workers=settings.api_workers,
        websockets=False,
        log_level=LogLevels(level if level in LogLevels.__members__ else "info"),
        process_name=None,
    ).serve()


if __name__ == "__main__":
    main()
