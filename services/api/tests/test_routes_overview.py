"""/api/v1/overview and its live feed against the real ib-connector and the simulator.

The feed's interval is set longer than any test waits (``FOREVER``) where the test must show
that a change alone sent an event: whatever arrives after the first event was sent because
the IB connection changed, not because a tick came.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from ktrdr_api.app import create_app
from ktrdr_api.cli.api_client import SseEvent, parse_sse
from ktrdr_api.testing import api_settings, serve_api
from ktrdr_ib_connector.testing import TIME_SCALE
from ktrdr_ib_sim import IBGatewaySimulator
from ktrdr_shared import streams, subjects
from ktrdr_shared.runtime import ServiceApp, flush_subscriptions
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration

FOREVER = 3600.0
KEY = "Xq7dV2mPz9LkR4tWc8NbY3hJf6GsA1uE5oKiT0vBnQw"


@contextlib.asynccontextmanager
async def gateway(nats_url: str, interval_s: float, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    """Serve the gateway with the overview gathered every ``interval_s``; yield a client."""
    settings = api_settings(nats_url, **env)
    app = create_app(settings, overview_interval_s=interval_s)
    async with (
        serve_api(settings, app=app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def overview_events(http: httpx.AsyncClient) -> AsyncIterator[SseEvent]:
    """Yield the overview feed's events (the stream does not end: close the generator)."""
    headers = {"Accept": "text/event-stream"}
    async with http.stream("GET", "/api/v1/overview/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        async for line in response.aiter_lines():
            lines.append(line)
            if line == "":
                for event in parse_sse(iter(lines)):
                    assert event.event == "overview"
                    yield event
                lines = []


async def take(events: AsyncIterator[SseEvent], count: int) -> list[SseEvent]:
    """Return the next ``count`` events (within 20 s)."""
    async with asyncio.timeout(20):
        return [await anext(events) for _ in range(count)]


@pytest.fixture
async def declared(js: JetStreamContext) -> None:
    await streams.ensure_all(js)


async def test_the_snapshot_says_ib_its_pacing_every_service_and_jetstream(
    connector: ServiceApp, nats_url: str, declared: None
) -> None:
    async with gateway(nats_url, FOREVER) as http:
        response = await http.get("/api/v1/overview")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ts"].endswith("Z")
    assert body["problem"] is None
    assert (body["ib"]["connected"], body["ib"]["client_id"]) == (True, 1)
    assert body["pacing"] == {
        "requests_in_window": 0,
        "window_max": 60,
        "window_s": pytest.approx(600 * TIME_SCALE),  # the window as the connector runs it
        "next_free_s": 0.0,
        "waiting_requests": 0,
        "open_requests": 0,
        "soft_delay_s": 0.0,
    }
    services = {s["name"]: s for s in body["services"]}
    assert set(services) == {"api", "ib-connector"}
    connector_stats = services["ib-connector"]
    assert connector_stats["version"] == "0.1.0" and connector_stats["started"].endswith("Z")
    endpoints = {e["name"]: e for e in connector_stats["endpoints"]}
    assert endpoints["status"]["subject"] == subjects.IB_STATUS
    assert endpoints["status"]["requests"] >= 1  # this snapshot's own, at least
    assert connector_stats["requests"] == sum(e["requests"] for e in endpoints.values())
    assert body["missing_services"] == ["data-store", "trainer"]
    by_name = {s["name"]: s for s in body["jetstream"]["streams"]}
    assert {"KTRDR_COMMANDS", "KTRDR_BARS", "KTRDR_EVENTS"} <= set(by_name)
    commands = by_name["KTRDR_COMMANDS"]
    assert commands["consumer_pending"]["ib-connector-commands"] == 0
    assert commands["consumers"] == len(commands["consumer_pending"])
    assert body["jetstream"]["problem"] is None
    assert body["jetstream"]["account"]["streams"] == len(by_name)


async def test_the_feed_starts_at_once_and_an_ib_disconnect_sends_a_snapshot_now(
    connector: ServiceApp, sim: IBGatewaySimulator, nats_url: str, declared: None
) -> None:
    async with gateway(nats_url, FOREVER) as http:
        events = overview_events(http)
        [first] = await take(events, 1)  # sent on connect: the interval is an hour
        assert first.data["ib"]["connected"] is True
        restart = asyncio.create_task(sim.restart(down_s=2.0))
        try:
            [dropped] = await take(events, 1)  # only the connection event can have sent it
            assert dropped.data["ib"]["connected"] is False
            assert dropped.data["ib"]["last_error"]  # it says why
            assert dropped.data["ts"] > first.data["ts"]
            async with asyncio.timeout(20):  # back: the connected event sends one too
                async for event in events:
                    if event.data["ib"]["connected"]:
                        break
        finally:
            await restart
            await events.aclose()  # type: ignore[attr-defined]


async def test_two_clients_share_one_poll_per_interval(
    connector: ServiceApp, nats_url: str, nc: NATS, declared: None
) -> None:
    spy = await nc.subscribe(subjects.IB_STATUS)  # counts the status requests, answers none
    await flush_subscriptions(nc)
    async with gateway(nats_url, 0.3) as http:
        first, second = overview_events(http), overview_events(http)
        try:
            seen_first = await take(first, 1)
            more_first, seen_second = await asyncio.gather(take(first, 3), take(second, 3))
            seen_first += more_first
            await flush_subscriptions(nc)  # every request sent so far has reached the spy
            requests = spy.pending_msgs
        finally:
            await first.aclose()  # type: ignore[attr-defined]
            await second.aclose()  # type: ignore[attr-defined]
    stamps_first = [e.data["ts"] for e in seen_first]
    stamps_second = [e.data["ts"] for e in seen_second]
    assert len(set(stamps_first)) == 4  # a new snapshot each time
    assert set(stamps_second) <= set(stamps_first)  # the second client's are the first's
    # One request per snapshot (and perhaps one being gathered now), not one per client.
    assert len(set(stamps_first)) <= requests <= len(set(stamps_first)) + 1


async def test_the_overview_needs_the_key_and_says_when_no_connector_answers(
    nats_url: str, declared: None
) -> None:
    async with gateway(nats_url, FOREVER, KTRDR_API_KEY=KEY) as http:
        assert (await http.get("/api/v1/overview")).status_code == 401
        assert (await http.get("/api/v1/overview/events")).status_code == 401
        response = await http.get("/api/v1/overview", headers={"X-API-Key": KEY})
    assert response.status_code == 200
    body = response.json()
    assert (body["ib"], body["pacing"]) == (None, None)
    assert "no ib-connector is running" in body["problem"]
    assert body["missing_services"] == ["ib-connector", "data-store", "trainer"]
