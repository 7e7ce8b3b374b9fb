"""What a web page may not do through the gateway (issue 15): a foreign Host (DNS rebinding)
is refused before any route, a request from another origin is refused, and a state-changing
request takes JSON only, so a cross-site "simple" request never changes state."""

from __future__ import annotations

import httpx
import pytest
from ktrdr_api.browser import allowed_hosts, host_name, refusal
from ktrdr_shared import streams
from nats.js import JetStreamContext

LOAD = b'{"symbol": "AAPL", "timeframe": "1d"}'
DEFAULT = allowed_hosts("127.0.0.1", ())


@pytest.mark.unit
@pytest.mark.parametrize(
    ("host", "name"),
    [("localhost:8000", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]:80", "[::1]"),
     ("Attacker.Example:8000", "attacker.example"), ("::1", "::1")],
)  # fmt: skip
def test_host_names_lose_their_port(host: str, name: str) -> None:
    assert host_name(host) == name


@pytest.mark.unit
def test_the_allow_list_is_loopback_the_bind_host_and_the_configured_names() -> None:
    assert {"localhost", "127.0.0.1", "[::1]", "::1"} == DEFAULT
    assert allowed_hosts("0.0.0.0", ("ktrdr.lan",)) == DEFAULT | {"ktrdr.lan"}
    assert "10.0.0.5" in allowed_hosts("10.0.0.5", ())


@pytest.mark.unit
@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [("GET", {"host": "localhost:8000"}, None),
     ("GET", {"host": "attacker.example"}, 421),
     ("GET", {"host": "attacker.example:8000"}, 421),
     ("GET", {}, 421),
     ("POST", {"host": "127.0.0.1:8000", "origin": "http://evil.example"}, 403),
     ("POST", {"host": "127.0.0.1:8000", "origin": "null"}, 403),
     ("POST", {"host": "127.0.0.1:8000", "origin": "http://127.0.0.1:8000",
               "content-type": "application/json", "content-length": "2"}, None),
     ("POST", {"host": "127.0.0.1:8000", "content-type": "text/plain",
               "content-length": "2"}, 415),
     ("POST", {"host": "127.0.0.1:8000", "content-type": "text/plain"}, 415),
     ("DELETE", {"host": "127.0.0.1:8000", "content-length": "2"}, 415),
     ("POST", {"host": "127.0.0.1:8000"}, None),
     ("GET", {"host": "127.0.0.1:8000", "content-type": "text/plain"}, None)],
)  # fmt: skip
def test_refusals(method: str, headers: dict[str, str], status: int | None) -> None:
    error = refusal(method, headers, DEFAULT)
    assert (error.status if error else None) == status


@pytest.mark.unit
def test_a_star_answers_any_host() -> None:
    assert refusal("GET", {"host": "any.example"}, allowed_hosts("0.0.0.0", ("*",))) is None


async def _commands(js: JetStreamContext) -> int:
    return (await js.stream_info(streams.COMMANDS.name)).state.messages


@pytest.mark.integration
@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "text/plain", "Origin": "http://evil.example"},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"},
        {"Content-Type": "multipart/form-data; boundary=x"},
        {"Content-Type": "application/json", "Origin": "http://evil.example"},
    ],
)
async def test_a_cross_site_simple_request_changes_nothing(
    http: httpx.AsyncClient, js: JetStreamContext, headers: dict[str, str]
) -> None:
    before = await _commands(js)
    response = await http.post("/api/v1/data/load", content=LOAD, headers=headers)
    assert response.status_code in (403, 415), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert await _commands(js) == before


@pytest.mark.integration
async def test_a_json_load_from_the_gateway_s_own_origin_is_accepted(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    before = await _commands(js)
    own = str(http.base_url).rstrip("/")
    response = await http.post(
        "/api/v1/data/load",
        content=LOAD,
        headers={"Content-Type": "application/json", "Origin": own},
    )
    assert response.status_code == 202, response.text
    assert await _commands(js) == before + 1


@pytest.mark.integration
@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io"])
async def test_a_foreign_host_is_refused_before_any_route(
    http: httpx.AsyncClient, js: JetStreamContext, host: str
) -> None:
    before = await _commands(js)
    for method, path in [
        ("GET", "/api/v1/jobs"),
        ("GET", "/health"),
        ("POST", "/api/v1/data/load"),
    ]:
        response = await http.request(
            method, path, headers={"Host": host}, content=LOAD if method == "POST" else None
        )
        assert response.status_code == 421, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "KTRDR_API_ALLOWED_HOSTS" in response.json()["detail"]
    assert await _commands(js) == before
    assert (await http.get("/api/v1/jobs", headers={"Host": "localhost"})).status_code == 200
