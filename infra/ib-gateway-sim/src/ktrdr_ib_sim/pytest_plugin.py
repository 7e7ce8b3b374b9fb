"""pytest fixtures for the simulator (opt-in: ``from ktrdr_ib_sim.pytest_plugin import *``).

* ``sim_defaults`` - the settings every simulator of a test starts from; a conftest overrides
  it (the simulator's own tests: real-time windows without latency; the services' tests,
  through ``ktrdr_ib_connector.testing``: compressed time, frozen at the connector's ``NOW``).
* ``start_sim`` - ``await start_sim(**overrides)`` starts one more simulator on those
  defaults; every simulator started is stopped after the test.
* ``sim`` - one running simulator: the defaults plus the test's
  ``@pytest.mark.sim_options(...)`` keywords.

Needs the package's ``testing`` extra (pytest, pytest-asyncio).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ktrdr_ib_sim.config import SimulatorConfig
from ktrdr_ib_sim.server import IBGatewaySimulator

__all__ = ["sim", "sim_defaults", "start_sim"]  # a conftest takes them with ``import *``

StartSim = Callable[..., Awaitable[IBGatewaySimulator]]


@pytest.fixture
def sim_defaults() -> dict[str, Any]:
    """Return the settings a test's simulators start from (a free loopback port)."""
    return {"port": 0}


@pytest.fixture
async def start_sim(sim_defaults: dict[str, Any]) -> AsyncIterator[StartSim]:
    """Return a starter of simulators (``sim_defaults`` plus keyword overrides)."""
    started: list[IBGatewaySimulator] = []

    async def start(**overrides: Any) -> IBGatewaySimulator:
        simulator = IBGatewaySimulator(SimulatorConfig(**{**sim_defaults, **overrides}))
        await simulator.start()
        started.append(simulator)
        return simulator

    try:
        yield start
    finally:
        for simulator in started:
            await simulator.stop()


@pytest.fixture
async def sim(start_sim: StartSim, request: pytest.FixtureRequest) -> IBGatewaySimulator:
    """Return a running simulator (``@pytest.mark.sim_options(...)`` adds settings)."""
    marker = request.node.get_closest_marker("sim_options")
    return await start_sim(**(marker.kwargs if marker else {}))
