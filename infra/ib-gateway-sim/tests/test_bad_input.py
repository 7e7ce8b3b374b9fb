"""Malformed frames, unknown messages and half-closed sockets cost only their own connection."""

from __future__ import annotations

import asyncio
import struct

import pytest
from ktrdr_ib_sim import RawTwsClient
from ktrdr_ib_sim.rawclient import error_code, historical_request

pytestmark = pytest.mark.integration

END = "20240628 16:00:00 US/Eastern"


async def still_serves(sim, connect_ib) -> None:
    """Prove the simulator still answers a well-behaved ib_async client."""
    client = await connect_ib(sim.port, 99)
    assert await client.ib.reqCurrentTimeAsync() is not None


async def test_a_bad_greeting_is_closed(sim, connect_ib) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without an answer
    writer.close()
    await still_serves(sim, connect_ib)


@pytest.mark.parametrize("offer", [b"v100..151", b"v157..163", b"v179..190"])
async def test_a_client_that_cannot_speak_v178_is_refused(sim, offer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(b"API\0" + struct.pack(">I", len(offer)) + offer)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert sim.counters()["refused_versions"] == 1


async def test_a_newer_client_gets_v178(sim) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(b"API\0" + struct.pack(">I", 9) + b"v100..200")
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    assert (await reader.readexactly(size)).split(b"\0")[0] == b"178"
    writer.close()


async def test_an_oversized_frame_closes_that_connection_only(sim, connect_raw, connect_ib) -> None:
    bystander = await connect_raw(sim.port, 2)
    offender = await connect_raw(sim.port, 1)
    offender.send_raw(struct.pack(">I", 0x7FFFFFFF) + b"x")
    assert await offender.closed_by_peer()
    await sim.wait_until(lambda c: c["malformed_messages"] == 1)
    bystander.send(49, 1)
    assert (await bystander.recv())[0] == "49"
    await still_serves(sim, connect_ib)


async def test_unknown_message_ids_are_ignored(sim, connect_raw) -> None:
    client = await connect_raw(sim.port)
    client.send(999, 1, "whatever")
    client.send("not-a-number")
    client.send(49, 1)
    assert (await client.recv())[0] == "49"  # nothing was answered to the first two
    assert sim.counters()["unknown_messages"] == 2


async def test_an_unreadable_field_gets_320_and_the_session_goes_on(sim, connect_raw) -> None:
    client = await connect_raw(sim.port)
    client.send(20, "abc", 0, "AAPL", "STK")
    assert error_code(await client.recv()) == 320
    client.send(*historical_request(5, "AAPL", end=END, bar_size="1 hour", duration="1 D"))
    assert (await client.recv())[0] == "17"


async def test_a_half_closed_socket_ends_its_requests(start_sim, connect_ib) -> None:
    sim = await start_sim(latency_ms=200)
    client = await RawTwsClient.connect("127.0.0.1", sim.port, 1)
    client.send(*historical_request(5, "AAPL", end=END, bar_size="1 hour", duration="1 D"))
    await sim.wait_until(lambda c: c["open_requests"] == 1)
    client._writer.write_eof()  # the client stops sending but could still read
    counters = await sim.wait_until(lambda c: c["connections"] == 0)
    assert counters["open_requests"] == 0
    assert sim.records()[0]["outcome"] == "dropped"  # its answer was still 200 ms away
    await client.close()
    await still_serves(sim, connect_ib)


async def test_a_client_vanishing_mid_answer_does_not_hurt(sim, connect_ib) -> None:
    client = await RawTwsClient.connect("127.0.0.1", sim.port, 1)
    client.send(
        *historical_request(
            5,
            "EUR",
            sec_type="CASH",
            exchange="IDEALPRO",
            end=END,
            bar_size="1 min",
            duration="5 D",
            what_to_show="MIDPOINT",
        )
    )
    client._writer.transport.abort()
    await sim.wait_until(lambda c: c["connections"] == 0)
    await still_serves(sim, connect_ib)
