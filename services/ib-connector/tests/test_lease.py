"""The gateway lease: one active connector per gateway, a standby that takes over.

Through the lease's port with an in-memory bucket whose entries lapse as the KV bucket's do
(a TTL of 0.3 s here, 3 s in service); the same lease on a real bucket is in
``tests/pool/test_gateway_pool.py``.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from ktrdr_ib_connector.lease import GatewayLease, Holder, gateway_key, holder_now, seed_gate
from ktrdr_ib_connector.memory import MemoryLeaseKV
from ktrdr_ib_connector.pacing import GateHistory, HistoricalRequest, PacingGate, PacingRules
from ktrdr_shared.errors import IbUnavailable

pytestmark = pytest.mark.unit

TTL_S = 0.3
KEY = "127_0_0_1_4002"


def lease(kv: MemoryLeaseKV, client_id: int = 1) -> GatewayLease:
    return GatewayLease(kv, KEY, holder_now("127.0.0.1", 4002, client_id), ttl_s=TTL_S)


def holder_of(kv: MemoryLeaseKV) -> str:
    return msgspec.json.decode(kv.entries[KEY][0], type=Holder).holder


def test_the_key_names_the_gateway_and_is_safe_for_the_bucket() -> None:
    assert gateway_key("127.0.0.1", 4002) == "127_0_0_1_4002"
    assert gateway_key("gw.example.com", 4001) == "gw_example_com_4001"
    assert gateway_key("10.0.0.2", 4002, gateway_id="paper account") == "paper_account"


async def test_the_second_connector_waits_until_the_first_ones_lease_lapses() -> None:
    kv = MemoryLeaseKV(ttl_s=TTL_S)
    first, second = lease(kv, 1), lease(kv, 2)
    stopping = asyncio.Event()
    assert await first.acquire(stopping)
    standby = asyncio.create_task(second.acquire(stopping))
    keeping = asyncio.create_task(
        first.keep(stopping, on_unsure=lambda: None, on_regained=lambda: None, on_lost=print)
    )
    await asyncio.sleep(TTL_S * 3)  # the first renews: the lease never lapses
    assert not standby.done() and holder_of(kv) == first.me.holder
    keeping.cancel()  # the first dies (kill -9): no release, no renewal
    died = time.monotonic()
    assert await asyncio.wait_for(standby, timeout=TTL_S * 4)
    took = time.monotonic() - died
    assert holder_of(kv) == second.me.holder
    assert TTL_S * 0.5 < took < TTL_S * 2  # after the lapse, within a poll of it


async def test_a_release_hands_the_gateway_over_without_waiting_for_the_ttl() -> None:
    kv = MemoryLeaseKV(ttl_s=60.0)  # a lapse would take a minute
    first, second = lease(kv, 1), lease(kv, 2)
    first.ttl_s = second.ttl_s = TTL_S  # but they poll and renew as with a short one
    stopping = asyncio.Event()
    assert await first.acquire(stopping)
    standby = asyncio.create_task(second.acquire(stopping))
    await asyncio.sleep(TTL_S)
    assert not standby.done()
    await first.release()
    assert await asyncio.wait_for(standby, timeout=TTL_S * 2)
    await first.release()  # released already: nothing to do, and not the second's lease
    assert holder_of(kv) == second.me.holder


async def test_an_unreachable_bucket_pauses_ib_until_a_renewal_succeeds() -> None:
    kv = MemoryLeaseKV(ttl_s=TTL_S * 10)  # NATS away but the lease not lapsed
    active = lease(kv)
    stopping = asyncio.Event()
    assert await active.acquire(stopping)
    calls: list[str] = []
    keeping = asyncio.create_task(
        active.keep(
            stopping,
            on_unsure=lambda: calls.append("unsure"),
            on_regained=lambda: calls.append("regained"),
            on_lost=lambda h: calls.append(f"lost to {h}"),
        )
    )
    kv.down = True
    await asyncio.sleep(TTL_S * 2)
    assert calls == ["unsure"]  # once, not at every failed renewal
    kv.down = False
    await asyncio.sleep(TTL_S)
    assert calls == ["unsure", "regained"]
    stopping.set()
    await keeping


async def test_a_lease_lapsed_while_nats_was_away_is_taken_again_if_nobody_took_it() -> None:
    kv = MemoryLeaseKV(ttl_s=TTL_S)
    active = lease(kv)
    stopping = asyncio.Event()
    assert await active.acquire(stopping)
    calls: list[str] = []
    keeping = asyncio.create_task(
        active.keep(
            stopping,
            on_unsure=lambda: calls.append("unsure"),
            on_regained=lambda: calls.append("regained"),
            on_lost=lambda h: calls.append(f"lost to {h}"),
        )
    )
    kv.down = True
    await asyncio.sleep(TTL_S * 2)  # lapsed meanwhile
    kv.down = False
    await asyncio.sleep(TTL_S)
    assert calls == ["unsure", "regained"]
    assert holder_of(kv) == active.me.holder
    stopping.set()
    await keeping


async def test_a_lease_another_connector_took_is_lost_for_good() -> None:
    kv = MemoryLeaseKV(ttl_s=TTL_S)
    active, other = lease(kv, 1), lease(kv, 2)
    stopping = asyncio.Event()
    assert await active.acquire(stopping)
    lost: list[str] = []
    kv.down = True
    keeping = asyncio.create_task(
        active.keep(stopping, on_unsure=lambda: None, on_regained=lambda: None, on_lost=lost.append)
    )
    await asyncio.sleep(TTL_S * 1.5)  # lapsed while this one could not reach NATS ...
    kv.down = False
    assert await other.acquire(stopping)  # ... and the other took it
    await asyncio.wait_for(keeping, timeout=TTL_S * 3)
    assert lost == [other.me.holder] and active.lost_to == other.me.holder
    await active.release()  # not ours any more: left alone
    assert holder_of(kv) == other.me.holder


def hard(end: str, contract: str = "265598") -> HistoricalRequest:
    return HistoricalRequest(contract, "SMART", "TRADES", "1 secs", "1800 S", end)


def test_a_successor_gate_counts_what_the_predecessor_sent() -> None:
    now = [100.0]
    old = PacingGate(PacingRules(), clock=lambda: now[0])
    for i in range(5):  # five of one contract: the burst window is full for 2 s
        old.record(hard(f"20240627-1{i}:00:00"), now[0] - 1.0 + i * 0.1)
    history = msgspec.json.decode(msgspec.json.encode(old.history()), type=GateHistory)

    new_now = [5_000.0]  # another process: its own monotonic clock
    new = PacingGate(PacingRules(), clock=lambda: new_now[0])
    new.seed(history, older_by_s=0.5, quiet_s=0.0, unseen=0)
    # the same request again: IB's identical-request window (15 s) runs from its send
    again = new.earliest(hard("20240627-10:00:00"), new_now[0])
    assert again == pytest.approx(new_now[0] - 0.5 - 1.0 + 15.0 + 0.1)
    # a sixth of that contract waits for the oldest of the five to leave the 2-s window
    sixth = new.earliest(hard("20240627-20:00:00"), new_now[0])
    assert sixth == pytest.approx(new_now[0] - 0.5 - 1.0 + 2.0 + 0.1)
    assert new.state(new_now[0])["hard_requests_in_window"] == 5


def predecessor_of(seconds_ago: float) -> Holder:
    return Holder(
        holder="other", host="h", port=1, client_id=1, since="",
        renewed=time.time() - seconds_ago, gate=GateHistory(),
    )  # fmt: skip


def test_a_takeover_with_the_last_history_goes_on_at_once() -> None:
    gate = PacingGate(PacingRules())
    said = seed_gate(gate, predecessor_of(3.5), ttl_s=3.0)  # lapsed 3 s after its last write
    assert said.startswith("took over from other") and "stale" not in said
    now = time.monotonic()
    assert gate.earliest(hard("20240627-10:00:00"), now) == now
    assert gate.state()["hard_requests_in_window"] == 0


def test_a_takeover_with_a_stale_history_holds_hard_requests_for_what_it_cannot_know() -> None:
    gate = PacingGate(PacingRules())
    said = seed_gate(gate, predecessor_of(8.0), ttl_s=3.0)
    # it may have sent until 1.8 s after it last wrote: 15 s + margin from then
    assert "hard requests held 8.9 s" in said, said
    now = time.monotonic()
    assert gate.earliest(hard("20240627-10:00:00"), now) > now + 8.5
    assert gate.state()["hard_requests_in_window"] == 10  # the unseen ones, counted
    assert seed_gate(PacingGate(), None) == ""  # the first connector of a gateway: nothing


async def test_each_hard_request_is_written_to_the_lease_before_it_is_sent() -> None:
    kv = MemoryLeaseKV(ttl_s=TTL_S * 10)
    active = lease(kv)
    gate = PacingGate(PacingRules())
    active.snapshot = gate.history
    gate.before_hard_send = active.write_ahead
    assert await active.acquire(asyncio.Event())
    async with gate.slot(hard("20240627-10:00:00")):
        written = msgspec.json.decode(kv.entries[KEY][0], type=Holder)
        assert written.gate is not None and len(written.gate.sent) == 1  # before the send
    kv.down = True  # NATS away: the request is not sent, and waits as for a lost connection
    with pytest.raises(IbUnavailable, match="not confirmed"):
        async with gate.slot(hard("20240627-11:00:00")):
            pytest.fail("sent without its write")
    kv.down = False
    async with gate.slot(hard("20240627-12:00:00")):  # the gate is not stuck after it
        pass


async def test_the_lease_carries_the_gate_and_a_standby_keeps_the_last_it_saw() -> None:
    kv = MemoryLeaseKV(ttl_s=TTL_S)
    first, second = lease(kv, 1), lease(kv, 2)
    gate = PacingGate(PacingRules())
    gate.record(hard("20240627-10:00:00"), time.monotonic())
    first.snapshot = gate.history
    stopping = asyncio.Event()
    assert await first.acquire(stopping)
    standby = asyncio.create_task(second.acquire(stopping))
    await asyncio.sleep(TTL_S * 2)  # it has read the holder at least once, then the lease lapsed
    assert await asyncio.wait_for(standby, timeout=TTL_S * 4)
    assert second.predecessor is not None and second.predecessor.holder == first.me.holder
    assert second.predecessor.gate is not None and len(second.predecessor.gate.sent) == 1
