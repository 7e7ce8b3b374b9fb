"""/api/v1/ib and /health against the real ib-connector and the TWS-protocol simulator.

Also the failures the issue names: nobody serving a subject is a 503 naming the
service, a service too slow is a 504 naming it, and bad input is a 400 naming
the field; the gateway keeps serving after each.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from ktrdr_api.testing import Responder
from ktrdr_ib_connector.testing import NOW
from ktrdr_shared import subjects
from ktrdr_shared.messages import IbStatus, StatusRequest
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.nats_server import NatsServer

pytestmark = pytest.mark.integration


async def wait_connected(http: httpx.AsyncClient) -> dict[str, object]:
    """Return the IB status once the connector reports a connection (it connects on start)."""
    async with asyncio.timeout(20):
        while True:
            body = (await http.get("/api/v1/ib/status")).json()
            if body.get("connected"):
                return dict(body)
            await asyncio.sleep(0.05)


async def test_status_and_health_come_from_the_connector(
    connector: ServiceApp, http: httpx.AsyncClient
) -> None:
    status = await wait_connected(http)
    assert status["client_id"] == 1
    assert status["link_ok"] is True
    assert status["last_error"] is None  # nothing is wrong now
    assert status["farms"].get("ushmds") == "ok"  # as the gateway reported at connect
    assert str(status["since"]).endswith("Z")  # RFC 3339 UTC
    assert str(status["server_time"]).startswith("2024-06-28T")  # IB's clock: the simulator's
    health = (await http.get("/api/v1/ib/health")).json()
    assert health["healthy"] is True
    assert "connected to IB" in health["detail"]


async def test_health_reports_every_service(connector: ServiceApp, http: httpx.AsyncClient) -> None:
    await wait_connected(http)
    response = await http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["nats"]["status"] == "up"
    services = {s["name"]: s for s in body["services"]}
    assert services["ib-connector"]["status"] == "up"
    assert services["ib-connector"]["version"] == "0.1.0"
    assert services["data-store"]["status"] == "down"  # not started in this test
    assert "no data-store answers" in services["data-store"]["detail"]
    assert body["status"] == "degraded"


@pytest.mark.parametrize(
    ("symbol", "kind", "exchange"),
    [("EURUSD", "CASH", "IDEALPRO"), ("aapl", "STK", "SMART"), ("ES", "FUT", "CME")],
)
async def test_validate_discovers_the_instrument(
    connector: ServiceApp, http: httpx.AsyncClient, symbol: str, kind: str, exchange: str
) -> None:
    await wait_connected(http)
    response = await http.post("/api/v1/ib/symbols/validate", json={"symbol": symbol})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["symbol"], body["instrument_type"], body["exchange"]) == (
        symbol.upper(),
        kind,
        exchange,
    )
    assert body["currency"] == "USD"
    assert body["trading_hours"]


async def test_unknown_symbol_is_a_404_problem_with_the_connectors_message(
    connector: ServiceApp, http: httpx.AsyncClient
) -> None:
    await wait_connected(http)
    response = await http.post("/api/v1/ib/symbols/validate", json={"symbol": "NOSUCH"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "unknown_symbol"
    assert problem["service"] == "ib-connector"
    assert "NOSUCH" in problem["detail"]
    assert problem["detail"].endswith("check the symbol, its type or what was said of the contract")
    assert problem["hint"] == (
        "this gateway is the ktrdr simulator, which serves only AAPL, "
        "MSFT, SPY, BRK B, EURUSD, GBPUSD, USDJPY, ES, SPX, CL"
    )


async def test_head_timestamp_in_utc(connector: ServiceApp, http: httpx.AsyncClient) -> None:
    await wait_connected(http)
    response = await http.get(
        "/api/v1/ib/head-timestamp", params={"symbol": "AAPL", "timeframe": "1h"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["timeframe"] == "1h"
    assert body["what_to_show"] == "TRADES"
    assert body["head_timestamp"].endswith("Z")
    assert dt.datetime.fromisoformat(body["head_timestamp"]) < NOW


@pytest.mark.parametrize(
    ("request_args", "field", "words"),
    [
        (("POST", "/api/v1/ib/symbols/validate", {"symbol": ""}), "symbol", "length"),
        (("POST", "/api/v1/ib/symbols/validate", {"symbol": "AAPL", "instrument_type": "BOND"}),
         "instrument_type", "use one of STK CASH FUT IND"),
        (("POST", "/api/v1/ib/symbols/validate", {"symbol": "AAPL", "exchange": "X"}),
         "exchange", "unknown field"),
        (("GET", "/api/v1/ib/head-timestamp?symbol=AAPL&timeframe=2h", None), "timeframe",
         "use one of 1s 5s 15s 30s 1m 5m 15m 30m 1h 4h 1d 1w"),
        (("GET", "/api/v1/ib/head-timestamp", None), "symbol", "missing"),
    ],
)  # fmt: skip
async def test_bad_input_is_a_400_naming_the_field(
    http: httpx.AsyncClient, request_args: tuple[str, str, object], field: str, words: str
) -> None:
    method, path, body = request_args
    response = await http.request(method, path, json=body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert field in [e["field"] for e in problem["errors"]]
    assert words.lower() in problem["detail"].lower()
    assert (await http.get("/health")).status_code == 200  # and the gateway keeps serving


async def test_no_connector_is_a_503_naming_it(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/ib/status")
    assert response.status_code == 503
    problem = response.json()
    assert problem["detail"].startswith("no ib-connector is running")
    assert problem["service"] == "ib-connector"
    assert response.headers["retry-after"] == "5"


async def test_a_slow_connector_is_a_504_naming_it(nats_url: str, http: httpx.AsyncClient) -> None:
    stuck = asyncio.Event()

    async def never_answers(_: StatusRequest) -> IbStatus:
        await stuck.wait()
        raise AssertionError("unreachable")

    responder = Responder(nats_url, "ib-connector")
    responder.on("status", subjects.IB_STATUS, StatusRequest, never_answers)
    async with responder:
        response = await http.get("/api/v1/ib/status")  # the test gateway waits 2 s
        stuck.set()
    assert response.status_code == 504
    problem = response.json()
    assert problem["detail"].startswith(
        "the ib-connector did not answer ktrdr.ib.status within 2 s"
    )
    assert problem["code"] == "service_timeout"


async def test_while_nats_is_down_the_gateway_says_so_and_recovers(
    nats_server: NatsServer, http: httpx.AsyncClient
) -> None:
    nats_server.kill()
    health = await http.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "down"
    status = await http.get("/api/v1/ib/status")
    assert status.status_code == 503
    assert status.json()["code"] == "nats_unavailable"
    assert (await http.get("/api/v1/jobs")).json()["code"] == "nats_unavailable"

    nats_server.start()  # same port and store: the gateway reconnects on its own
    async with asyncio.timeout(20):
        while True:
            if (await http.get("/health")).status_code == 200:
                break
            await asyncio.sleep(0.1)  # the client reconnects on its own schedule
    assert (await http.get("/api/v1/ib/status")).json()["code"] == "service_unavailable"


async def test_validate_while_ib_is_down_is_a_503_ib_unavailable_saying_so(
    nats_url: str, http: httpx.AsyncClient
) -> None:
    import socket

    from ktrdr_ib_connector.app import build_app
    from ktrdr_ib_connector.testing import connector_settings

    with socket.socket() as probe:  # a port nothing listens on: the gateway is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = build_app(connector_settings(nats_url, port))
    await app.start()
    try:
        async with asyncio.timeout(20):  # the connector answers status while IB is down
            while True:
                if (await http.get("/api/v1/ib/status")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
        response = await http.post("/api/v1/ib/symbols/validate", json={"symbol": "ZZTOP"})
        assert response.status_code == 503
        problem = response.json()
        assert problem["code"] == "ib_unavailable"
        assert "IB is not available" in problem["detail"]
        health = (await http.get("/health")).json()
        ib = next(s for s in health["services"] if s["name"] == "ib-connector")
        assert ib["status"] == "degraded"
        assert "IB not connected" in ib["detail"]
    finally:
        await app.stop()
