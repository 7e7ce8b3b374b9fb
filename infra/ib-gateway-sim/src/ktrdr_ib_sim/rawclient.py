"""A bare TWS socket client: for tests and benchmarks that must bypass ib_async's own pacing.

ib_async throttles itself to 45 messages per second; this client sends exactly what it is told,
as fast as it is told, so tests can prove the gateway's limits from the outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable, Sequence

from ktrdr_ib_sim.codes import SIMULATOR_NOTICE_CODE
from ktrdr_ib_sim.config import MIN_CLIENT_VERSION, SERVER_VERSION
from ktrdr_ib_sim.wire import GREETING, WireValue, decode_payload, encode_message

Message = list[str]


class RawTwsClient:
    """One raw connection: handshake, startApi, then free-form messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self.server_version = 0
        self.received: list[Message] = []

    @classmethod
    async def connect(
        cls, host: str, port: int, client_id: int = 1, *, start_api: bool = True
    ) -> RawTwsClient:
        """Open a connection, do the handshake and (by default) startApi.

        With ``start_api`` it returns after the startup notices, which end with the simulator's
        own notice (``codes.SIMULATOR_NOTICE_CODE``), so the next message read is an answer to
        the caller's own requests.
        """
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        hello = f"v{MIN_CLIENT_VERSION}..{SERVER_VERSION}".encode()
        writer.write(GREETING + struct.pack(">I", len(hello)) + hello)
        version, _ = await client.recv()
        client.server_version = int(version)
        if start_api:
            client.send(71, 2, client_id, "")
            first = await client.recv()
            if error_code(first) != 326:
                await client.recv_until(lambda m: error_code(m) == SIMULATOR_NOTICE_CODE)
        return client

    def send(self, *fields: WireValue) -> None:
        """Frame and send one message."""
        self._writer.write(encode_message(fields))

    def send_raw(self, data: bytes) -> None:
        """Send bytes exactly as given (for malformed-input tests)."""
        self._writer.write(data)

    async def recv(self, wait_s: float = 10.0) -> Message:
        """Return the next message's fields."""
        head = await asyncio.wait_for(self._reader.readexactly(4), wait_s)
        payload = await asyncio.wait_for(
            self._reader.readexactly(struct.unpack(">I", head)[0]), wait_s
        )
        message = decode_payload(payload)
        self.received.append(message)
        return message

    async def recv_until(self, done: Callable[[Message], bool], wait_s: float = 10.0) -> Message:
        """Read messages until one satisfies ``done``; return it."""
        while True:
            message = await self.recv(wait_s)
            if done(message):
                return message

    async def closed_by_peer(self, wait_s: float = 10.0) -> bool:
        """Read until the server closes the socket; return True once it has."""
        try:
            while True:
                await self.recv(wait_s)
        except (asyncio.IncompleteReadError, ConnectionError):
            return True

    async def close(self) -> None:
        """Close the connection."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):  # the server may already have dropped us
            await self._writer.wait_closed()


def historical_request(
    req_id: int,
    symbol: str,
    *,
    sec_type: str = "STK",
    exchange: str = "SMART",
    currency: str = "USD",
    end: str = "",
    bar_size: str = "5 secs",
    duration: str = "60 S",
    use_rth: bool = False,
    what_to_show: str = "TRADES",
    format_date: int = 2,
    keep_up_to_date: bool = False,
) -> Sequence[WireValue]:
    """Return reqHistoricalData (id 20) fields exactly as ib_async lays them out at v178."""
    contract: list[WireValue] = [
        0,
        symbol,
        sec_type,
        "",
        0.0,
        "",
        "",
        exchange,
        "",
        currency,
        "",
        "",
    ]
    return [
        20,
        req_id,
        *contract,
        False,
        end,
        bar_size,
        duration,
        use_rth,
        what_to_show,
        format_date,
        keep_up_to_date,
        "",
    ]


def head_timestamp_request(
    req_id: int,
    symbol: str,
    *,
    sec_type: str = "STK",
    exchange: str = "SMART",
    currency: str = "USD",
    what_to_show: str = "TRADES",
    use_rth: bool = False,
    format_date: int = 1,
) -> Sequence[WireValue]:
    """Return reqHeadTimeStamp (id 87) fields as ib_async lays them out."""
    contract: list[WireValue] = [
        0,
        symbol,
        sec_type,
        "",
        0.0,
        "",
        "",
        exchange,
        "",
        currency,
        "",
        "",
    ]
    return [87, req_id, *contract, False, use_rth, what_to_show, format_date]


def error_code(message: Message) -> int | None:
    """Return the code of an error message ``[4, 2, reqId, code, ...]``, else None."""
    return int(message[3]) if message and message[0] == "4" else None
