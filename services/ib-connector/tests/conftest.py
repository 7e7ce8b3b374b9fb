"""Fixtures: a TWS-protocol simulator, a nats-server, and the connector between them.

The nats-server, the simulator and ``connector`` (connected to IB) come from
``ktrdr_ib_connector.testing``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ktrdr_ib_connector.app import build_app
from ktrdr_ib_connector.testing import *  # noqa: F403 - the plugin's fixtures
from ktrdr_ib_connector.testing import NOW, connector_settings
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared.runtime import ServiceApp


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
def ready(connector: ServiceApp) -> ServiceApp:
    """The connector once it reports a ready IB connection (``connector``, by its old name here)."""
    return connector
