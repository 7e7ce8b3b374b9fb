"""Fixtures: simulators on free loopback ports with a frozen clock, and ib_async clients.

``sim`` and ``start_sim`` come from ``ktrdr_ib_sim.pytest_plugin`` (the ``testing`` extra);
``sim_defaults`` here gives them this directory's settings.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from ib_async import IB
from ktrdr_ib_sim import RawTwsClient
from ktrdr_ib_sim.pytest_plugin import *  # noqa: F403 - the plugin's fixtures
from ktrdr_ib_sim.testing import ErrorRecorder

#: The frozen "now" of the simulators here: Monday 2024-07-01 16:00 UTC, mid-session in New York.
NOW = dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC)
HOST = "127.0.0.1"
NO_LATENCY: dict[str, Any] = {"latency_ms": 0, "per_bar_us": 0, "slow_fraction": 0}


@dataclass
class Client:
    """An ib_async client connected to a simulator, with the errors it received."""

    ib: IB
    errors: ErrorRecorder


ConnectIB = Callable[..., Awaitable[Client]]


@pytest.fixture
def sim_defaults() -> dict[str, Any]:
    """The protocol tests' simulators: a free port, the frozen clock, no latency model
    (test_latency.py covers it); ``sim``/``start_sim`` start from these."""
    return {"port": 0, "now_utc": NOW, **NO_LATENCY}


@pytest.fixture
async def connect_ib() -> AsyncIterator[ConnectIB]:
    """Connect ib_async clients (disconnected at teardown)."""
    clients: list[IB] = []

    async def connect(port: int, client_id: int = 1, **kwargs: Any) -> Client:
        ib = IB()
        clients.append(ib)
        errors = ErrorRecorder.attach(ib)
        kwargs.setdefault("timeout", 5)
        await ib.connectAsync(HOST, port, clientId=client_id, **kwargs)
        return Client(ib, errors)

    yield connect
    for ib in clients:
        ib.disconnect()


@pytest.fixture
async def connect_raw() -> AsyncIterator[Callable[..., Awaitable[RawTwsClient]]]:
    """Open raw wire clients (closed at teardown)."""
    clients: list[RawTwsClient] = []

    async def connect(port: int, client_id: int = 1, **kwargs: Any) -> RawTwsClient:
        client = await RawTwsClient.connect(HOST, port, client_id, **kwargs)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()
