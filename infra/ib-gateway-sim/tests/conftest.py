"""Fixtures: a simulator on a free loopback port with a frozen clock, and ib_async clients."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from ib_async import IB

from ktrdr_ib_sim import IBGatewaySimulator, SimulatorConfig

#: The frozen "now" of most tests: Monday 2024-07-01 16:00 UTC, mid-session in New York.
NOW = dt.datetime(2024, 7, 1, 16, 0, tzinfo=dt.UTC)
HOST = "127.0.0.1"

ErrorLog = list[tuple[int, int, str]]
ConnectIB = Callable[..., Awaitable[IB]]


def make_config(**overrides: object) -> SimulatorConfig:
    """Return a test configuration: free port, frozen clock, no latency."""
    settings: dict[str, object] = {"port": 0, "now_utc": NOW}
    settings.update(overrides)
    return SimulatorConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
async def sim() -> AsyncIterator[IBGatewaySimulator]:
    """A running simulator with the default rules and real-time windows."""
    async with IBGatewaySimulator(make_config()) as simulator:
        yield simulator


@pytest.fixture
async def connect_ib() -> AsyncIterator[ConnectIB]:
    """Connect ib_async clients (disconnected at teardown); errors go to ``ib.errors_seen``."""
    clients: list[IB] = []

    async def connect(port: int, client_id: int = 1, **kwargs: object) -> IB:
        ib = IB()
        errors: ErrorLog = []
        ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
        ib.errors_seen = errors  # type: ignore[attr-defined]
        clients.append(ib)
        kwargs.setdefault("timeout", 5)
        await ib.connectAsync(HOST, port, clientId=client_id, **kwargs)
        return ib

    yield connect
    for ib in clients:
        ib.disconnect()


def codes_seen(ib: IB) -> list[int]:
    """Return the error codes an ib_async client has received so far."""
    return [code for _, code, _ in ib.errors_seen]  # type: ignore[attr-defined]
