"""The one long-lived IB connection: connect, prove readiness, watch, reconnect forever.

Readiness means "a request succeeds" (``reqCurrentTime`` answers), not "the
socket is open". The connection is watched for drops (ib_async's
``disconnectedEvent``), for sleep/wake (the wall clock jumping against the
monotonic clock, after which the socket may be dead without knowing it) and
for the gateway's link to IB (1100 lost, 1101 restored with data lost, 1102
restored with data kept: the socket stays up throughout) and for the data
farms (2103-2108, 2157/2158). Every change is an event: ``connected``,
``disconnected``, ``reconnecting``, ``client_id_conflict``, ``ib_link_lost``,
``ib_link_restored``.

``state.last_error`` says what is wrong *now*: it is cleared when the
condition it described ends (a connect succeeds, the link comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ib_async import IB
from ib_async.ib import StartupFetchNONE
from ktrdr_shared.messages import (
    ClientIdConflict,
    IbConnected,
    IbDisconnected,
    IbLinkLost,
    IbLinkRestored,
    IbReconnecting,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import utc_now

from ktrdr_ib_connector.farms import LINK_LOST, LINK_RESTORED_DATA_LOST, LINK_RESTORED_KEPT, Farms
from ktrdr_ib_connector.scheduling import Clock

log = logging.getLogger(__name__)

EventSink = Callable[[Event], Awaitable[None]]

CLIENT_ID_IN_USE = 326
#: How ktrdr's IB Gateway simulator names itself at connect (a reqId -1 notice, code 2199,
#: after the farm notices): the marker, then the symbols it serves, comma-separated. A real
#: gateway sends no such notice.
SIMULATOR_MARKER = "ktrdr IB Gateway simulator; it serves:"


class SleepWatch:
    """Notice sleep/wake: the wall clock jumping against the monotonic clock (clocks injected).

    A machine that slept resumes with its wall clock moved on and its monotonic clock
    not (or the other way round on some systems); either way the two disagree.
    """

    def __init__(self, wall: Clock, mono: Clock, threshold_s: float) -> None:
        self._wall, self._mono, self.threshold_s = wall, mono, threshold_s
        self._last = (wall(), mono())

    def jump(self) -> float | None:
        """Return the jump since the last look when it exceeds the threshold, else None."""
        now = (self._wall(), self._mono())
        jump = (now[0] - self._last[0]) - (now[1] - self._last[1])
        self._last = now
        return jump if abs(jump) > self.threshold_s else None


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
    # What is wrong now; None when nothing is (cleared when the condition ends).
    last_error: str | None = None
    link_ok: bool = True
    link_lost_since: datetime | None = None
    farms: Farms = field(default_factory=Farms)
    # reqId -> was the HMDS farm up when IB's error for that request arrived?
    farm_ok_at_error: dict[int, bool] = field(default_factory=dict)
    # IB's clock minus ours, from reqCurrentTime at connect (0 until then): what is expired,
    # which contract is the front month, is IB's call (a frozen simulator is years back)
    clock_offset_s: float = 0.0
    # The symbols the gateway serves when it is ktrdr's simulator (it says so at connect);
    # None for a real gateway.
    simulator_symbols: tuple[str, ...] | None = None

    @property
    def hmds_ok(self) -> bool:
        """Return whether no historical-data farm is reported broken."""
        return self.farms.hmds_ok

    @property
    def hmds_outages(self) -> int:
        """Return how many times a historical-data farm was reported broken."""
        return self.farms.hmds_outages


async def _first_of(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


class IbConnection:
    """Own one ``ib_async.IB`` and keep it connected for as long as ``run`` runs."""

    def __init__(
        self,
        options: ConnectionOptions,
        publish: EventSink,
        *,
        wall: Clock = time.time,
        mono: Clock = time.monotonic,
    ) -> None:
        self.options = options
        self.publish = publish
        self.ib = IB()
        self.ib.RaiseRequestErrors = True  # errors tied to a request raise RequestError
        self.state = ConnectionState(client_id=options.client_id)
        self.ready = asyncio.Event()
        self._wall, self._mono = wall, mono
        self._lost = asyncio.Event()
        self._data_lost = asyncio.Event()
        self._conflict = False
        self._pending: set[asyncio.Task[None]] = set()
        self._allowed = asyncio.Event()  # cleared by ``hold``: stay off IB until ``resume``
        self._allowed.set()
        self.closed = asyncio.Event()  # set once ``run`` has ended and left IB
        self.ib.errorEvent += self._on_error
        self.ib.disconnectedEvent += self._on_disconnected

    async def run(self, stopping: asyncio.Event) -> None:
        """Connect, watch and reconnect with capped backoff until ``stopping`` is set."""
        attempt = 0
        while not stopping.is_set():
            if not self._allowed.is_set():
                await _first_of(self._allowed, stopping)
                attempt = 0
                continue
            if await self._connect_once():
                attempt = 0
                reason = await self._watch(stopping)
                if stopping.is_set():
                    break
                await self._emit(IbDisconnected, reason=reason)
                if not self._allowed.is_set():
                    continue  # held: no reconnecting until resumed
            attempt += 1
            delay = min(
                self.options.backoff_cap_s, self.options.backoff_first_s * 2 ** (attempt - 1)
            )
            await self._emit(
                IbReconnecting, attempt=attempt, delay_s=delay, reason=self.state.last_error or ""
            )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), delay)
        self.ready.clear()
        self.ib.disconnect()
        self.closed.set()

    def hold(self, reason: str) -> None:
        """Leave IB now and stay off it until ``resume`` (the gateway's lease is in doubt).

        Closing the socket is what makes IB forget every request in flight; the fetcher sees
        the drop as any other and its segments wait, or go back to the queue.
        """
        self._allowed.clear()
        if self.ib.isConnected():
            self.ib.disconnect()
            self._on_disconnected()
        self.state.last_error = reason

    def resume(self) -> None:
        """Connect to IB again after ``hold``."""
        self._allowed.set()

    @property
    def data_lost(self) -> asyncio.Event:
        """Return the event set when IB next drops the requests in flight (1101, socket up).

        Take it before sending: it is replaced by a fresh one each time it fires.
        """
        return self._data_lost

    def ib_now(self) -> datetime:
        """Return IB's clock now (ours plus the offset measured at connect)."""
        return datetime.fromtimestamp(self._wall() + self.state.clock_offset_s, UTC)

    @property
    def problem(self) -> str:
        """Return why the connection is not ready, in words (empty when it is)."""
        if self.ready.is_set():
            return ""
        return self.state.last_error or "connecting to IB"

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
        s.link_ok, s.link_lost_since = True, None
        s.farms.reset()
        s.simulator_symbols = None  # until this gateway says it is the simulator
        try:
            await self.ib.connectAsync(
                o.host,
                o.port,
                clientId=s.client_id,
                timeout=o.connect_timeout_s,
                readonly=True,
                fetchFields=StartupFetchNONE,
            )
            asked = self._wall()
            ib_now = await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), o.probe_timeout_s)
        except (TimeoutError, OSError, ConnectionError) as e:
            self.ib.disconnect()
            await self._after_failed_connect(e)
            return False
        s.clock_offset_s = ib_now.timestamp() - (asked + self._wall()) / 2
        s.connected, s.since = True, utc_now()
        s.server_version = self.ib.client.serverVersion()
        s.last_error = None  # connected and answering: whatever was wrong has ended
        if s.link_ok:  # a 1100 during the startup sync keeps it not ready
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
        sleep = SleepWatch(self._wall, self._mono, o.clock_jump_s)
        while not stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._lost.wait(), o.watch_interval_s)
            if self._lost.is_set():
                return self.state.last_error or "gateway closed the connection"
            jump = sleep.jump()
            if jump is not None and not await self._probe():
                self.ib.disconnect()
                reason = f"no answer after a {jump:.0f}s wall-clock jump (sleep/wake)"
                self.state.last_error = reason
                return reason
        return ""

    async def _probe(self) -> bool:
        try:
            await asyncio.wait_for(self.ib.reqCurrentTimeAsync(), self.options.probe_timeout_s)
        except (TimeoutError, OSError, ConnectionError):
            return False
        return True

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        s = self.state
        if code == CLIENT_ID_IN_USE:
            self._conflict = True
        elif code == LINK_LOST:
            self._link_lost(code, message)
        elif code in (LINK_RESTORED_DATA_LOST, LINK_RESTORED_KEPT):
            self._link_restored(code, message)
        elif req_id == -1 and message.startswith(SIMULATOR_MARKER):
            listed = message.removeprefix(SIMULATOR_MARKER).split(",")
            s.simulator_symbols = tuple(name.strip() for name in listed if name.strip())
        else:
            s.farms.note(code, message, utc_now())
        if req_id >= 0:
            # Several messages can be handled before the requester resumes (an error,
            # then "farm OK"), so the farm's state is captured with the error itself.
            s.farm_ok_at_error[req_id] = s.hmds_ok
            while len(s.farm_ok_at_error) > 1000:
                del s.farm_ok_at_error[next(iter(s.farm_ok_at_error))]
        elif code not in (LINK_LOST, LINK_RESTORED_DATA_LOST, LINK_RESTORED_KEPT) and (
            code < 2100 or code >= 2200
        ):
            log.warning("IB notice %d: %s", code, message)

    def _link_lost(self, code: int, message: str) -> None:
        s = self.state
        if s.link_ok:
            s.link_ok, s.link_lost_since = False, utc_now()
        s.last_error = f"IB {code}: {message}"
        self.ready.clear()  # nothing new is sent until the link is back
        self._later(IbLinkLost, reason=s.last_error)

    def _link_restored(self, code: int, message: str) -> None:
        s = self.state
        data_lost = code == LINK_RESTORED_DATA_LOST
        s.link_ok, s.link_lost_since = True, None
        if s.last_error is not None and s.last_error.startswith(f"IB {LINK_LOST}"):
            s.last_error = None
        if data_lost:  # IB dropped every request in flight: their owners re-issue them
            lost, self._data_lost = self._data_lost, asyncio.Event()
            lost.set()
        if s.connected and self.ib.isConnected():
            self.ready.set()
        self._later(IbLinkRestored, reason=f"IB {code}: {message}", data_lost=data_lost)

    def _later(self, event_type: type[Any], **fields: Any) -> None:
        """Publish an event from a callback that cannot await (ib_async's error event)."""
        task = asyncio.get_running_loop().create_task(self._emit(event_type, **fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _on_disconnected(self) -> None:
        was_connected = self.state.connected
        self.state.connected = False
        self.ready.clear()
        self._lost.set()
        if was_connected:  # the reason is this drop, not whatever happened before it
            self.state.last_error = "gateway closed the connection"

    async def _emit(self, event_type: type[Any], **fields: Any) -> None:
        o, s = self.options, self.state
        event = event_type(
            host=o.host,
            port=o.port,
            client_id=s.client_id,
            server_version=s.server_version,
            **fields,
        )
        log.info("IB connection: %s %s", type(event).__name__, fields.get("reason", ""))
        try:
            await self.publish(event)
        except Exception:  # an event lost to a NATS outage must not stop the IB loop
            log.exception("could not publish %s", type(event).__name__)
