"""The gateway's operating life: its link to IB's servers, its data farms, and slow answers.

A real gateway keeps the client's socket open while its own link to IB drops (1100) and comes
back (1101: data lost, 1102: data maintained), and it reports its data farms with 2103-2108 and
2157/2158. Requests wait here (:meth:`Operations.admit`) until the link and their farm allow an
answer; a request that was in flight when the link came back with its data lost is never
answered.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import TYPE_CHECKING, Any

from ktrdr_ib_sim import codes
from ktrdr_ib_sim.catalogue import served_symbols
from ktrdr_ib_sim.codes import IBError
from ktrdr_ib_sim.ledger import RequestRecord

if TYPE_CHECKING:
    from ktrdr_ib_sim.server import IBGatewaySimulator

logger = logging.getLogger(__name__)

FARMS = ("market", "hmds", "secdef")
#: The states each farm can be put in (the sec-def farm has no "inactive" notice we could source).
FARM_STATES = {
    "market": ("ok", "down", "inactive"),
    "hmds": ("ok", "down", "inactive"),
    "secdef": ("ok", "down"),
}
#: What happens to a historical or head-timestamp request while the HMDS farm is down.
HMDS_OUTAGE_MODES = ("no_data", "hold")


class Operations:
    """Link, farm and slow-answer state of one simulator, and the waits they impose."""

    def __init__(self, sim: IBGatewaySimulator) -> None:
        self._sim = sim
        self.farms: dict[str, str] = {
            "market": "ok",
            "hmds": sim.config.hmds_at_connect,
            "secdef": "ok",
        }
        self.hmds_outage = "no_data"
        self.link_lost = False
        #: Bumped whenever the link comes back with data lost: older requests are gone.
        self.data_epoch = 0
        self._changed = asyncio.Event()
        self._slow_armed: deque[float] = deque()

    # -- the link --------------------------------------------------------------------------

    def lose_link(self) -> bool:
        """Send 1100 to every client and hold every answer; False if the link was already lost."""
        if self.link_lost:
            return False
        self.link_lost = True
        self._sim.ledger.totals.link_losses += 1
        self._sim.broadcast(codes.LINK_LOST)
        self._wake()
        logger.info("fault: link to IB lost (1100)")
        return True

    def restore_link(self, data_lost: bool) -> bool:
        """Send 1101 (requests in flight are dropped) or 1102 (they are answered).

        Returns False if the link was not lost.
        """
        if not self.link_lost:
            return False
        self.link_lost = False
        totals = self._sim.ledger.totals
        if data_lost:
            self.data_epoch += 1
            totals.link_restores_data_lost += 1
        else:
            totals.link_restores_data_maintained += 1
        notice = codes.LINK_RESTORED_DATA_LOST if data_lost else codes.LINK_RESTORED_DATA_MAINTAINED
        self._sim.broadcast(notice)
        self._wake()
        logger.info("fault: link to IB restored (%d)", notice.code)
        return True

    # -- farms -----------------------------------------------------------------------------

    def set_farm(self, farm: str, state: str, hmds_outage: str | None = None) -> bool:
        """Put ``farm`` in ``state`` and tell every client; False when nothing changed.

        Raises:
            ValueError: An unknown farm, state or outage mode.
        """
        if farm not in FARM_STATES:
            raise ValueError(f"unknown farm {farm!r}; use one of {FARMS}")
        if state not in FARM_STATES[farm]:
            raise ValueError(f"farm {farm!r} cannot be {state!r}; use one of {FARM_STATES[farm]}")
        if hmds_outage is not None:
            if hmds_outage not in HMDS_OUTAGE_MODES:
                raise ValueError(
                    f"requests must be one of {HMDS_OUTAGE_MODES}, got {hmds_outage!r}"
                )
            self.hmds_outage = hmds_outage
        if self.farms[farm] == state:
            return False
        self.farms[farm] = state
        self._sim.ledger.totals.farm_changes += 1
        self._sim.broadcast(codes.FARM_NOTICES[farm, state])
        self._wake()
        logger.info("fault: %s farm %s", farm, state)
        return True

    def connect_notices(self) -> list[IBError]:
        """Return the notices a client gets after startApi: farms in a real gateway's order,
        then the simulator's own notice naming itself and the symbols it serves."""
        notices = [codes.FARM_NOTICES[farm, self.farms[farm]] for farm in FARMS]
        if self.link_lost:
            notices.append(codes.LINK_LOST)
        notices.append(codes.simulator_notice(served_symbols(self._sim.catalogue)))
        return notices

    def refuse_while_hmds_down(self) -> bool:
        """Return whether history must be refused now (farm down, outage mode ``no_data``)."""
        return self.farms["hmds"] == "down" and self.hmds_outage == "no_data"

    def activate_hmds(self) -> float:
        """Wake an inactive HMDS farm on demand (2106 to all); return the extra delay (IB s)."""
        if self.farms["hmds"] != "inactive":
            return 0.0
        self.set_farm("hmds", "ok")
        self._sim.ledger.totals.farm_activations += 1
        return self._sim.config.farm_activation_ms / 1e3

    # -- holding answers -------------------------------------------------------------------

    def _blocked(self, farm: str) -> bool:
        return self.link_lost or self.farms[farm] == "down"

    async def admit(self, record: RequestRecord, farm: str) -> bool:
        """Wait until the link and ``farm`` let an answer through.

        Returns False when the link came back with its data lost since the request was
        accepted: the gateway forgot it, and it must never be answered (outcome ``lost``).
        """
        while True:
            if record.link_epoch != self.data_epoch:
                self._sim.ledger.close(record, "lost")
                self._sim.ledger.totals.requests_lost += 1
                return False
            if not self._blocked(farm):
                return True
            if not record.held:
                record.held = True
                self._sim.ledger.totals.requests_held += 1
                self._sim.notify_changed()
            self._changed.clear()
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._sim.notify_changed()

    # -- slow answers ----------------------------------------------------------------------

    def slow_next(self, count: int, seconds: float) -> None:
        """Make the next ``count`` historical answers ``seconds`` real seconds slower."""
        self._slow_armed.extend([seconds] * count)

    def extra_delay(self, record: RequestRecord) -> tuple[float, float]:
        """Return (IB seconds, real seconds) of extra delay: a drawn slow answer, an armed one."""
        cfg, totals = self._sim.config, self._sim.ledger.totals
        armed = self._slow_armed.popleft() if self._slow_armed else 0.0
        # Seeded by (seed, request number): the same run of requests draws the same slow ones.
        drawn = random.Random(cfg.seed * 1_000_003 + record.seq).random() < cfg.slow_fraction
        if drawn or armed:
            totals.slow_answers += 1
        return (cfg.slow_ms / 1e3 if drawn else 0.0), armed

    def state(self) -> dict[str, Any]:
        """Return the live state for the counters."""
        return {
            "link_lost": self.link_lost,
            "farms": dict(self.farms),
            "hmds_outage": self.hmds_outage,
            "slow_armed": len(self._slow_armed),
        }
