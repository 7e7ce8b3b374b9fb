"""Fixtures for load tests: the simulator, a connector, and a data-store on a temporary dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from ktrdr_data_store.app import build_app as build_store
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_ib_connector.app import build_app as build_connector
from ktrdr_ib_connector.testing import connector_settings, sim_config, wait_connected
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared.runtime import ServiceApp
from nats.aio.client import Client as NATS


@pytest.fixture
async def sim() -> AsyncIterator[IBGatewaySimulator]:
    """Start a simulator on a free loopback port with compressed time."""
    server = IBGatewaySimulator(sim_config())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def connector(nats_url: str, sim: IBGatewaySimulator, nc: NATS) -> AsyncIterator[ServiceApp]:
    """Run a connector against the simulator; return once it is connected."""
    app = build_connector(connector_settings(nats_url, sim.port))
    await app.start()
    try:
        await wait_connected(nc)
        yield app
    finally:
        await app.stop()


def store_settings(nats_url: str, data_dir: Path, **extra: str) -> DataStoreSettings:
    """Return data-store settings on ``data_dir`` with the gap filler off."""
    env = {"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(data_dir),
           "KTRDR_GAP_FILL_INTERVAL_S": "0", "KTRDR_LOAD_PROGRESS_INTERVAL_S": "0.2",
           **extra}  # fmt: skip
    return DataStoreSettings.from_env(env)


@pytest.fixture
async def start_store(
    nats_url: str, tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[ServiceApp]]]:
    """Return a starter of data-store apps on one data dir (settings as KTRDR_* keywords)."""
    started: list[ServiceApp] = []

    async def start(**extra: str) -> ServiceApp:
        app = build_store(store_settings(nats_url, tmp_path / "data", **extra))
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()
