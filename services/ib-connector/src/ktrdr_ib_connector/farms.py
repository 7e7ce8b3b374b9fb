"""IB's data farms and the gateway's link to IB, from the codes IB reports them with (pure).

A gateway reports each farm it uses as an error message with reqId -1
(``tws-simulator.md`` §5.6): market data 2103 broken / 2104 OK / 2108
inactive, historical data (HMDS) 2105 broken / 2106 OK / 2107 inactive, and
security definitions 2157 broken / 2158 OK. "Inactive" is the usual state at
connect: the farm is connected on demand, and a request goes through. The
farm's name follows a colon ("...is OK:ushmds") or, for the inactive codes, a
full stop ("...available upon demand.ushmds").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

LINK_LOST = 1100
LINK_RESTORED_DATA_LOST = 1101
LINK_RESTORED_KEPT = 1102

OK, BROKEN, INACTIVE = "ok", "broken", "inactive"

# code -> (kind of farm, its state)
FARM_CODES: dict[int, tuple[str, str]] = {
    2103: ("market", BROKEN),
    2104: ("market", OK),
    2108: ("market", INACTIVE),
    2105: ("hmds", BROKEN),
    2106: ("hmds", OK),
    2107: ("hmds", INACTIVE),
    2157: ("secdef", BROKEN),
    2158: ("secdef", OK),
}


def farm_name(code: int, message: str) -> str:
    """Return the farm a farm notice names (its kind when the text names none)."""
    kind = FARM_CODES[code][0]
    for separator in (":", "."):
        head, found, tail = message.rpartition(separator)
        name = tail.strip()
        if found and head and name and " " not in name:
            return name
    return kind


@dataclass
class Farms:
    """Every farm's last reported state, and how often an HMDS farm broke."""

    states: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    since: dict[str, datetime] = field(default_factory=dict)  # when each entered its state
    hmds_outages: int = 0

    def note(self, code: int, message: str, at: datetime | None = None) -> bool:
        """Record a farm notice (received ``at``); return False when ``code`` is not one.

        A farm's ``since`` moves only when its state changes: IB repeats "is OK" notices.
        """
        if code not in FARM_CODES:
            return False
        kind, state = FARM_CODES[code]
        name = farm_name(code, message)
        if kind == "hmds" and state == BROKEN and self.states.get(name) != BROKEN:
            self.hmds_outages += 1
        if at is not None and self.states.get(name) != state:
            self.since[name] = at
        self.states[name], self.kinds[name] = state, kind
        return True

    def reset(self) -> None:
        """Forget the states (a new connection reports them afresh); outages stay counted."""
        self.states.clear()
        self.kinds.clear()
        self.since.clear()

    @property
    def hmds_ok(self) -> bool:
        """Return whether no historical-data farm is reported broken."""
        return not any(self.states[n] == BROKEN for n, k in self.kinds.items() if k == "hmds")

    def broken(self) -> list[str]:
        """Return the farms reported broken, by name."""
        return sorted(name for name, state in self.states.items() if state == BROKEN)
