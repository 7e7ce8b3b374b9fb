"""Every way ib_async connects completes its startup sync; a taken client id gets 326."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB
from ib_async.ib import StartupFetchNONE
from ktrdr_ib_sim.testing import ErrorRecorder

pytestmark = pytest.mark.integration

FARM_NOTICES = {2104, 2106, 2158}
STARTUP = {
    "positions",
    "open_orders",
    "completed_orders",
    "account_updates",
    "account_updates_multi",
    "executions",
}


def startup_requests_seen(sim) -> set[str]:
    return STARTUP & set(sim.counters()["messages_by_type"])


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, STARTUP),
        ({"readonly": True}, STARTUP - {"open_orders", "completed_orders"}),
        ({"fetchFields": StartupFetchNONE}, {"positions"}),
    ],
    ids=["default", "readonly", "fetch-none"],
)
async def test_connect_variants_complete_every_startup_request(
    sim, connect_ib, options: dict[str, object], expected: set[str]
) -> None:
    # raiseSyncErrors turns any unanswered startup request into a ConnectionError.
    client = await connect_ib(sim.port, 1, raiseSyncErrors=True, **options)
    assert client.ib.isConnected()
    assert client.ib.client.serverVersion() == 178
    assert client.ib.managedAccounts() == ["DU1234567"]
    assert set(client.errors.codes) >= FARM_NOTICES
    assert startup_requests_seen(sim) == expected


async def test_the_simulator_says_what_it_is_and_which_symbols_it_serves(sim, connect_ib) -> None:
    client = await connect_ib(sim.port, 1, readonly=True, fetchFields=StartupFetchNONE)
    await asyncio.sleep(0)  # notices follow the startup sync in the same flush
    notices = [(code, text) for req_id, code, text in client.errors.seen if req_id == -1]
    assert notices[-1] == (
        2199,
        "ktrdr IB Gateway simulator; it serves: AAPL, MSFT, SPY, "
        "BRK B, EURUSD, GBPUSD, USDJPY, ES, SPX, CL",
    )
    assert [code for code, _ in notices[:-1]] == [2104, 2106, 2158]  # a real gateway's, first


async def test_client_id_zero_binds_manual_orders(sim, connect_ib) -> None:
    await connect_ib(sim.port, 0, readonly=True, fetchFields=StartupFetchNONE, raiseSyncErrors=True)
    assert sim.counters()["messages_by_type"]["auto_open_orders"] == 1
    assert sim.counters()["client_ids"] == [0]


async def test_several_clients_with_distinct_ids_connect_at_once(sim, connect_ib) -> None:
    clients = await asyncio.gather(
        *(connect_ib(sim.port, cid, raiseSyncErrors=True) for cid in (1, 2, 3))
    )
    assert all(c.ib.isConnected() for c in clients)
    assert sim.counters()["client_ids"] == [1, 2, 3]
    times = await asyncio.gather(*(c.ib.reqCurrentTimeAsync() for c in clients))
    assert len({t.timestamp() for t in times}) == 1  # the frozen clock


async def test_two_accounts_get_one_multi_update_each(start_sim, connect_ib) -> None:
    sim = await start_sim(accounts=("DU1111111", "DU2222222"))
    client = await connect_ib(sim.port, 1, raiseSyncErrors=True)
    assert client.ib.managedAccounts() == ["DU1111111", "DU2222222"]
    messages = sim.counters()["messages_by_type"]
    assert messages["account_updates_multi"] == 2
    assert "account_updates" not in messages


async def test_a_taken_client_id_gets_326_and_is_closed(sim, connect_ib) -> None:
    first = await connect_ib(sim.port, 7)
    second = IB()
    errors = ErrorRecorder.attach(second)
    with pytest.raises(TimeoutError):  # ib_async only gives up when its timeout runs out
        await second.connectAsync("127.0.0.1", sim.port, clientId=7, timeout=1)
    assert 326 in errors.codes
    assert not second.isConnected()
    counters = sim.counters()
    assert counters["duplicate_client_ids"] == 1
    assert counters["errors_by_code"]["326"] == 1
    assert counters["client_ids"] == [7]
    assert first.ib.isConnected()
    assert await first.ib.reqCurrentTimeAsync() is not None  # the first client is unaffected


async def test_a_client_id_is_free_again_after_its_client_left(sim, connect_ib) -> None:
    first = await connect_ib(sim.port, 9)
    first.ib.disconnect()
    await sim.wait_until(lambda counters: counters["client_ids"] == [])
    again = await connect_ib(sim.port, 9, raiseSyncErrors=True)
    assert again.ib.isConnected()
