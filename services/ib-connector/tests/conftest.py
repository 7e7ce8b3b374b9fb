"""Fixtures: a TWS-protocol simulator, a nats-server, and the connector between them."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ktrdr_ib_connector.app import build_app
from ktrdr_ib_connector.config import IbConnectorSettings
from ktrdr_ib_sim import IBGatewaySimulator, SimulatorConfig
from ktrdr_shared.runtime import ServiceApp
from nats.aio.client import Client as NATS

# The simulator's frozen "now": a Friday after the US close, inside the calendars.
NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)
TIME_SCALE = 0.01  # IB's 10-minute pacing window lasts 6 s


@pytest.fixture
def sim_now() -> dt.datetime:
    """Return the simulator's frozen "now"."""
    return NOW


@pytest.fixture
async def sim() -> AsyncIterator[IBGatewaySimulator]:
    """Start a simulator on a free loopback port with compressed time."""
    server = IBGatewaySimulator(SimulatorConfig(port=0, time_scale=TIME_SCALE, now_utc=NOW,
                                                soft_delay_ms=0))  # fmt: skip
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def connector_settings(nats_url: str, port: int, **extra: str) -> IbConnectorSettings:
    """Return settings pointing the connector at the simulator, in compressed time."""
    env = {"KTRDR_NATS_URL": nats_url, "KTRDR_IB_PORT": str(port),
           "KTRDR_IB_TIME_SCALE": str(TIME_SCALE), "KTRDR_IB_REQUEST_TIMEOUT_S": "5",
           "KTRDR_IB_RETRY_DELAY_S": "0.2", "KTRDR_IB_CONNECT_TIMEOUT_S": "3", **extra}  # fmt: skip
    return IbConnectorSettings.from_env(env)


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
    for _ in range(200):
        reply = await nc.request("ktrdr.ib.status", b"", timeout=2)
        if b'"connected":true' in reply.data:
            return connector
        await asyncio.sleep(0.05)
    raise AssertionError("the connector never connected to the simulator")
