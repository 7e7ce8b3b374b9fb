"""The connector against a real gateway's operating life, played by the simulator over TCP with
unmodified ib_async: link loss with the socket up (1100 -> 1101 / 1102), slow answers that time
out and are cancelled at IB, and an HMDS farm inactive at connect (2107). What the connector
decides from each answer (retry, re-issue, fail) is in test_orchestration.py."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from ktrdr_ib_connector.memory import segment_command
from ktrdr_ib_connector.testing import sim_config, wait_connected
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import (
    FetchBars,
    IbConnectionEvent,
    IbLinkLost,
    IbLinkRestored,
    IbStatus,
    SegmentFetched,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import read_all, wait_for_job_event
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Starter = Callable[..., Awaitable[ServiceApp]]

END = dt.datetime(2024, 6, 26, tzinfo=dt.UTC)


def _needs(sim: IBGatewaySimulator, *methods: str) -> None:
    missing = [m for m in methods if not hasattr(sim, m)]
    if missing:
        pytest.skip(f"the simulator has no {', '.join(missing)} yet")


def _command(
    symbol: str = "AAPL",
    kind: InstrumentType = InstrumentType.STK,
    what: WhatToShow = WhatToShow.TRADES,
    tf: Timeframe = Timeframe.M5,
    span: dt.timedelta = dt.timedelta(days=1),
) -> FetchBars:
    return segment_command(symbol, tf, END - span, END, kind=kind, what=what)


async def _send(js: JetStreamContext, command: FetchBars) -> None:
    await js.publish(subjects.CMD_IB_FETCH, codec.encode(command))


async def _outcome(js: JetStreamContext, command: FetchBars, timeout_s: float = 60) -> object:
    return await wait_for_job_event(
        js, command.job_id, {"segment_fetched", "segment_failed"}, timeout_s
    )


async def _status(nc: NATS) -> IbStatus:
    reply = await nc.request(subjects.IB_STATUS, b"", timeout=5)
    return codec.decode(reply.data, IbStatus)


async def _link_events(js: JetStreamContext) -> asyncio.Queue[Any]:
    events: asyncio.Queue[Any] = asyncio.Queue()

    async def on_event(msg: Any) -> None:
        events.put_nowait(codec.decode(msg.data, IbConnectionEvent, subject=msg.subject))

    await js.subscribe(
        subjects.IB_CONNECTION_EVENTS,
        cb=on_event,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
    )
    return events


async def _next(events: asyncio.Queue[Any], kind: type[Any], timeout_s: float = 15) -> Any:
    async with asyncio.timeout(timeout_s):
        while not isinstance(event := await events.get(), kind):
            pass
    return event


def _historical(sim: IBGatewaySimulator) -> list[dict[str, Any]]:
    return [r for r in sim.records() if r["kind"] == "historical"]


async def _in_flight_then_lose_link(
    sim: IBGatewaySimulator, js: JetStreamContext, command: FetchBars
) -> None:
    """Send ``command`` with its first answer held back, and lose IB's link while it waits."""
    sim.slow_next(1, 3.0)
    await _send(js, command)
    await sim.wait_until(lambda c: c["open_requests"] >= 1, wait_s=15)
    assert sim.lose_link()


async def test_link_lost_then_restored_with_data_kept_answers_the_request_in_flight(
    ready: ServiceApp, js: JetStreamContext, nc: NATS, sim: IBGatewaySimulator
) -> None:
    _needs(sim, "lose_link", "restore_link", "slow_next")
    events = await _link_events(js)
    command = _command()
    await _in_flight_then_lose_link(sim, js, command)
    lost = await _next(events, IbLinkLost)
    assert "1100" in lost.reason
    status = await _status(nc)
    assert not status.connected
    assert not status.link_ok
    assert status.link_lost_since is not None and status.link_lost_since <= lost.ts
    assert status.last_error is not None and "1100" in status.last_error
    # Nothing new goes out while IB is not ready (decided in test_orchestration.py); here
    # ib_requests == 1 below says the request in flight was not sent again either.
    assert sim.restore_link(data_lost=False)
    restored = await _next(events, IbLinkRestored)
    assert not restored.data_lost
    outcome = await _outcome(js, command)
    assert isinstance(outcome, SegmentFetched), outcome
    assert outcome.bars > 0
    assert outcome.ib_requests == 1  # the one in flight got its answer
    status = await _status(nc)
    assert status.connected
    assert status.link_ok
    assert status.link_lost_since is None
    assert status.last_error is None  # the condition ended: no stale error


async def test_link_restored_with_data_lost_reissues_the_request_in_flight(
    ready: ServiceApp, js: JetStreamContext, nc: NATS, sim: IBGatewaySimulator
) -> None:
    _needs(sim, "lose_link", "restore_link", "slow_next")
    events = await _link_events(js)
    command = _command()
    await _in_flight_then_lose_link(sim, js, command)
    await _next(events, IbLinkLost)
    first = _historical(sim)[-1]
    assert sim.restore_link(data_lost=True)
    restored = await _next(events, IbLinkRestored)
    assert restored.data_lost
    outcome = await _outcome(js, command)
    assert isinstance(outcome, SegmentFetched), outcome
    assert outcome.ib_requests == 2  # the dropped one and its re-issue
    records = _historical(sim)
    again = [
        r
        for r in records
        if r["seq"] > first["seq"]
        and r["end"] == first["end"]
        and r["duration"] == first["duration"]
    ]
    # Dropped by IB ("lost"); the connector's cancel, which clears ib_async's record of it,
    # can reach the gateway before it has forgotten the request ("cancelled").
    assert next(r for r in records if r["seq"] == first["seq"])["outcome"] in ("lost", "cancelled")
    assert [r["outcome"] for r in again] == ["ok"]  # the gateway's own log shows the re-issue
    stored = await read_all(js, subjects.bars("AAPL", Timeframe.M5))
    assert sum(len(b) for b in stored) == outcome.bars


async def test_slow_answer_times_out_is_cancelled_at_ib_and_retried(
    start_connector: Starter, js: JetStreamContext, nc: NATS, sim: IBGatewaySimulator
) -> None:
    _needs(sim, "slow_next")
    await start_connector(KTRDR_IB_REQUEST_TIMEOUT_S="1")
    await wait_connected(nc)
    sim.slow_next(1, 5.0)
    command = _command()
    await _send(js, command)
    outcome = await _outcome(js, command)
    assert isinstance(outcome, SegmentFetched), outcome
    assert outcome.ib_requests == 2  # the slow one, then the retry
    first, retry = _historical(sim)[-2:]
    assert first["outcome"] == "cancelled"  # the gateway saw the cancel
    assert retry["outcome"] == "ok"
    assert sim.counters()["messages_by_type"].get("cancel_historical", 0) >= 1


@pytest.fixture
async def sim_hmds_inactive() -> Any:
    config = sim_config()
    if not hasattr(config, "hmds_at_connect"):
        pytest.skip("the simulator cannot start with the HMDS farm inactive yet")
    server = IBGatewaySimulator(sim_config(hmds_at_connect="inactive"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_hmds_farm_inactive_at_connect_still_loads_and_is_shown(
    nats_url: str, nc: NATS, js: JetStreamContext, sim_hmds_inactive: IBGatewaySimulator
) -> None:
    from ktrdr_ib_connector.app import build_app
    from ktrdr_ib_connector.testing import connector_settings

    app = build_app(connector_settings(nats_url, sim_hmds_inactive.port))
    await app.start()
    try:
        status = await wait_connected(nc)
        assert status.farms.get("ushmds") == "inactive"
        assert status.last_error is None  # inactive-on-demand is IB's usual state, not a fault
        command = _command()
        await _send(js, command)
        outcome = await _outcome(js, command)
        assert isinstance(outcome, SegmentFetched), outcome
        assert outcome.bars > 0
        status = await _status(nc)
        assert status.farms.get("ushmds") == "ok"  # woken on demand (2106)
        assert status.farms_since["ushmds"] > status.farms_since["usfarm"]  # and since then
    finally:
        await app.stop()
