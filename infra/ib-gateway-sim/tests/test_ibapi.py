"""A second client library: IB's own Python client (``ibapi``) against the simulator.

ib_async is not the only judge of the protocol: the handshake, contract details, historical
bars and an error are checked here with the ``ibapi`` package IB publishes (``ibapi-stable``),
whose client runs a blocking reader thread, so it runs in a worker thread of its own.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

import pytest

ibapi = pytest.importorskip("ibapi")
from ibapi.client import EClient  # noqa: E402
from ibapi.contract import Contract  # noqa: E402
from ibapi.wrapper import EWrapper  # noqa: E402

pytestmark = pytest.mark.integration

WAIT_S = 10.0


class Recorder(EWrapper, EClient):  # type: ignore[misc]
    """An ibapi client that puts every callback it cares about on one queue."""

    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, wrapper=self)
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def nextValidId(self, orderId: int) -> None:
        self.events.put(("next_id", orderId))

    def contractDetails(self, reqId: int, contractDetails: Any) -> None:
        self.events.put(("details", (reqId, contractDetails)))

    def contractDetailsEnd(self, reqId: int) -> None:
        self.events.put(("details_end", reqId))

    def historicalData(self, reqId: int, bar: Any) -> None:
        self.events.put(("bar", (reqId, bar)))

    def historicalDataEnd(self, reqId: int, start: str, end: str) -> None:
        self.events.put(("bars_end", (reqId, start, end)))

    def error(
        self,
        reqId: int,
        errorTime: int,
        errorCode: int,
        errorString: str,
        advancedOrderRejectJson: str = "",
    ) -> None:
        self.events.put(("error", (reqId, errorCode, errorString)))

    def wait(self, kind: str) -> Any:
        """Return the next event of ``kind``, collecting the others it passes."""
        while True:
            got_kind, value = self.events.get(timeout=WAIT_S)
            self.seen.append((got_kind, value))
            if got_kind == kind:
                return value

    seen: list[tuple[str, Any]]


def aapl() -> Contract:
    contract = Contract()
    contract.symbol, contract.secType = "AAPL", "STK"
    contract.exchange, contract.currency = "SMART", "USD"
    return contract


def session(port: int) -> dict[str, Any]:
    """Run one ibapi session against the simulator (blocking); return what it saw."""
    app = Recorder()
    app.seen = []
    app.connect("127.0.0.1", port, clientId=7)
    reader = threading.Thread(target=app.run, daemon=True)
    reader.start()
    try:
        result: dict[str, Any] = {"server_version": app.serverVersion()}
        result["next_id"] = app.wait("next_id")
        app.reqContractDetails(1, aapl())
        result["details"] = app.wait("details")[1]
        app.wait("details_end")
        app.reqHistoricalData(
            2, aapl(), "20240628 16:00:00 US/Eastern", "1 D", "1 hour", "TRADES", 1, 1, False, []
        )
        result["bars_end"] = app.wait("bars_end")
        result["bars"] = [v[1] for k, v in app.seen if k == "bar" and v[0] == 2]
        unknown = Contract()
        unknown.symbol, unknown.secType, unknown.exchange = "ZZZZ", "STK", "SMART"
        app.reqContractDetails(3, unknown)
        result["error"] = app.wait("error")
        while result["error"][0] != 3:  # farm notices (reqId -1) come first
            result["error"] = app.wait("error")
        result["notices"] = [v[1] for k, v in app.seen if k == "error" and v[0] == -1]
        return result
    finally:
        app.disconnect()
        reader.join(WAIT_S)


async def test_ibs_own_client_talks_to_the_simulator(sim) -> None:
    seen = await asyncio.to_thread(session, sim.port)
    assert seen["server_version"] == 178
    assert seen["next_id"] == sim.config.next_valid_id
    details = seen["details"]
    assert (details.contract.conId, details.longName, details.timeZoneId) == (
        265598,
        "APPLE INC",
        "US/Eastern",
    )
    assert details.contract.primaryExchange == "NASDAQ" and details.minTick == 0.01
    bars = seen["bars"]
    assert [bar.date for bar in bars][:2] == [
        "20240628 09:30:00 US/Eastern",
        "20240628 10:00:00 US/Eastern",
    ]
    assert len(bars) == 7 and all(bar.low <= bar.open <= bar.high for bar in bars)
    assert seen["error"] == (3, 200, "No security definition has been found for the request")
    assert seen["notices"] == [2104, 2106, 2158, 2199]  # a real gateway's, then who it is
