"""The one long-lived IB connection: connect, prove readiness, watch, reconnect forever.

Readiness means "a request succeeds" (``reqCurrentTime`` answers), not "the
socket is open". The connection is watched for drops (ib_async's
``disconnectedEvent``), for sleep/wake (the wall clock jumping against the
monotonic clock, after which the socket may be dead without knowing it) and
for the HMDS farm's state (2105 broken / 2106 OK). Every change is an event:
``connected``, ``disconnected``, ``reconnecting``, ``client_id_conflict``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ib_async import IB
from ib_async.ib import StartupFetchNONE
from ktrdr_shared.messages import (
    ClientIdConflict,
    IbConnected,
    IbDisconnected,
    IbReconnecting,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import utc_now

log = logging.getLogger(__name__)

EventSink = Callable[[Event], Awaitable[None]]

CLIENT_ID_IN_USE = 326
HMDS_BROKEN, HMDS_OK = 2105, 2106


@dataclass(frozen=True)
class ConnectionOptions:
    """How to reach the gateway and how patiently to retry it.

    Attributes:
        host: gateway host.
        port: gateway port (4002 paper / 4001 live gateway, 7497 / 7496 TWS).
        client_id: the first client id to try; the next is tried on a conflict (326).
        connect_timeout_s: how long one connect (with ib_async's startup sync) may take.
        probe_timeout_s: how long the readiness probe may take.
        backoff_first_s: the first reconnect delay.
        backoff_cap_s: the longest reconnect delay (short: a refused connect costs nothing,
            and the gateway must be used again within seconds of its return).
        watch_interval_s: how often the watchdog looks at the connection and the clocks.
        clock_jump_s: a wall-clock jump beyond the monotonic clock this large means sleep/wake.
    """

    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 1
    connect_timeout_s: float = 5.0
    probe_timeout_s: float = 5.0
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 2.0
    watch_interval_s: float = 1.0
    clock_jump_s: float = 5.0


@dataclass
class ConnectionState:
    """What ``ktrdr.ib.status`` reports about the connection."""

    connected: bool = False
    since: datetime | None = None
    client_id: int = 1
    server_version: int | None = None
    last_error: str | None = None
    hmds_ok: bool = True
    hmds_outages: int = 0
    # reqId -> was the HMDS farm up when IB's error for that request arrived?
    farm_ok_at_error: dict[int, bool] = field(default_factory=dict)


class IbConnection:
    """Own one ``ib_async.IB`` and keep it connected for as long as ``run`` runs."""

    def __init__(self, options: ConnectionOptions, publish: EventSink) -> None:
        self.options = options
        self.publish = publish
        self.ib = IB()
        self.ib.RaiseRequestErrors = True  # errors tied to a request raise RequestError
        self.state = ConnectionState(client_id=options.client_id)
        self.ready = asyncio.Event()
        self._lost = asyncio.Event()
        self._conflict = False
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected

    async def run(self, stopping: asyncio.Event) -> None:
        """Connect, watch and reconnect with capped backoff until ``stopping`` is set."""
        attempt = 0
        while not stopping.is_set():
            if await self._connect_once():
                attempt = 0
                reason = await self._watch(stopping)
                if stopping.is_set():
                    break
                await self._emit(IbDisconnected, reason=reason)
            attempt += 1
            delay = min(
                self.options.backoff_cap_s, self.options.backoff_first_s * 2 ** (attempt - 1)
            )
            await self._emit(IbReconnecting, attempt=attempt, delay_s=delay,
                             reason=self.state.last_error or "")  # fmt: skip
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
        self.ready.clear()
        self.ib.disconnect()

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait until the connection is ready; return False on timeout."""
        try:
            await asyncio.wait_for(self.ready.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def _connect_once(self) -> bool:
        o, s = self.options, self.state
        self._conflict = False
        self._lost.clear()
        try:
            await self.ib.connectAsync(o.host, o.port, clientId=s.client_id,
                                       timeout=o.connect_timeout_s, readonly=True,
                                       fetchFields=StartupFetchNONE)  # fmt: skip
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), o.probe_timeout_s)
        except (TimeoutError, OSError, ConnectionError) as e:
            self.ib.disconnect()
            await self._after_failed_connect(e)
            return False
        s.connected, s.since = True, utc_now()
        s.server_version = self.ib.client.serverVersion()
        s.hmds_ok = True
        self.ready.set()
        await self._emit(IbConnected, reason="ready: reqCurrentTime answered")
        return True

    async def _after_failed_connect(self, error: BaseException) -> None:
        s = self.state
        if self._conflict:
            s.last_error = f"client id {s.client_id} is already in use (326)"
            await self._emit(ClientIdConflict, next_client_id=s.client_id + 1, reason=s.last_error)
            s.client_id += 1
            return
        s.last_error = f"connect to {self.options.host}:{self.options.port} failed: {error!r}"
        log.info("%s", s.last_error)

    async def _watch(self, stopping: asyncio.Event) -> str:
        """Return why the connection ended (empty when stopping)."""
        o = self.options
        wall, mono = time.time(), time.monotonic()
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), o.watch_interval_s)
            if self._lost.is_set():
                return self.state.last_error or "gateway closed the connection"
            now_wall, now_mono = time.time(), time.monotonic()
            jump = (now_wall - wall) - (now_mono - mono)
            wall, mono = now_wall, now_mono
            if abs(jump) > o.clock_jump_s and not await self._probe():
                self.ib.disconnect()
                return f"no answer after a {jump:.0f}s wall-clock jump (sleep/wake)"
        return ""

    async def _probe(self) -> bool:
        try:
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.options.probe_timeout_s)
        except (TimeoutError, OSError, ConnectionError):
            return False
        return True

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        if code == CLIENT_ID_IN_USE:
            self._conflict = True
        elif code == HMDS_BROKEN:
            self.state.hmds_ok = False
            self.state.hmds_outages += 1
        elif code == HMDS_OK:
            self.state.hmds_ok = True
        if req_id >= 0:
            # Several messages can be handled before the requester resumes (an error,
            # then "farm OK"), so the farm's state is captured with the error itself.
            self.state.farm_ok_at_error[req_id] = self.state.hmds_ok
            while len(self.state.farm_ok_at_error) > 1000:
                del self.state.farm_ok_at_error[next(iter(self.state.farm_ok_at_error))]
        elif code < 2100 or code >= 2200:
            self.state.last_error = f"IB {code}: {message}"

    def _on_disconnected(self) -> None:
        was_connected = self.state.connected
        self.state.connected = False
        self.ready.clear()
        self._lost.set()
        if was_connected and not self.state.last_error:
            self.state.last_error = "gateway closed the connection"

    async def _emit(self, event_type: type[Any], **fields: Any) -> None:
        o, s = self.options, self.state
        event = event_type(host=o.host, port=o.port, client_id=s.client_id,
                           server_version=s.server_version, **fields)  # fmt: skip
        log.info("IB connection: %s %s", type(event).__name__, fields.get("reason", ""))
        try:
            await self.publish(event)
        except Exception:  # an event lost to a NATS outage must not stop the IB loop
            log.exception("could not publish %s", type(event).__name__)
