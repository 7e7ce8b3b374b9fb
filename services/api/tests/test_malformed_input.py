"""Malformed input answered 400 with a problem naming the field (issue 15, item 7): deeply
nested JSON, timestamps and cursors outside what int64 nanoseconds hold, and symbols with a
trailing newline or space. None of these reach a service."""

from __future__ import annotations

import base64
from urllib.parse import quote

import httpx
import pytest
from ktrdr_shared import streams
from nats.js import JetStreamContext


def _problem(response: httpx.Response, field: str | None = None) -> dict[str, object]:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    if field is not None:
        assert [e["field"] for e in body["errors"]] == [field], body  # type: ignore[attr-defined]
    return body


@pytest.mark.integration
@pytest.mark.parametrize("depth", [100_000, 4_900_000])
async def test_deeply_nested_json_is_a_400(http: httpx.AsyncClient, depth: int) -> None:
    body = b"[" * depth + b"]" * depth
    for path in ("/api/v1/data/load", "/api/v1/training/runs"):
        response = await http.post(path, content=body, headers={"Content-Type": "application/json"})
        # decoded straight into the route's struct: refused at the first '[', never nested into
        assert "Expected 'object', got 'array'" in str(_problem(response, "body")["detail"])


@pytest.mark.integration
@pytest.mark.parametrize(
    "moment",
    [
        "1500-01-01T00:00:00Z",
        "9999-12-31T00:00:00Z",
        "2262-04-12T00:00:00+00:00",
        "1677-01-01T00:00:00Z",
    ],
)
async def test_a_timestamp_outside_int64_nanoseconds_is_a_400_naming_it(
    http: httpx.AsyncClient, js: JetStreamContext, moment: str
) -> None:
    before = (await js.stream_info(streams.COMMANDS.name)).state.messages
    load = await http.post(
        "/api/v1/data/load", json={"symbol": "AAPL", "timeframe": "1h", "start": moment}
    )
    assert "1677-09-22 .. 2262-04-11" in str(_problem(load, "start")["detail"])
    assert (await js.stream_info(streams.COMMANDS.name)).state.messages == before
    query = await http.get("/api/v1/data/AAPL/1h", params={"end": moment})
    _problem(query, "end")
    coverage = await http.get("/api/v1/data/AAPL/1h/coverage", params={"start": moment})
    _problem(coverage, "start")


@pytest.mark.integration
@pytest.mark.parametrize("nanos", ["99999999999999999999", "-9223372036854775809"])
async def test_a_cursor_outside_int64_nanoseconds_is_a_400_naming_it(
    http: httpx.AsyncClient, nanos: str
) -> None:
    cursor = base64.urlsafe_b64encode(nanos.encode()).decode()
    response = await http.get("/api/v1/data/AAPL/1h", params={"cursor": cursor})
    assert "next_cursor" in str(_problem(response, "cursor")["detail"])


@pytest.mark.integration
@pytest.mark.parametrize("symbol", ["AAPL\n", "MSFT ", " MSFT", "AAPL\r\n"])
async def test_a_symbol_is_matched_whole(http: httpx.AsyncClient, symbol: str) -> None:
    load = await http.post("/api/v1/data/load", json={"symbol": symbol, "timeframe": "1h"})
    _problem(load, "symbol")
    bars = await http.get(f"/api/v1/data/{quote(symbol)}/1h")
    assert bars.status_code == 400, bars.text
    validate = await http.post("/api/v1/ib/symbols/validate", json={"symbol": symbol})
    _problem(validate, "symbol")


@pytest.mark.integration
async def test_the_exact_attack_aapl_percent_0a_is_a_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/data/AAPL%0A/1h")
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["field"] == "symbol"


NAIVE_FIX = "has no timezone; add Z (UTC) or an offset such as +02:00"


@pytest.mark.integration
async def test_a_naive_timestamp_says_to_add_z_or_an_offset(http: httpx.AsyncClient) -> None:
    load = await http.post(
        "/api/v1/data/load",
        json={"symbol": "AAPL", "timeframe": "1h", "start": "2024-06-24T00:00:00"},
    )
    detail = str(_problem(load, "start")["detail"])
    assert detail == f"body field 'start': 2024-06-24T00:00:00 {NAIVE_FIX}"
    for route in ("/api/v1/data/AAPL/1h", "/api/v1/data/AAPL/1h/coverage"):
        query = await http.get(route, params={"start": "2024-06-24T00:00:00"})
        detail = str(_problem(query, "start")["detail"])
        assert detail == f"query field 'start': 2024-06-24T00:00:00 {NAIVE_FIX}"
