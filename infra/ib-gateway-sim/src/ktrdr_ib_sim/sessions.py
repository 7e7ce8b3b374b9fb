"""When each market is open: session schedules built from real exchange calendars.

Holidays and early closes come from ``exchange_calendars`` (XNYS for US stocks and SPX, CMES
for ES); forex trades 24x5 from Sunday 17:00 to Friday 17:00 New York time. A schedule is a set
of numpy arrays in epoch seconds, one entry per session, built once per (kind, useRTH).
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd

#: First day the simulator has calendars (and therefore data) for.
CALENDAR_START = "2000-01-01"
_NEW_YORK = "America/New_York"
_CHICAGO = "America/Chicago"
_DAY_S = 86_400
_calendar_lock = threading.Lock()


class MarketKind(Enum):
    """How a family of instruments trades: which calendar, which hours."""

    US_EQUITY = "us_equity"  # XNYS; RTH 09:30-16:00, extended 04:00-20:00 New York
    US_INDEX = "us_index"  # XNYS; the index is only calculated during RTH
    CME_EQUITY = "cme_equity"  # CMES; 17:00-16:00 Chicago, RTH 08:30-15:00
    FX_24X5 = "fx_24x5"  # Sunday 17:00 to Friday 17:00 New York, no holidays


@dataclass(frozen=True)
class Sessions:
    """Sessions in time order. Dates are days since 1970-01-01; times are epoch seconds."""

    dates: np.ndarray
    opens: np.ndarray
    closes: np.ndarray
    utc_offsets: np.ndarray  # the instrument zone's UTC offset during each session

    def __len__(self) -> int:
        return len(self.dates)

    def take(self, index: slice | np.ndarray) -> Sessions:
        """Return the sessions selected by a slice or index array."""
        return Sessions(
            self.dates[index], self.opens[index], self.closes[index], self.utc_offsets[index]
        )

    def overlapping(self, start_s: int, end_s: int) -> Sessions:
        """Return the sessions that are open at some instant of ``[start_s, end_s)``."""
        first = int(np.searchsorted(self.closes, start_s, side="right"))
        last = int(np.searchsorted(self.opens, end_s, side="left"))
        return self.take(slice(first, max(first, last)))

    def first_open_at_or_after(self, instant_s: int) -> int | None:
        """Return the open of the first session that opens at or after ``instant_s``."""
        i = int(np.searchsorted(self.opens, instant_s, side="left"))
        return int(self.opens[i]) if i < len(self) else None


@functools.lru_cache(maxsize=4)
def _exchange_calendar(name: str) -> pd.DataFrame:
    import exchange_calendars as xcals

    with _calendar_lock, warnings.catch_warnings():  # construction is not documented thread-safe
        # exchange_calendars reads Series.values, which pandas 3.1 deprecates; not ours to fix.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(name, start=CALENDAR_START).schedule


def _at_local(dates: pd.DatetimeIndex, hour: int, minute: int, zone: str) -> np.ndarray:
    """Return ``hour:minute`` local time in ``zone`` on each date, as epoch seconds."""
    local = (dates + pd.Timedelta(hours=hour, minutes=minute)).tz_localize(
        zone, ambiguous=False, nonexistent="shift_forward"
    )
    return np.asarray(local.as_unit("s").asi8, dtype=np.int64)


def _epoch_s(column: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(column).as_unit("s").asi8, dtype=np.int64)


def utc_offsets_at(instants_s: np.ndarray, zone: str) -> np.ndarray:
    """Return the UTC offset of ``zone`` at each instant, in seconds."""
    utc = pd.to_datetime(np.asarray(instants_s, dtype=np.int64), unit="s", utc=True).as_unit("s")
    local_naive = utc.tz_convert(zone).tz_localize(None)
    return np.asarray(local_naive.asi8 - utc.tz_localize(None).asi8, dtype=np.int64)


def _days(dates: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(dates.as_unit("s").asi8 // _DAY_S, dtype=np.int64)


def _us_equity(use_rth: bool, index_only: bool) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    schedule = _exchange_calendar("XNYS")
    dates = pd.DatetimeIndex(schedule.index)
    opens, closes = _epoch_s(schedule["open"]), _epoch_s(schedule["close"])
    if use_rth or index_only:
        return dates, opens, closes
    # Pre-market from 04:00; post-market runs 4 hours past the close (17:00 on half days).
    return dates, _at_local(dates, 4, 0, _NEW_YORK), closes + 4 * 3600


def _cme_equity(use_rth: bool) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    schedule = _exchange_calendar("CMES")
    dates = pd.DatetimeIndex(schedule.index)
    cal_opens, cal_closes = _epoch_s(schedule["open"]), _epoch_s(schedule["close"])
    if use_rth:
        opens = _at_local(dates, 8, 30, _CHICAGO)
        closes = np.minimum(_at_local(dates, 15, 0, _CHICAGO), cal_closes)
        return dates, opens, closes
    # CMES models 17:00-17:00; equity futures halt daily 16:00-17:00 Chicago.
    return dates, cal_opens, np.minimum(_at_local(dates, 16, 0, _CHICAGO), cal_closes)


def _fx_24x5() -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    last = _exchange_calendar("XNYS").index[-1]
    dates = pd.bdate_range(CALENDAR_START, last)
    opens = _at_local(dates - pd.Timedelta(days=1), 17, 0, _NEW_YORK)
    return dates, opens, _at_local(dates, 17, 0, _NEW_YORK)


@functools.lru_cache(maxsize=16)
def schedule(kind: MarketKind, use_rth: bool, zone: str) -> Sessions:
    """Return every session of ``kind`` the calendars cover.

    Args:
        kind: The market family.
        use_rth: Regular trading hours only (IB's ``liquidHours``) instead of all trading hours.
        zone: IANA zone whose UTC offsets are recorded per session (for bar alignment).
    """
    if kind is MarketKind.CME_EQUITY:
        dates, opens, closes = _cme_equity(use_rth)
    elif kind is MarketKind.FX_24X5:
        dates, opens, closes = _fx_24x5()
    else:
        dates, opens, closes = _us_equity(use_rth, kind is MarketKind.US_INDEX)
    keep = closes > opens
    return Sessions(
        _days(dates)[keep], opens[keep], closes[keep], utc_offsets_at(opens[keep], zone)
    )


def format_hours(sessions: Sessions, zone: str, first_day: int, last_day: int) -> str:
    """Render IB's ``tradingHours``/``liquidHours`` text for days ``first_day..last_day``.

    The format is ``20240105:0930-20240105:1600;20240106:CLOSED`` in the instrument's zone,
    one entry per calendar day, keyed by session date. A day without a session of its own is
    ``CLOSED`` unless a session starts on it (Sunday 17:00 for Monday's futures session), so no
    day is listed both closed and open.
    """
    by_date = {int(d): i for i, d in enumerate(sessions.dates)}
    parts, opening_days = [], set()
    for day in range(first_day, last_day + 2):
        i = by_date.get(day)
        if i is None:
            continue
        start = pd.Timestamp(int(sessions.opens[i]), unit="s", tz="UTC").tz_convert(zone)
        end = pd.Timestamp(int(sessions.closes[i]), unit="s", tz="UTC").tz_convert(zone)
        opening_days.add(f"{start:%Y%m%d}")
        if day <= last_day:
            parts.append((day, f"{start:%Y%m%d:%H%M}-{end:%Y%m%d:%H%M}"))
    for day in range(first_day, last_day + 1):
        label = _yyyymmdd(day)
        if day not in by_date and label not in opening_days:
            parts.append((day, f"{label}:CLOSED"))
    return ";".join(text for _, text in sorted(parts))


def _yyyymmdd(day: int) -> str:
    return str(np.datetime64(day, "D")).replace("-", "")
