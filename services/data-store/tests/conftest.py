"""Fixtures for load tests: the simulator, a connector, and a data-store on a temporary dir."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from ktrdr_data_store.app import build_app as build_store
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_shared.runtime import ServiceApp


def store_settings(nats_url: str, data_dir: Path, **extra: str) -> DataStoreSettings:
    """Return data-store settings on ``data_dir`` with the gap filler off."""
    env = {
        "KTRDR_NATS_URL": nats_url,
        "KTRDR_DATA_DIR": str(data_dir),
        "KTRDR_GAP_FILL_INTERVAL_S": "0",
        "KTRDR_LOAD_PROGRESS_INTERVAL_S": "0.2",
        **extra,
    }
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
