"""The HTTP control port drives the same faults and reads the same ledger as the in-process API."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from ib_async import Stock

pytestmark = pytest.mark.integration


async def call(port: int, method: str, path: str) -> tuple[int, dict]:
    """Make one HTTP request to the control port (urllib in a thread, as a CLI would)."""

    def blocking() -> tuple[int, dict]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    return await asyncio.to_thread(blocking)


@pytest.fixture
async def controlled(start_sim):
    sim = await start_sim(control_port=0, soft_delay_ms=0)
    return sim, sim.control_port


async def test_health_counters_and_ledger(controlled, connect_ib) -> None:
    sim, port = controlled
    client = await connect_ib(sim.port, 1)
    await client.ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
    assert await call(port, "GET", "/health") == (
        200,
        {"ok": True, "port": sim.port, "listening": True},
    )
    status, counters = await call(port, "GET", "/counters")
    assert status == 200 and counters["requests_by_type"] == {"contract_details": 1}
    status, ledger = await call(port, "GET", "/ledger")
    assert [r["kind"] for r in ledger["records"]] == ["contract_details"]
    status, later = await call(port, "GET", f"/ledger?since={ledger['records'][-1]['seq']}")
    assert later["records"] == []
    assert await call(port, "POST", "/ledger/reset") == (200, {"reset": True})
    assert (await call(port, "GET", "/counters"))[1]["requests_by_type"] == {}


async def test_fault_routes(controlled, connect_ib) -> None:
    sim, port = controlled
    client = await connect_ib(sim.port, 1)
    status, body = await call(port, "POST", "/faults/farm?state=down")
    assert (status, body["farm"], body["state"], body["changed"]) == (200, "hmds", "down", True)
    await client.errors.wait_for(2105)
    status, body = await call(port, "POST", "/faults/farm?state=up")
    assert (status, body["farms"]["hmds"]) == (200, "ok")
    await client.errors.wait_for(2106)
    assert await call(port, "POST", "/faults/stall?n=2") == (200, {"stalls_armed": 2})
    assert await call(port, "POST", "/faults/drop") == (200, {"dropped": 1})
    status, body = await call(port, "POST", "/faults/restart?down_s=0.2")
    assert (status, body["restarting"]) == (202, True)
    counters = await sim.wait_until(lambda c: c["restarts"] == 1 and c["listening"])
    assert (counters["drops"], counters["farm_changes"]) == (1, 2)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("POST", "/faults/farm?state=sideways", 400),
     ("POST", "/faults/restart", 400), ("POST", "/faults/restart?down_s=soon", 400),
     ("POST", "/faults/stall?n=-1", 400), ("GET", "/faults/drop", 404),
     ("POST", "/faults/farm?farm=secdef&state=inactive", 400),
     ("POST", "/faults/farm?farm=moon&state=down", 400),
     ("POST", "/faults/farm?state=down&requests=maybe", 400),
     ("POST", "/faults/link?state=gone", 400), ("POST", "/faults/link?state=restored", 400),
     ("POST", "/faults/slow?n=1", 400), ("POST", "/faults/slow?n=-1&s=1", 400),
     ("POST", "/clock?now=soon", 400)],
)  # fmt: skip
async def test_bad_control_requests_say_what_is_wrong(controlled, method, path, status) -> None:
    _, port = controlled
    answer_status, body = await call(port, method, path)
    assert answer_status == status and body["error"]


async def test_link_farm_and_slow_routes(controlled, connect_ib) -> None:
    sim, port = controlled
    client = await connect_ib(sim.port, 1)
    assert await call(port, "POST", "/faults/link?state=lost") == (
        200,
        {"link": "lost", "changed": True},
    )
    await client.errors.wait_for(1100)
    assert (await call(port, "GET", "/counters"))[1]["link_lost"] is True
    status, body = await call(port, "POST", "/faults/link?state=restored&data=maintained")
    assert (status, body["changed"]) == (200, True)
    await client.errors.wait_for(1102)
    await call(port, "POST", "/faults/link?state=lost")
    await call(port, "POST", "/faults/link?state=restored&data=lost")
    await client.errors.wait_for(1101)
    status, body = await call(port, "POST", "/faults/farm?farm=market&state=inactive")
    assert (status, body["farms"]["market"]) == (200, "inactive")
    await client.errors.wait_for(2108)
    status, body = await call(port, "POST", "/faults/farm?farm=hmds&state=down&requests=hold")
    assert (body["farms"]["hmds"], body["requests"]) == ("down", "hold")
    assert await call(port, "POST", "/faults/slow?n=2&s=1.5") == (200, {"slow_armed": 2})
    counters = sim.counters()
    assert (counters["link_losses"], counters["link_restores_data_lost"]) == (2, 1)


async def test_the_clock_route_moves_the_data_clock(controlled) -> None:
    sim, port = controlled
    status, body = await call(port, "POST", "/clock?now=2024-09-21T12:00:00Z")
    assert (status, body["now"], sim.now_s()) == (200, 1726920000, 1726920000)
