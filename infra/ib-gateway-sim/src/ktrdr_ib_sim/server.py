"""The simulator: a TWS socket server with IB's rules, a ledger, and faults on demand.

Typical in-process use::

    sim = IBGatewaySimulator(SimulatorConfig(port=0, time_scale=0.01))
    await sim.start()
    ...  # IB().connectAsync("127.0.0.1", sim.port, clientId=1)
    await sim.stop()
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from ktrdr_ib_sim.bars import sessions_for
from ktrdr_ib_sim.catalogue import Instrument, build_catalogue
from ktrdr_ib_sim.codes import IBError
from ktrdr_ib_sim.config import SimulatorConfig
from ktrdr_ib_sim.connection import ClientConnection
from ktrdr_ib_sim.ledger import RequestLedger
from ktrdr_ib_sim.operations import Operations
from ktrdr_ib_sim.pacing import PacingLedger
from ktrdr_ib_sim.resets import next_reset_s

logger = logging.getLogger(__name__)


class IBGatewaySimulator:
    """An offline IB Gateway that the unmodified ib_async client can talk to."""

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.ledger = RequestLedger(self.config.ledger_size)
        self.pacing = PacingLedger(time.monotonic, self.config.time_scale)
        self.soft_pacing = PacingLedger(time.monotonic, self.config.time_scale)
        self._now_override: dt.datetime | None = None
        self.catalogue: tuple[Instrument, ...] = build_catalogue(
            self._now().date(), self.config.futures_listing
        )
        self.ops = Operations(self)
        self._stalls_armed = 0
        self._server: asyncio.Server | None = None
        self._connections: set[ClientConnection] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._client_ids: dict[int, ClientConnection] = {}
        self._port = self.config.port
        self._control: Any = None
        self._restarting: asyncio.Task[None] | None = None
        self._resets: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._clock_origin = (time.monotonic(), time.time())

    # -- clock -----------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._now_override or self.config.now_utc or dt.datetime.now(dt.UTC)

    def now_s(self) -> int:
        """Return the data clock: bars that end after this instant do not exist yet."""
        frozen = self._now_override or self.config.now_utc
        return int(frozen.timestamp()) if frozen is not None else int(time.time())

    def set_now(self, instant: dt.datetime) -> None:
        """Move the data clock to ``instant`` (tz-aware) and freeze it there.

        Everything dated follows: which bars exist, the forming bar, which futures are listed
        or expired (the ES front month rolls once the clock passes its expiry). The catalogue
        covers ES expiries from two years before the start day to three years after.

        Raises:
            ValueError: ``instant`` is naive.
        """
        if instant.tzinfo is None:
            raise ValueError(f"set_now wants a timezone-aware instant, got {instant!r}")
        self._now_override = instant
        self.notify_changed()

    def ib_clock_s(self) -> float:
        """Return the time-scaled clock of scheduled events (the daily reset).

        It starts at the data clock's "now" when the simulator starts and runs
        ``1 / time_scale`` times faster than the wall clock.
        """
        mono0, wall0 = self._clock_origin
        start = self.config.now_utc.timestamp() if self.config.now_utc is not None else wall0
        return start + (time.monotonic() - mono0) / self.config.time_scale

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """Return the TWS socket port (the real one when the config asked for port 0)."""
        return self._port

    @property
    def control_port(self) -> int | None:
        """Return the HTTP control port, or None when the simulator runs without one."""
        return None if self._control is None else int(self._control.port)

    @property
    def listening(self) -> bool:
        """Return whether the TWS socket accepts connections right now."""
        return self._server is not None

    async def start(self) -> None:
        """Load the calendars, then listen on the TWS port (and the control port if set)."""
        await asyncio.to_thread(self._warm_calendars)
        await self._listen()
        self._clock_origin = (time.monotonic(), time.time())
        if self.config.daily_reset is not None:
            self._resets = asyncio.get_running_loop().create_task(
                self._play_daily_resets(self.config.daily_reset)
            )
        if self.config.control_port is not None:
            from ktrdr_ib_sim.control import ControlServer

            self._control = ControlServer(self)
            await self._control.start(self.config.host, self.config.control_port)
        logger.info("IB gateway simulator listening on %s:%d", self.config.host, self.port)

    def _warm_calendars(self) -> None:
        for inst in self.catalogue:
            sessions_for(inst, use_rth=True)
            sessions_for(inst, use_rth=False)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.config.host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        for task in (self._restarting, self._resets):
            if task is not None:
                task.cancel()
        await self._stop_listening()
        self._drop_connections()
        await self._wait_for_handlers()
        if self._control is not None:
            await self._control.stop()
            self._control = None

    async def __aenter__(self) -> IBGatewaySimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            self._drop_connections()
            await self._wait_for_handlers()
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ClientConnection(self, reader, writer)
        self._connections.add(conn)
        handler = asyncio.current_task()
        if handler is not None:
            self._handlers.add(handler)
        self.ledger.totals.connections_accepted += 1
        try:
            await conn.serve()
        except Exception:
            # The boundary of one connection: whatever broke, only this client pays for it.
            logger.exception("connection %s failed; closing it", conn.peer)
            conn.abort()
        finally:
            self._connections.discard(conn)
            if handler is not None:
                self._handlers.discard(handler)
            self.notify_changed()

    async def _wait_for_handlers(self) -> None:
        """Let the handlers of aborted connections run to their end (none is left dangling)."""
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=5.0)

    # -- client ids ------------------------------------------------------------------------

    def claim_client_id(self, client_id: int, conn: ClientConnection) -> bool:
        """Reserve ``client_id`` for ``conn``; False when another live connection holds it."""
        holder = self._client_ids.get(client_id)
        if holder is not None and holder is not conn:
            return False
        self._client_ids[client_id] = conn
        return True

    def release_client_id(self, client_id: int, conn: ClientConnection) -> None:
        """Free ``client_id`` if ``conn`` holds it."""
        if self._client_ids.get(client_id) is conn:
            del self._client_ids[client_id]

    # -- faults ----------------------------------------------------------------------------

    def _drop_connections(self) -> int:
        dropped = list(self._connections)
        for conn in dropped:
            conn.abort()
        self._connections.clear()
        return len(dropped)

    async def drop_all_connections(self) -> int:
        """Close every client socket now (the listener stays up); return how many."""
        self.ledger.totals.drops += 1
        count = self._drop_connections()
        await self._wait_for_handlers()
        logger.info("fault: dropped %d connections", count)
        return count

    async def restart(self, down_s: float) -> None:
        """Go away like the daily restart: stop listening, drop everyone, return after ``down_s``.

        ``down_s`` is real seconds (not scaled). Returns once the port accepts connections again.
        """
        self.ledger.totals.restarts += 1
        logger.info("fault: restarting, down for %.2f s", down_s)
        await self._stop_listening()
        self.notify_changed()
        await asyncio.sleep(down_s)
        await self._listen()
        self.notify_changed()
        logger.info("fault: back on port %d", self.port)

    def begin_restart(self, down_s: float) -> asyncio.Task[None]:
        """Start :meth:`restart` in the background and return its task."""
        self._restarting = asyncio.get_running_loop().create_task(self.restart(down_s))
        return self._restarting

    def broadcast(self, notice: IBError) -> None:
        """Send a notice (reqId -1) to every client past startApi."""
        for conn in list(self._connections):
            if conn.client_id >= 0:
                conn.send_error(-1, notice)

    @property
    def farm_down(self) -> bool:
        """Return whether the HMDS farm is down."""
        return self.ops.farms["hmds"] == "down"

    def set_farm_down(self, down: bool) -> None:
        """Take the HMDS farm down (2105; historical requests get 162 no data) or up (2106)."""
        self.set_farm("hmds", "down" if down else "ok")

    def set_farm(self, farm: str, state: str, requests: str | None = None) -> bool:
        """Put a farm (market, hmds, secdef) in a state (ok, down, inactive) and tell clients.

        ``requests`` chooses what an HMDS outage does to history and head-timestamp requests:
        ``no_data`` (162, as today) or ``hold`` (answered once the farm is back). Returns
        False when the farm was already in that state.

        Raises:
            ValueError: An unknown farm, state or mode.
        """
        return self.ops.set_farm(farm, state, requests)

    def lose_link(self) -> bool:
        """Lose the link to IB with sockets up: 1100 to all, answers held; False if already lost."""
        return self.ops.lose_link()

    def restore_link(self, data_lost: bool) -> bool:
        """Restore the link: 1101 (in-flight requests dropped forever) or 1102 (answered)."""
        return self.ops.restore_link(data_lost)

    def slow_next(self, count: int = 1, seconds: float = 10.0) -> None:
        """Delay the next ``count`` historical answers by ``seconds`` more real seconds."""
        self.ops.slow_next(count, seconds)

    async def _play_daily_resets(self, region: str) -> None:
        """Lose and restore the link at each of the region's reset times (time-scaled clock)."""
        cfg = self.config
        while True:
            at = next_reset_s(region, self.ib_clock_s())
            await asyncio.sleep(cfg.scaled_s(max(0.0, at - self.ib_clock_s())))
            self.ledger.totals.daily_resets += 1
            self.lose_link()
            await asyncio.sleep(cfg.scaled_s(cfg.reset_outage_s))
            self.restore_link(data_lost=cfg.reset_data_lost)

    def stall_next_historical(self, count: int = 1) -> None:
        """Hold the next ``count`` accepted historical requests unanswered until cancelled."""
        self._stalls_armed += count

    def take_stall(self) -> bool:
        """Consume one armed stall; return whether the current request must stall."""
        if self._stalls_armed <= 0:
            return False
        self._stalls_armed -= 1
        self.ledger.totals.stalled_requests += 1
        return True

    # -- observation -----------------------------------------------------------------------

    def open_requests(self) -> int:
        """Return the open historical and head-timestamp requests across all clients."""
        return sum(len(c.open_requests) for c in self._connections)

    def counters(self) -> dict[str, Any]:
        """Return every counter plus the live state, as a JSON-ready dict."""
        return {
            **self.ledger.snapshot(),
            "open_requests": self.open_requests(),
            "connections": len(self._connections),
            "client_ids": sorted(self._client_ids),
            "farm_down": self.farm_down,
            **self.ops.state(),
            "stalls_armed": self._stalls_armed,
            "listening": self.listening,
            "pacing_window_requests": self.pacing.in_window(),
        }

    def notify_changed(self) -> None:
        """Wake :meth:`wait_until` callers: a message, answer, or connection changed state."""
        self._changed.set()

    async def wait_until(
        self, predicate: Callable[[dict[str, Any]], bool], wait_s: float = 10.0
    ) -> dict[str, Any]:
        """Wait until ``predicate(self.counters())`` holds and return those counters.

        Raises:
            TimeoutError: It did not hold within ``wait_s`` seconds.
        """
        async with asyncio.timeout(wait_s):
            while not predicate(counters := self.counters()):
                self._changed.clear()
                await self._changed.wait()
        return counters

    def records(self, since_seq: int = 0) -> list[dict[str, Any]]:
        """Return the per-request log (see :class:`~ktrdr_ib_sim.ledger.RequestRecord`)."""
        return self.ledger.records(since_seq)
