"""The connector's request/reply endpoints and job cancellation, against the simulator."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import UnknownSymbol
from ktrdr_shared.messages import (
    IbConnectionEvent,
    IbReconnecting,
    IbStatus,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import InstrumentType
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

pytestmark = pytest.mark.integration


async def test_status_reports_the_real_connection(
    ready: ServiceApp, nc: NATS, sim_now: dt.datetime
) -> None:
    status = await KtrdrClient(nc).request(subjects.IB_STATUS, StatusRequest(), IbStatus)
    assert status.connected
    assert status.server_version == 178
    assert status.client_id == 1
    assert status.since is not None
    assert "open_requests" in status.pacing
    # IB's clock, not ours: the simulator runs at its configured "now", years before today
    assert status.server_time is not None
    assert abs((status.server_time - sim_now).total_seconds()) < 600


# The first and the last type tried, over the wire and through the symbol bucket; the
# order itself is decided in test_orchestration.py, and test_fetch.py resolves a stock,
# a forex pair and a future over the wire too.
@pytest.mark.parametrize(
    ("symbol", "kind", "exchange", "currency"),
    [("EURUSD", InstrumentType.CASH, "IDEALPRO", "USD"),
     ("SPX", InstrumentType.IND, "CBOE", "USD")],
)  # fmt: skip
async def test_validate_discovers_the_instrument_type(
    ready: ServiceApp,
    nc: NATS,
    sim: IBGatewaySimulator,
    symbol: str,
    kind: InstrumentType,
    exchange: str,
    currency: str,
) -> None:
    client = KtrdrClient(nc, timeout_s=10)
    info = await client.request(subjects.IB_VALIDATE, ValidateSymbol(symbol=symbol), SymbolInfo)
    assert info.instrument_type is kind
    assert info.exchange == exchange
    assert info.currency == currency
    assert info.trading_hours
    asked = sim.counters()["messages_by_type"].get("contract_details", 0)
    again = await client.request(subjects.IB_VALIDATE, ValidateSymbol(symbol=symbol), SymbolInfo)
    assert again == info
    assert sim.counters()["messages_by_type"].get("contract_details", 0) == asked  # KV cache


async def test_validate_unknown_symbol_is_a_404_with_what_was_tried(
    ready: ServiceApp, nc: NATS
) -> None:
    with pytest.raises(UnknownSymbol, match="tried CASH / STK / FUT / IND") as caught:
        await KtrdrClient(nc, timeout_s=10).request(
            subjects.IB_VALIDATE, ValidateSymbol(symbol="NOSUCH"), SymbolInfo
        )
    # the gateway is the simulator, which said so at connect: the error lists what it serves
    assert caught.value.message.endswith(
        "; this gateway is the ktrdr simulator, which serves only AAPL, MSFT, SPY, BRK B, "
        "EURUSD, GBPUSD, USDJPY, ES, SPX, CL"
    )


async def test_requests_needing_ib_while_ib_is_down_answer_ib_unavailable_at_once(
    nats_url: str, nc: NATS
) -> None:
    import socket

    from ktrdr_ib_connector.app import build_app
    from ktrdr_ib_connector.testing import connector_settings
    from ktrdr_shared.errors import IbUnavailable

    with socket.socket() as probe:  # a port nothing listens on: IB is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    refused: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_event(msg: Msg) -> None:  # the reconnect announced after a refused connect
        event = codec.decode(msg.data, IbConnectionEvent, subject=msg.subject)
        mine = isinstance(event, IbReconnecting) and f":{port} failed" in event.reason
        if mine and not refused.done():
            refused.set_result(None)

    events = await nc.subscribe(subjects.IB_CONNECTION_EVENTS, cb=on_event)
    app = build_app(connector_settings(nats_url, port))
    await app.start()
    try:
        async with asyncio.timeout(20):
            await refused
        client = KtrdrClient(nc, timeout_s=10)
        # the connector answers status even while IB is down
        status = await client.request(subjects.IB_STATUS, StatusRequest(), IbStatus)
        assert not status.connected
        assert status.last_error is not None
        assert f":{port}" in status.last_error  # what is wrong now, in words
        # The wiring of the refusal (a 503 over NATS); validate and head_timestamp refusing
        # alike is decided in test_orchestration.py.
        with pytest.raises(IbUnavailable, match="IB is not available"):
            async with asyncio.timeout(6):  # refused within seconds, not after a timeout
                await client.request(
                    subjects.IB_VALIDATE, ValidateSymbol(symbol="AAPL"), SymbolInfo
                )
    finally:
        await app.stop()
        await events.unsubscribe()
