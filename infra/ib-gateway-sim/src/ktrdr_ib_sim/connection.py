"""One client's session: handshake, the startApi sync, and dispatch of every later message.

A misbehaving client only ever costs its own connection: framing errors close it, unreadable
fields are answered with 320, unknown message ids are logged and ignored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ktrdr_ib_sim import codes, historical
from ktrdr_ib_sim.codes import IBError
from ktrdr_ib_sim.config import SERVER_VERSION
from ktrdr_ib_sim.requests import OpenRequest
from ktrdr_ib_sim.wire import (
    FieldError,
    Fields,
    FrameError,
    WireValue,
    decode_payload,
    encode_message,
    parse_hello,
    read_frame,
    read_greeting,
)

if TYPE_CHECKING:
    from ktrdr_ib_sim.server import IBGatewaySimulator

logger = logging.getLogger(__name__)

Handler = Callable[["ClientConnection", Fields], None]


class ClientConnection:
    """The server side of one TCP connection."""

    def __init__(
        self,
        sim: IBGatewaySimulator,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.sim = sim
        self.client_id = -1  # unknown until startApi
        self.open_requests: dict[int, OpenRequest] = {}
        self._reader = reader
        self._writer = writer
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.peer = str(writer.get_extra_info("peername"))

    # -- sending -------------------------------------------------------------------------

    def send_bytes(self, data: bytes) -> None:
        """Write framed bytes unless the connection is closing."""
        if not self._closed and not self._writer.is_closing():
            self._writer.write(data)
            self.sim.notify_changed()

    def send(self, fields: Sequence[WireValue]) -> None:
        """Frame and write one message."""
        self.send_bytes(encode_message(fields))

    def send_error(self, req_id: int, error: IBError) -> None:
        """Send an error or notice (id 4, version 2, trailing advancedOrderRejectJson)."""
        self.sim.ledger.error_sent(error.code)
        self.send([4, 2, req_id, error.code, error.text, ""])

    async def drain(self) -> None:
        """Wait until the socket buffer has room again (no-op once closed)."""
        if not self._closed:
            try:
                await self._writer.drain()
            except ConnectionError:
                self.abort()

    # -- lifecycle -----------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a request's answer in the background, cancelled when the connection ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def finish(self, req_id: int, open_request: OpenRequest) -> None:
        """Forget an open historical request once it has ended (unless replaced meanwhile)."""
        if self.open_requests.get(req_id) is open_request and open_request.kind == "historical":
            del self.open_requests[req_id]
            self.sim.notify_changed()

    def abort(self) -> None:
        """Drop the connection at once, as a gateway that dies would."""
        self._shutdown()
        self._writer.transport.abort()

    def close_after_flush(self) -> None:
        """Close once the buffered messages are written (used after error 326)."""
        self._shutdown()
        self._writer.close()

    def _shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        for open_request in self.open_requests.values():
            self.sim.ledger.close(open_request.record, "dropped")
        self.open_requests.clear()
        for task in list(self._tasks):
            task.cancel()
        self.sim.release_client_id(self.client_id, self)
        self.sim.notify_changed()

    # -- reading -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run the session until the peer leaves, breaks framing, or the simulator drops it."""
        try:
            if await self._handshake():
                while not self._closed:
                    payload = await read_frame(self._reader, self.sim.config.max_frame_bytes)
                    self._dispatch(decode_payload(payload))
        except asyncio.IncompleteReadError:
            logger.debug("client %s closed its side", self.peer)
        except FrameError as e:
            self.sim.ledger.totals.malformed_messages += 1
            logger.warning("closing %s: %s", self.peer, e)
        except ConnectionError as e:
            logger.debug("connection %s lost: %s", self.peer, e)
        finally:
            self.abort()

    async def _handshake(self) -> bool:
        await read_greeting(self._reader)
        hello = parse_hello(await read_frame(self._reader, self.sim.config.max_frame_bytes))
        # Every message layout here is server version 178's, so a client that cannot speak
        # exactly 178 (an older maximum, or a newer minimum) is refused rather than sent layouts
        # it would misread (a v163 client crashes decoding v178 contract details).
        if not hello.min_version <= SERVER_VERSION <= hello.max_version:
            self.sim.ledger.totals.refused_versions += 1
            logger.warning(
                "refusing %s: it offers API versions %d..%d; this simulator speaks only %d",
                self.peer,
                hello.min_version,
                hello.max_version,
                SERVER_VERSION,
            )
            return False
        zone = ZoneInfo("America/New_York")
        stamp = dt.datetime.fromtimestamp(self.sim.now_s(), zone).strftime("%Y%m%d %H:%M:%S %Z")
        self.send([min(hello.max_version, SERVER_VERSION), stamp])
        return True

    def _dispatch(self, fields: list[str]) -> None:
        name, handler = _HANDLERS.get(fields[0] if fields else "", ("unknown", None))
        self.sim.ledger.message(name)
        self.sim.notify_changed()
        if handler is None:
            self.sim.ledger.totals.unknown_messages += 1
            logger.warning("ignoring unknown message id %r from %s", fields[:1], self.peer)
            return
        msg = Fields(fields)
        msg.skip(1)
        try:
            handler(self, msg)
        except FieldError as e:
            self.sim.ledger.totals.malformed_messages += 1
            logger.warning("unreadable %s message from %s: %s", name, self.peer, e)
            self.send_error(-1, codes.READ_ERROR)

    # -- the startup sync (spec 2) -------------------------------------------------------

    def start_api(self, msg: Fields) -> None:
        """Handle startApi: claim the client id, then managedAccounts, nextValidId, notices."""
        msg.skip(1)  # version
        client_id = msg.integer()
        if not self.sim.claim_client_id(client_id, self):
            self.sim.ledger.totals.duplicate_client_ids += 1
            self.send_error(-1, codes.CLIENT_ID_IN_USE)
            self.close_after_flush()
            return
        self.client_id = client_id
        cfg = self.sim.config
        self.send([15, 1, ",".join(cfg.accounts)])
        self.send([9, 1, cfg.next_valid_id])
        for notice in self.sim.ops.connect_notices():
            self.send_error(-1, notice)

    def account_updates(self, msg: Fields) -> None:
        """Handle reqAccountUpdates: a few values, the account time, accountDownloadEnd."""
        msg.skip(1)  # version
        subscribe, account = msg.flag(), msg.text()
        if not subscribe:
            return
        for key, value in (("NetLiquidation", "1000000.00"), ("TotalCashValue", "1000000.00")):
            self.send([6, 2, key, value, "USD", account])
        now = dt.datetime.fromtimestamp(self.sim.now_s(), dt.UTC)
        self.send([8, 1, now.strftime("%H:%M")])
        self.send([54, 1, account])


def _answer(*reply: WireValue, with_req_id: bool = False) -> Handler:
    """Build a handler that answers with a fixed message (optionally echoing the reqId)."""

    def handler(conn: ClientConnection, msg: Fields) -> None:
        if with_req_id:
            msg.skip(1)  # version
            conn.send([*reply, msg.integer()])
        else:
            conn.send(list(reply))

    return handler


def _ignore(conn: ClientConnection, msg: Fields) -> None:
    """Accept a message that needs no answer."""


def _current_time(conn: ClientConnection, msg: Fields) -> None:
    conn.send([49, 1, conn.sim.now_s()])


def _managed_accounts(conn: ClientConnection, msg: Fields) -> None:
    conn.send([15, 1, ",".join(conn.sim.config.accounts)])


def _next_ids(conn: ClientConnection, msg: Fields) -> None:
    conn.send([9, 1, conn.sim.config.next_valid_id])


_HANDLERS: dict[str, tuple[str, Handler | None]] = {
    "71": ("start_api", ClientConnection.start_api),
    "61": ("positions", _answer(62, 1)),
    "5": ("open_orders", _answer(53, 1)),
    "99": ("completed_orders", _answer(102)),
    "6": ("account_updates", ClientConnection.account_updates),
    "76": ("account_updates_multi", _answer(74, 1, with_req_id=True)),
    "7": ("executions", _answer(55, 1, with_req_id=True)),
    "15": ("auto_open_orders", _ignore),
    "16": ("all_open_orders", _answer(53, 1)),
    "17": ("managed_accounts", _managed_accounts),
    "8": ("next_ids", _next_ids),
    "49": ("current_time", _current_time),
    "59": ("market_data_type", _ignore),
    "64": ("cancel_positions", _ignore),
    "77": ("cancel_account_updates_multi", _ignore),
    "9": ("contract_details", historical.serve_contract_details),
    "20": ("historical", historical.begin_historical),
    "25": ("cancel_historical", historical.cancel_historical),
    "87": ("head_timestamp", historical.begin_head_timestamp),
    "90": ("cancel_head_timestamp", historical.cancel_head_timestamp),
}
