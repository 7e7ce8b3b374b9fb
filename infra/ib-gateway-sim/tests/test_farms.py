"""Data farms: the notices at connect, inactive-on-demand, outages and what they do to requests."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB, Stock
from ktrdr_ib_sim.codes import SIMULATOR_NOTICE_CODE

# The simulator does not slow down the repeated identical requests these tests make.
pytestmark = [pytest.mark.integration, pytest.mark.sim_options(soft_delay_ms=0)]

END = "20240628 16:00:00 US/Eastern"
AAPL = Stock("AAPL", "SMART", "USD")


SIM = SIMULATOR_NOTICE_CODE


async def hourly(ib: IB, **kwargs):
    return await ib.reqHistoricalDataAsync(AAPL, END, "1 D", "1 hour", "TRADES", True, 2, **kwargs)


async def test_connect_reports_the_farms_in_a_real_gateways_order(sim, connect_ib):
    client = await connect_ib(sim.port, 1)
    assert client.errors.seen[:-1] == [
        (-1, 2104, "Market data farm connection is OK:usfarm"),
        (-1, 2106, "HMDS data farm connection is OK:ushmds"),
        (-1, 2158, "Sec-def data farm connection is OK:secdefnj"),
    ]
    assert client.errors.codes[-1] == SIM  # then the simulator names itself (no IB code)


async def test_an_inactive_hmds_farm_wakes_on_the_first_request(start_sim, connect_ib):
    sim = await start_sim(
        soft_delay_ms=0, hmds_at_connect="inactive", farm_activation_ms=2000, time_scale=0.05
    )
    client = await connect_ib(sim.port, 1)
    assert client.errors.codes == [2104, 2107, 2158, SIM]
    assert "inactive but should be available upon demand.ushmds" in client.errors.seen[1][2]
    assert len(await hourly(client.ib)) == 7
    assert client.errors.codes[-1] == 2106  # woken before the answer
    assert len(await hourly(client.ib)) == 7
    first, second = sim.records()
    assert first["delay_s"] == pytest.approx(2.0 * 0.05) and second["delay_s"] == 0
    counters = sim.counters()
    assert (counters["farm_activations"], counters["farms"]["hmds"]) == (1, "ok")


@pytest.mark.parametrize(
    ("farm", "state", "code"),
    [("market", "down", 2103), ("market", "inactive", 2108), ("hmds", "down", 2105),
     ("hmds", "inactive", 2107), ("secdef", "down", 2157)],
)  # fmt: skip
async def test_every_farm_change_is_announced(sim, connect_ib, farm, state, code):
    client = await connect_ib(sim.port, 1)
    assert sim.set_farm(farm, state) and not sim.set_farm(farm, state)
    await client.errors.wait_for(code)
    client.errors.seen.clear()
    sim.set_farm(farm, "ok")
    await client.errors.wait_for({"market": 2104, "hmds": 2106, "secdef": 2158}[farm])
    late = await connect_ib(sim.port, 2)
    assert late.errors.codes == [2104, 2106, 2158, SIM]


async def test_an_hmds_outage_can_hold_requests_until_the_farm_returns(sim, connect_ib):
    client = await connect_ib(sim.port, 1)
    sim.set_farm("hmds", "down", requests="hold")
    pending = asyncio.ensure_future(hourly(client.ib, timeout=0))
    await sim.wait_until(lambda c: c["requests_held"] == 1)
    assert not pending.done()
    sim.set_farm("hmds", "ok")
    assert len(await asyncio.wait_for(pending, 5)) == 7
    assert 162 not in client.errors.codes
    sim.set_farm("hmds", "down", requests="no_data")  # today's behaviour: 162 no data
    assert len(await hourly(client.ib)) == 0
    assert "HMDS query returned no data" in client.errors.seen[-1][2]


async def test_a_secdef_outage_holds_contract_details(sim, connect_ib):
    client = await connect_ib(sim.port, 1)
    sim.set_farm("secdef", "down")
    pending = asyncio.ensure_future(client.ib.reqContractDetailsAsync(AAPL))
    await sim.wait_until(lambda c: c["requests_held"] == 1)
    sim.set_farm("secdef", "ok")
    assert len(await asyncio.wait_for(pending, 5)) == 1


def test_unknown_farms_and_states_are_refused(sim):
    with pytest.raises(ValueError, match="unknown farm"):
        sim.set_farm("moon", "down")
    with pytest.raises(ValueError, match="cannot be"):
        sim.set_farm("secdef", "inactive")
    with pytest.raises(ValueError, match="requests must be"):
        sim.set_farm("hmds", "down", requests="later")
