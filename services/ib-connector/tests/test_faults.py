"""The connector against the simulator's faults: drops, restarts, farm outages, client-id
conflicts and a malformed command on the real queue. These are the wiring tests; what the
connector decides for a failed, timed-out or unknown request is in test_orchestration.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import Awaitable, Callable

import pytest
from ib_async import IB
from ktrdr_ib_connector.memory import segment_command
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.messages import (
    ClientIdConflict,
    FetchBars,
    IbConnected,
    IbConnectionEvent,
    IbReconnecting,
    SegmentFetched,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import read_all, wait_for_job_event
from ktrdr_shared.types import Timeframe
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Starter = Callable[..., Awaitable[ServiceApp]]

END = dt.datetime(2024, 6, 26, tzinfo=dt.UTC)


def _command(
    symbol: str = "AAPL", tf: Timeframe = Timeframe.M5, span: dt.timedelta = dt.timedelta(days=3)
) -> FetchBars:
    return segment_command(symbol, tf, END - span, END)


async def _send(js: JetStreamContext, command: FetchBars) -> None:
    await js.publish(subjects.CMD_IB_FETCH, codec.encode(command))


async def _outcome(js: JetStreamContext, command: FetchBars, timeout_s: float = 60) -> object:
    return await wait_for_job_event(
        js, command.job_id, {"segment_fetched", "segment_failed"}, timeout_s
    )


class ConnectionLog:
    """Collect IB connection events with the time each arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, IbConnectionEvent]] = []
        self.changed = asyncio.Event()

    async def start(self, js: JetStreamContext) -> None:
        async def on_event(msg: Msg) -> None:
            event = codec.decode(msg.data, IbConnectionEvent, subject=msg.subject)
            self.events.append((time.monotonic(), event))
            self.changed.set()

        await js.subscribe(
            subjects.IB_CONNECTION_EVENTS,
            cb=on_event,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )

    def names(self) -> list[str]:
        return [type(e).__name__ for _, e in self.events]

    def reconnect_delays(self) -> list[float]:
        """Return the waits the connector announced before each reconnect attempt."""
        return [e.delay_s for _, e in self.events if isinstance(e, IbReconnecting)]

    async def wait_for(self, name: str, after: float = 0.0, timeout_s: float = 30) -> float:
        async with asyncio.timeout(timeout_s):
            while True:
                for at, event in self.events:
                    if at >= after and type(event).__name__ == name:
                        return at
                self.changed.clear()
                await self.changed.wait()


async def test_dropped_connection_comes_back_and_work_completes(
    ready: ServiceApp, js: JetStreamContext, sim: IBGatewaySimulator
) -> None:
    log = ConnectionLog()
    await log.start(js)
    dropped_at = time.monotonic()
    await sim.drop_all_connections()
    await log.wait_for("IbDisconnected", after=dropped_at)
    await log.wait_for("IbConnected", after=dropped_at)
    # the listener never went away: the first attempt, after the first backoff step, connects
    assert log.reconnect_delays() == [0.5], log.names()
    command = _command()
    await _send(js, command)
    assert isinstance(await _outcome(js, command), SegmentFetched)


async def test_gateway_restart_queues_work_and_reconnects_within_5s(
    ready: ServiceApp, js: JetStreamContext, sim: IBGatewaySimulator
) -> None:
    log = ConnectionLog()
    await log.start(js)
    restart = sim.begin_restart(down_s=4.0)
    gone = await log.wait_for("IbDisconnected")
    queued = [_command(span=dt.timedelta(days=d)) for d in (1, 2, 3)]
    for command in queued:  # sent while the gateway is away: they must wait, not fail
        await _send(js, command)
    await restart
    await log.wait_for("IbConnected", after=gone)
    # the decided waits double from 0.5 s and stop at 2 s: back at most 2 s after the gateway
    delays = log.reconnect_delays()
    assert delays and delays == [min(2.0, 0.5 * 2**i) for i in range(len(delays))], delays
    outcomes = [await _outcome(js, c) for c in queued]
    assert all(isinstance(o, SegmentFetched) and o.bars > 0 for o in outcomes), outcomes


async def test_farm_outage_is_not_mistaken_for_an_empty_range(
    ready: ServiceApp, js: JetStreamContext, sim: IBGatewaySimulator
) -> None:
    sim.set_farm_down(True)
    command = _command(tf=Timeframe.M15)
    await _send(js, command)
    await sim.wait_until(lambda c: c["errors_by_code"].get("162", 0) >= 1, wait_s=30)
    sim.set_farm_down(False)
    outcome = await _outcome(js, command)
    assert isinstance(outcome, SegmentFetched)
    assert outcome.bars > 0
    stored = await read_all(js, subjects.bars("AAPL", Timeframe.M15))
    assert sum(len(b) for b in stored) == outcome.bars


async def test_client_id_conflict_moves_to_the_next_id(
    start_connector: Starter, js: JetStreamContext, sim: IBGatewaySimulator
) -> None:
    squatter = IB()
    await squatter.connectAsync("127.0.0.1", sim.port, clientId=1, timeout=5)
    await streams.ensure_streams(js)
    log = ConnectionLog()
    await log.start(js)
    await start_connector()
    try:
        await log.wait_for("IbConnected", timeout_s=30)
        conflict = next(e for _, e in log.events if isinstance(e, ClientIdConflict))
        assert conflict.client_id == 1
        assert conflict.next_client_id == 2
        connected = next(e for _, e in log.events if isinstance(e, IbConnected))
        assert connected.client_id == 2
    finally:
        squatter.disconnect()


async def test_malformed_fetch_by_hand_is_reported_and_service_keeps_serving(
    ready: ServiceApp, js: JetStreamContext
) -> None:
    job = uuid.uuid4().hex
    by_hand = (
        f'{{"job_id": "{job}", "segment_id": "s9", "symbol": "AAPL", "timeframe": "2h",'
        ' "start": "2024-06-20T00:00:00Z", "end": "2024-06-21T00:00:00Z",'
        ' "instrument_type": "STK", "what_to_show": "TRADES"}'
    )
    await js.publish(subjects.CMD_IB_FETCH, by_hand.encode())
    await js.publish(subjects.CMD_IB_FETCH, b"\x00 not even json")
    failed = await wait_for_job_event(js, job, {"segment_failed"})
    assert failed.code == "invalid_request"
    assert "timeframe" in failed.message
    assert "2h" in failed.message
    good = _command(span=dt.timedelta(days=1))
    await _send(js, good)
    assert isinstance(await _outcome(js, good), SegmentFetched)
