"""IB's daily server resets, per region, as instants on the simulator's clock.

Windows as published on IB's system status page (Sunday to Friday), read 2026-12-01:
North America 00:15-01:45 ET, Europe 06:25-07:45 CET, Asia-Pacific 04:45-06:05 and
20:15-21:15 HKT. The link drops at the start of a window; during the window a real gateway
sees one or more short interruptions (an IBC user's log shows 1100 at 00:21 and 1102 at 00:24).
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

#: region -> (zone, the local start times of its reset windows).
RESET_WINDOWS: dict[str, tuple[str, tuple[dt.time, ...]]] = {
    "north_america": ("America/New_York", (dt.time(0, 15),)),
    "europe": ("Europe/Paris", (dt.time(6, 25),)),
    "asia": ("Asia/Hong_Kong", (dt.time(4, 45), dt.time(20, 15))),
}
_RESET_WEEKDAYS = {0, 1, 2, 3, 4, 6}  # Sunday to Friday; Saturday has the weekend maintenance


def next_reset_s(region: str, after_s: float) -> int:
    """Return the epoch second of the first reset of ``region`` strictly after ``after_s``.

    Raises:
        ValueError: An unknown region.
    """
    if region not in RESET_WINDOWS:
        raise ValueError(f"unknown reset region {region!r}; use one of {sorted(RESET_WINDOWS)}")
    zone_name, starts = RESET_WINDOWS[region]
    zone = ZoneInfo(zone_name)
    day = dt.datetime.fromtimestamp(after_s, zone).date() - dt.timedelta(days=1)
    for _ in range(9):
        if day.weekday() in _RESET_WEEKDAYS:
            for start in starts:
                instant = dt.datetime.combine(day, start, zone).timestamp()
                if instant > after_s:
                    return int(instant)
        day += dt.timedelta(days=1)
    raise AssertionError("a reset happens every week")  # pragma: no cover
