"""pytest fixtures: real data-stores on the test's nats-server and a temporary data dir.

A test directory opts in from its conftest with ``from ktrdr_data_store.testing import *`` (the
``testing`` extra installs what it needs), which brings the fixtures of
``ktrdr_ib_connector.testing`` (a nats-server, the simulator, a connector) and these:

* ``data_dir`` - the data-store's directory for this test (``tmp_path / "data"``);
* ``start_store`` - ``await start_store(**KTRDR_keywords)`` starts one more data-store on
  ``data_dir`` (gap filler off, progress every 0.2 s); all are stopped after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from ktrdr_ib_connector.testing import (
    connector,
    js,
    nats_server,
    nats_url,
    nc,
    sim,
    sim_defaults,
    start_sim,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.seaweed import seaweed

from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings

__all__ = [  # the fixtures a test directory takes with ``import *``
    "connector",
    "data_dir",
    "js",
    "nats_server",
    "nats_url",
    "nc",
    "seaweed",
    "sim",
    "sim_defaults",
    "start_sim",
    "start_store",
]

StartStore = Callable[..., Awaitable[ServiceApp]]


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
def data_dir(tmp_path: Path) -> Path:
    """Return the data-store's directory for this test."""
    return tmp_path / "data"


@pytest.fixture
async def start_store(nats_url: str, data_dir: Path) -> AsyncIterator[StartStore]:
    """Return a starter of data-store apps on ``data_dir`` (settings as KTRDR_* keywords)."""
    started: list[ServiceApp] = []

    async def start(**extra: str) -> ServiceApp:
        app = build_app(store_settings(nats_url, data_dir, **extra))
        await app.start()
        started.append(app)
        return app

    try:
        yield start
    finally:
        for app in started:
            await app.stop()
