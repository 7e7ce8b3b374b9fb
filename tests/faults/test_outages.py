"""Outages mid-load: nats-server restarted, the gateway's restart window, an HMDS farm outage.

Each runs the connector and the data-store as processes against the simulator process, starts
multi-symbol loads, breaks something while they run, and then requires every job to complete
with exactly the bars the simulator serves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import numpy as np
import pytest
from ktrdr_data_store.store import ParquetBarStore
from ktrdr_ib_connector.testing import expected_stamps
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import (
    IbConnected,
    IbConnectionEvent,
    IbReconnecting,
    IbStatus,
    JobCompleted,
    LoadResult,
)
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import SIM_NOW, Stack
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UTC = dt.UTC
NOW = dt.datetime.fromisoformat(SIM_NOW)
START = dt.datetime(2024, 5, 1, tzinfo=UTC)
LOADS = [  # symbol, sec type, timeframe, IB bar size, whatToShow
    ("AAPL", "STK", Timeframe.M5, "5 mins", "TRADES"),
    ("EURUSD", "CASH", Timeframe.M5, "5 mins", "MIDPOINT"),
    ("ES", "FUT", Timeframe.M5, "5 mins", "TRADES"),
]


@pytest.fixture
async def stack(nats_server: NatsServer, nc: NATS, tmp_path: Path) -> AsyncIterator[Stack]:
    running = Stack(nats_server.url, tmp_path)
    try:
        await running.up(nc)
        yield running
    finally:
        running.down()


async def start_loads(nc: NATS) -> list[str]:
    client = KtrdrClient(nc)
    return [await client.load_data(sym, tf.value, start=START) for sym, _, tf, _, _ in LOADS]


async def all_complete(nc: NATS, stack: Stack, jobs: list[str]) -> None:
    for job_id in jobs:
        done = await outcome(nc, job_id)
        assert isinstance(done, JobCompleted), done
        assert isinstance(done.result, LoadResult)
        assert not done.result.failed_segments, done.result.failed_segments
    store = ParquetBarStore(stack.data_dir)
    for symbol, sec, tf, bar_size, what in LOADS:
        got = store.read(symbol, tf).column("ts").cast("int64").to_numpy()
        np.testing.assert_array_equal(got, expected_stamps(symbol, sec, bar_size, START, what=what))


async def outcome(nc: NATS, job_id: str) -> object:
    """Return the job's terminal event, asking again while this client itself reconnects."""
    async with asyncio.timeout(180):
        while True:
            try:
                return await wait_for_job_event(
                    nc.jetstream(), job_id, {"completed", "failed", "cancelled"}
                )
            except nats.errors.Error:
                await asyncio.sleep(0.2)


def no_data_answers(stack: Stack) -> int:
    """Return how many 162s (no data) the simulator has sent so far."""
    url = f"{stack.sim_control_url}/counters"
    with urllib.request.urlopen(url, timeout=5) as reply:
        counters = json.load(reply)
    return int(counters["errors_by_code"].get("162", 0))


async def more_no_data_answers(stack: Stack, than: int) -> None:
    """Return once the simulator has sent more than ``than`` 162s (it is another process:
    its counters are read again every 50 ms)."""
    while True:
        if no_data_answers(stack) > than:
            return
        await asyncio.sleep(0.05)


def control(stack: Stack, path: str) -> None:
    request = urllib.request.Request(f"{stack.sim_control_url}{path}", method="POST")
    with urllib.request.urlopen(request, timeout=5) as reply:
        assert reply.status in (200, 202)


async def first_planned(nc: NATS, jobs: list[str]) -> None:
    for job_id in jobs:
        await wait_for_job_event(nc.jetstream(), job_id, {"planned"}, timeout_s=30)


async def test_nats_server_restarted_mid_load(
    stack: Stack, nats_server: NatsServer, nc: NATS
) -> None:
    jobs = await start_loads(nc)
    await first_planned(nc, jobs)
    nats_server.restart()  # same port, same store: JetStream state survives
    await all_complete(nc, stack, jobs)


async def test_gateway_restart_window_mid_load(stack: Stack, nc: NATS) -> None:
    jobs = await start_loads(nc)
    await first_planned(nc, jobs)
    # The stack starts the simulator and the connector together, so the connector's first
    # connects may have failed and announced their growing waits: the restart must find it
    # connected, and ``events`` must hold only what follows, for the announced waits of this
    # outage to start at the first step.
    await ib_connected(nc)
    events = await nc.subscribe("ktrdr.evt.ib.connection.>")
    await nc.flush()
    control(stack, "/faults/restart?down_s=3")
    seen: list[IbConnectionEvent] = []
    async with asyncio.timeout(60):  # until connected again after reconnect attempts
        while not (seen and isinstance(seen[-1], IbConnected) and reconnect_delays(seen)):
            msg = await events.next_msg(timeout=60)
            seen.append(codec.decode(msg.data, IbConnectionEvent))
    # The connector's decided waits: doubling from 0.5 s, capped at 2 s, so it is back at
    # most 2 s after the gateway is (the delays it announced are the delays it waits).
    delays = reconnect_delays(seen)
    assert delays == [min(2.0, 0.5 * 2**i) for i in range(len(delays))], seen
    await all_complete(nc, stack, jobs)


async def ib_connected(nc: NATS) -> None:
    """Return once the connector says it is connected to IB (asked every 0.1 s)."""
    async with asyncio.timeout(30):
        while True:
            reply = await nc.request(subjects.IB_STATUS, b"", timeout=5)
            if codec.decode(reply.data, IbStatus).connected:
                return
            await asyncio.sleep(0.1)


def reconnect_delays(events: list[IbConnectionEvent]) -> list[float]:
    """Return the delays of the reconnect attempts announced in ``events``."""
    return [e.delay_s for e in events if isinstance(e, IbReconnecting)]


async def test_farm_outage_mid_load(stack: Stack, nc: NATS) -> None:
    jobs = await start_loads(nc)
    await first_planned(nc, jobs)
    control(stack, "/faults/farm?state=down")
    # Requests meanwhile get "no data" (162) and are retried: wait until one has met the outage.
    await asyncio.wait_for(more_no_data_answers(stack, than=no_data_answers(stack)), 60)
    control(stack, "/faults/farm?state=up")
    await all_complete(nc, stack, jobs)
