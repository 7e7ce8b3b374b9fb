"""Fixtures: a TWS-protocol simulator, a nats-server, and the connector between them.

``nats_url``/``nc``/``js`` come from ``ktrdr_shared.testing.pytest_plugin``, ``sim``/``start_sim``
from ``ktrdr_ib_sim.pytest_plugin``, and ``connector`` (connected to IB) with the services'
``sim_defaults`` from ``ktrdr_ib_connector.testing``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ktrdr_ib_connector.app import build_app
from ktrdr_ib_connector.testing import NOW, connector, connector_settings, sim_defaults
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_ib_sim.pytest_plugin import sim, start_sim
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.pytest_plugin import js, nats_server, nats_url, nc

__all__ = ["connector", "js", "nats_server", "nats_url", "nc", "sim", "sim_defaults", "start_sim"]


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
