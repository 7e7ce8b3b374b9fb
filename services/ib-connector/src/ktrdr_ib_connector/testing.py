"""Test helpers and fixtures: the simulator and a connector in compressed time.

The connector's own tests, the data-store's load tests and the system tests all need the same
pair: a TWS-protocol simulator with a frozen "now" and a connector pointed at it. A test
directory opts in from its conftest with ``from ktrdr_ib_connector.testing import *`` (the
``testing`` extra installs what it needs), which brings ``__all__``:

* ``nats_server``/``nats_url``/``nc``/``js`` of ``ktrdr_shared.testing.pytest_plugin``;
* ``sim``/``start_sim`` of ``ktrdr_ib_sim.pytest_plugin``, and ``sim_defaults`` here: the
  services' simulator, on a free port, frozen at ``NOW``, in compressed time;
* ``connector`` - the real ib-connector on ``sim``, yielded once it reports IB connected.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ktrdr_ib_sim import IBGatewaySimulator, SimulatorConfig, expected_bars
from ktrdr_ib_sim.pytest_plugin import sim, start_sim
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import IbStatus
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.pytest_plugin import js, nats_server, nats_url, nc
from nats.aio.client import Client as NATS

from ktrdr_ib_connector.config import IbConnectorSettings

# The fixtures a services' test directory takes with ``import *`` (see the module docstring).
__all__ = ["connector", "js", "nats_server", "nats_url", "nc", "sim", "sim_defaults", "start_sim"]

# The simulator's frozen "now": a Friday after the US close, inside the calendars.
NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)
TIME_SCALE = 0.01  # IB's 10-minute pacing window lasts 6 s


#: The services' simulator: a free port, frozen at ``NOW``, in compressed time, no soft delay.
SIM_DEFAULTS: dict[str, Any] = {
    "port": 0,
    "time_scale": TIME_SCALE,
    "now_utc": NOW,
    "soft_delay_ms": 0,
}


def sim_config(**overrides: Any) -> SimulatorConfig:
    """Return a simulator configuration on a free port, frozen at ``NOW``, in compressed time."""
    return SimulatorConfig(**{**SIM_DEFAULTS, **overrides})


def connector_env(nats_url: str, port: int, **extra: str) -> dict[str, str]:
    """Return the environment pointing a connector at the simulator, in compressed time."""
    return {
        "KTRDR_NATS_URL": nats_url,
        "KTRDR_IB_PORT": str(port),
        "KTRDR_IB_TIME_SCALE": str(TIME_SCALE),
        "KTRDR_IB_REQUEST_TIMEOUT_S": "5",
        "KTRDR_IB_RETRY_DELAY_S": "0.2",
        "KTRDR_IB_CONNECT_TIMEOUT_S": "3",
        **extra,
    }


def connector_settings(nats_url: str, port: int, **extra: str) -> IbConnectorSettings:
    """Return settings pointing the connector at the simulator, in compressed time."""
    return IbConnectorSettings.from_env(connector_env(nats_url, port, **extra))


def expected_stamps(
    symbol: str,
    sec_type: str,
    bar_size: str,
    start: dt.datetime,
    end: dt.datetime = NOW,
    *,
    what: str = "TRADES",
) -> np.ndarray:
    """Return the stamps (ns) of the simulator's bars that the store keeps in ``[start, end)``.

    The store stamps a daily bar 00:00 UTC of its session date, which for forex and futures
    is after the session opened (the evening before), so the simulator is asked from earlier on.
    """
    frame = expected_bars(
        symbol, sec_type, bar_size, what, False, start - dt.timedelta(days=3), end, now_utc=NOW
    )
    if not len(frame):
        return np.zeros(0, np.int64)
    dates = pd.to_datetime(frame["date"], utc=True).dt.as_unit("ns")
    stamps: np.ndarray = np.asarray(dates.astype("int64").to_numpy(), dtype=np.int64)
    lo, hi = int(pd.Timestamp(start).value), int(pd.Timestamp(end).value)
    return stamps[(stamps >= lo) & (stamps < hi)]


async def wait_connected(nc: NATS, timeout_s: float = 20.0) -> IbStatus:
    """Wait until some connector reports a ready IB connection; return its status."""
    async with asyncio.timeout(timeout_s):
        while True:
            try:
                reply = await nc.request(subjects.IB_STATUS, b"", timeout=2)
                status = codec.decode(reply.data, IbStatus)
                if status.connected:
                    return status
            except Exception:  # no connector yet, or an error reply: ask again
                pass
            await asyncio.sleep(0.05)


# -- pytest fixtures: a conftest imports them (see the module docstring) --


@pytest.fixture
def sim_defaults() -> dict[str, Any]:
    """Return the services' simulator settings (``SIM_DEFAULTS``) for ``sim``/``start_sim``."""
    return dict(SIM_DEFAULTS)


@pytest.fixture
async def connector(
    nats_url: str, sim: IBGatewaySimulator, nc: NATS, request: pytest.FixtureRequest
) -> AsyncIterator[ServiceApp]:
    """Run the real ib-connector against the simulator; yield it once it is connected.

    ``@pytest.mark.connector_options(KTRDR_...="...")`` adds to its settings.
    """
    from ktrdr_ib_connector.app import build_app  # the app imports this module's package

    marker = request.node.get_closest_marker("connector_options")
    extra = dict(marker.kwargs) if marker else {}
    app = build_app(connector_settings(nats_url, sim.port, **extra))
    await app.start()
    try:
        await wait_connected(nc)
        yield app
    finally:
        await app.stop()
