"""Fixtures: a data-store, trainers, the simulator and a connector, on the test's nats-server.

All but the trainers come from ``ktrdr_data_store.testing`` (with ``ktrdr_ib_connector.testing``'s).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import torch
from ktrdr_data_store.testing import *  # noqa: F403 - the plugin's fixtures
from ktrdr_shared.runtime import ServiceApp
from ktrdr_trainer.app import build_app as build_trainer
from ktrdr_trainer.config import TrainerSettings

Starter = Callable[..., Awaitable[ServiceApp]]


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread() -> None:
    """Train on one CPU thread: test machines are small and shared, and torch's
    intra-op threads stall badly when other processes hold the cores."""
    torch.set_num_threads(1)


@pytest.fixture
async def start_trainer(nats_url: str, tmp_path: Path) -> AsyncIterator[Starter]:
    """Return a starter of trainer apps (settings as ``KTRDR_*`` keywords)."""
    started: list[ServiceApp] = []

    async def start(**extra: str) -> ServiceApp:
        env = {"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(tmp_path / "scratch"), **extra}
        app = build_trainer(TrainerSettings.from_env(env))
        await app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        await app.stop()
