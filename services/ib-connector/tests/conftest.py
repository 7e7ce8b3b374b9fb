"""Fixtures: a TWS-protocol simulator, a nats-server, and the connector between them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ktrdr_ib_connector.app import build_app
from ktrdr_ib_connector.testing import NOW, connector_settings, wait_connected
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared.runtime import ServiceApp
from nats.aio.client import Client as NATS


@pytest.fixture
def sim_now() -> dt.datetime:
    """Return the simulator's frozen "now"."""
    return NOW


@pytest.fixture
async def start_connector(
    nats_url: str, sim: IBGatewaySimulator
) -> AsyncIterator[Callable[..., Awaitable[ServiceApp]]]:
    """Return a starter for extra connectors (settings overrides as KTRDR_* keywords)."""
    started: list[ServiceApp] = []

    async def start(**extra: str) -> ServiceApp:
        app = build_app(connector_settings(nats_url, sim.port, **extra))
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()


@pytest.fixture
async def connector(nats_url: str, sim: IBGatewaySimulator) -> AsyncIterator[ServiceApp]:
    """Run the connector in this event loop until the test ends."""
    app = build_app(connector_settings(nats_url, sim.port))
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@pytest.fixture
async def ready(connector: ServiceApp, nc: NATS) -> ServiceApp:
    """Wait until the connector reports a ready IB connection."""
    await wait_connected(nc)
    return connector
