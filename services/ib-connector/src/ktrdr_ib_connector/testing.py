"""Test helpers: the simulator and a connector in compressed time (for every package's tests).

The connector's own tests, the data-store's load tests and the system tests all need the same
pair: a TWS-protocol simulator with a frozen "now" and a connector pointed at it.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from ktrdr_ib_sim import SimulatorConfig
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import IbStatus
from nats.aio.client import Client as NATS

from ktrdr_ib_connector.config import IbConnectorSettings

# The simulator's frozen "now": a Friday after the US close, inside the calendars.
NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)
TIME_SCALE = 0.01  # IB's 10-minute pacing window lasts 6 s


def sim_config(**overrides: object) -> SimulatorConfig:
    """Return a simulator configuration on a free port, frozen at ``NOW``, in compressed time."""
    options: dict[str, object] = {"port": 0, "time_scale": TIME_SCALE, "now_utc": NOW,
                                  "soft_delay_ms": 0, **overrides}  # fmt: skip
    return SimulatorConfig(**options)  # type: ignore[arg-type]


def connector_env(nats_url: str, port: int, **extra: str) -> dict[str, str]:
    """Return the environment pointing a connector at the simulator, in compressed time."""
    return {"KTRDR_NATS_URL": nats_url, "KTRDR_IB_PORT": str(port),
            "KTRDR_IB_TIME_SCALE": str(TIME_SCALE), "KTRDR_IB_REQUEST_TIMEOUT_S": "5",
            "KTRDR_IB_RETRY_DELAY_S": "0.2", "KTRDR_IB_CONNECT_TIMEOUT_S": "3",
            **extra}  # fmt: skip


def connector_settings(nats_url: str, port: int, **extra: str) -> IbConnectorSettings:
    """Return settings pointing the connector at the simulator, in compressed time."""
    return IbConnectorSettings.from_env(connector_env(nats_url, port, **extra))


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
