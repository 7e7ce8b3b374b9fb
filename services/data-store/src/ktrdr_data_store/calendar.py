"""When markets are open, in UTC nanoseconds: the closed time that gap planning skips (pure).

Holidays and early closes come from ``exchange_calendars``. The hours mirror the TWS
simulator's session model (``infra/ib-gateway-sim``, ``ktrdr_ib_sim.sessions``) so that the
planner asks for exactly the bars the gateway serves:

- **STK** (US stocks, XNYS or XNAS days): ktrdr asks IB for ``use_rth=False``, so a session runs
  through the extended hours, 04:00 New York to four hours past the close (20:00; 17:00 on half
  days). With ``use_rth`` it is the exchange's regular 09:30-16:00 (13:00 on half days).
- **IND** (US indices, XNYS days): regular hours only, whatever ``use_rth`` says, because an
  index is only calculated while its exchange trades. Aligned on Chicago time (CBOE, as IB
  reports SPX) unless the exchange is NYSE or NASDAQ.
- **FUT** (CME Globex, ES): CMES sessions, 17:00 Chicago the evening before to 16:00, so the
  daily 16:00-17:00 halt is closed time; early closes cut the session. With ``use_rth``,
  08:30-15:00 Chicago.
- **CASH** (forex, IDEALPRO): 24x5, one session per weekday from 17:00 New York the day before to
  17:00 (Sunday 17:00 to Friday 17:00), no holidays.

All times are int64 nanoseconds since the epoch (UTC); ranges are half-open ``[start, end)``.
A session's *date* is the day it is named after (a CME session opening Sunday evening is
Monday's), which is also the 00:00 UTC stamp of its daily bar.

Calendars cover the session dates from ``CALENDAR_START`` to about a year ahead (the library's
default end); a range outside that raises ``CalendarRangeError`` naming the bounds, so a
caller that wants history before them clamps its start to ``MarketCalendar.first_ns``.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from enum import Enum

import numpy as np
import pandas as pd
from ktrdr_shared.types import InstrumentType, Timeframe, from_unix_nanos

#: First session date any calendar covers; IB keeps no bars from before it.
CALENDAR_START = "1980-01-01"
DAY_NS = 86_400 * 1_000_000_000
HOUR_NS = 3_600 * 1_000_000_000
_NEW_YORK = "America/New_York"
_CHICAGO = "America/Chicago"
_build_lock = threading.Lock()

Range = tuple[int, int]  # [start, end) in ns


class CalendarRangeError(ValueError):
    """A range reaches outside the session dates a calendar covers."""


class _Hours(Enum):
    """Which hours of a market's session days count as open."""

    US_EXTENDED = "04:00 to 4 h past the close New York"
    US_REGULAR = "regular hours"
    CME_GLOBEX = "17:00 the day before to 16:00 Chicago"
    CME_REGULAR = "08:30-15:00 Chicago"
    FX_24X5 = "Sunday 17:00 to Friday 17:00 New York"


@dataclass(frozen=True, eq=False)
class MarketCalendar:
    """The sessions of one market, in time order, as parallel numpy arrays.

    Attributes:
        name: what the calendar models, e.g. ``"XNYS, 04:00 to 4 h past the close New York"``.
        zone: IANA zone whose wall clock intraday bars are aligned to.
        dates: each session's date, in days since 1970-01-01.
        opens: each session's open, ns.
        closes: each session's close, ns (exclusive).
        offsets: the zone's UTC offset at each open, ns (constant through a session: every
            market here is closed when the clocks change at 02:00 on a Sunday).
    """

    name: str
    zone: str
    dates: np.ndarray
    opens: np.ndarray
    closes: np.ndarray
    offsets: np.ndarray

    @property
    def first_ns(self) -> int:
        """Return the earliest instant the calendar answers for: 00:00 UTC of its first date."""
        return int(self.dates[0]) * DAY_NS

    @property
    def last_ns(self) -> int:
        """Return the instant the calendar stops answering: 00:00 UTC of its last date."""
        return int(self.dates[-1]) * DAY_NS

    def sessions(self, start_ns: int, end_ns: int) -> list[Range]:
        """Return the whole sessions open at some instant of ``[start_ns, end_ns)``.

        Sessions are not clipped to the range and never overlap; forex sessions abut.

        Raises:
            CalendarRangeError: if the range reaches outside the calendar's dates.
        """
        lo, hi = self._overlapping(start_ns, end_ns)
        return list(zip(self.opens[lo:hi].tolist(), self.closes[lo:hi].tolist(), strict=True))

    def bar_windows(self, timeframe: Timeframe, start_ns: int, end_ns: int) -> list[Range]:
        """Return where bars of ``timeframe`` can be stamped, overlapping ``[start_ns, end_ns)``.

        Intraday bars are stamped at their open, so these are the sessions. A daily bar is
        stamped 00:00 UTC of its session date and a weekly bar 00:00 UTC of the week's first
        session date (weeks start on Monday), so for them each window is that one UTC day.

        Raises:
            CalendarRangeError: if the range reaches outside the calendar's dates.
        """
        if timeframe.is_intraday:
            return self.sessions(start_ns, end_ns)
        self._check_bounds(start_ns, end_ns)
        days = self.dates if timeframe is Timeframe.D1 else _first_of_each_week(self.dates)
        stamps = days * DAY_NS
        inside = stamps[(stamps + DAY_NS > start_ns) & (stamps < end_ns)].tolist()
        return [(stamp, stamp + DAY_NS) for stamp in inside]

    def complete_until(self, timeframe: Timeframe, now_ns: int) -> int:
        """Return the stamp before which every bar of ``timeframe`` has closed at ``now_ns``.

        Capping a load's end at it keeps the bar still in progress out of the plan: IB would
        answer with a partial bar that the store would then keep as if it were final.
        """
        self._check_bounds(now_ns, now_ns)
        i = int(np.searchsorted(self.closes, now_ns, side="right"))  # first session still open
        if timeframe.is_intraday:
            if i == len(self.opens) or now_ns < self.opens[i]:
                return now_ns  # closed: every bar so far has ended
            in_progress = grid_floor(now_ns, int(self.offsets[i]), timeframe.nanos)
            return max(int(self.opens[i]), in_progress)
        if i == len(self.dates):
            return now_ns
        day = int(self.dates[i])
        if timeframe is Timeframe.W1:
            weeks = _week_of(self.dates)
            day = int(self.dates[np.searchsorted(weeks, weeks[i], side="left")])
        return min(now_ns, day * DAY_NS)

    def is_open(self, instant_ns: int) -> bool:
        """Return whether a session is open at ``instant_ns``."""
        i = int(np.searchsorted(self.opens, instant_ns, side="right")) - 1
        return i >= 0 and instant_ns < int(self.closes[i])

    def _overlapping(self, start_ns: int, end_ns: int) -> tuple[int, int]:
        self._check_bounds(start_ns, end_ns)
        first = int(np.searchsorted(self.closes, start_ns, side="right"))
        last = int(np.searchsorted(self.opens, end_ns, side="left"))
        return first, max(first, last)

    def _check_bounds(self, start_ns: int, end_ns: int) -> None:
        if start_ns > end_ns:
            raise ValueError(f"range starts at {_iso(start_ns)}, after its end {_iso(end_ns)}")
        if start_ns < self.first_ns or end_ns > self.last_ns:
            raise CalendarRangeError(
                f"range {_iso(start_ns)} .. {_iso(end_ns)} reaches outside the {self.name} "
                f"calendar, which covers {_iso(self.first_ns)} .. {_iso(self.last_ns)}; "
                "clamp the range to those bounds"
            )


def grid_floor(instant_ns: int, offset_ns: int, step_ns: int) -> int:
    """Return the last multiple of ``step_ns`` on the local clock at or before ``instant_ns``.

    The local clock is UTC shifted by ``offset_ns``; IB cuts intraday bars on it, so a 4-hour
    bar in New York starts at 00:00, 04:00, 08:00 ... local time, whatever the season.
    """
    return (instant_ns + offset_ns) // step_ns * step_ns - offset_ns


def utc_offsets_ns(instants_ns: np.ndarray, zone: str) -> np.ndarray:
    """Return the UTC offset of ``zone`` at each instant, in ns (negative west of Greenwich)."""
    instants = np.asarray(instants_ns, dtype=np.int64)
    if zone == "UTC" or len(instants) == 0:
        return np.zeros(len(instants), dtype=np.int64)
    utc = pd.DatetimeIndex(instants.astype("datetime64[ns]")).tz_localize("UTC")
    local = utc.tz_convert(zone).tz_localize(None).as_unit("ns")
    return np.asarray(local.asi8 - instants, dtype=np.int64)


# Exchanges IB names (and ISO MICs) per instrument type -> (calendar, hours, zone).
_MARKETS: dict[InstrumentType, dict[str | None, tuple[str, bool, str]]] = {
    InstrumentType.STK: {
        **dict.fromkeys([None, "SMART", "NYSE", "ARCA", "AMEX", "BATS", "IEX", "XNYS"],
                        ("XNYS", True, _NEW_YORK)),
        **dict.fromkeys(["NASDAQ", "ISLAND", "XNAS"], ("XNAS", True, _NEW_YORK)),
    },
    InstrumentType.IND: {
        **dict.fromkeys([None, "CBOE", "SMART"], ("XNYS", False, _CHICAGO)),
        **dict.fromkeys(["NYSE", "NASDAQ"], ("XNYS", False, _NEW_YORK)),
    },
    InstrumentType.FUT: dict.fromkeys([None, "CME", "GLOBEX", "CMES"], ("CMES", True, _CHICAGO)),
    InstrumentType.CASH: dict.fromkeys([None, "IDEALPRO", "IDEAL"], ("FX", True, _NEW_YORK)),
}  # fmt: skip


def calendar_for(
    instrument_type: InstrumentType, exchange: str | None = None, *, use_rth: bool = False
) -> MarketCalendar:
    """Return the (cached) calendar for an instrument type traded on ``exchange``.

    Args:
        instrument_type: IB's security type.
        exchange: IB's exchange name (``SMART``, ``NASDAQ``, ``CME``, ``IDEALPRO`` ...) or an ISO
            MIC; ``None`` or ``""`` takes the type's default.
        use_rth: regular trading hours only, as in IB's ``useRTH`` (ktrdr's default is False).

    Raises:
        ValueError: for an exchange ktrdr has no calendar for, listing the ones it has.
    """
    markets = _MARKETS[InstrumentType(instrument_type)]
    key = (exchange or "").strip().upper() or None
    if key not in markets:
        known = ", ".join(sorted(k for k in markets if k))
        raise ValueError(
            f"no calendar for {instrument_type} on exchange {exchange!r}; "
            f"use one of {known} (or none for the default)"
        )
    source, extended, zone = markets[key]
    hours = _hours_for(source, extended and not use_rth)
    return _build(source, hours, zone)


def _hours_for(source: str, extended: bool) -> _Hours:
    if source == "CMES":
        return _Hours.CME_GLOBEX if extended else _Hours.CME_REGULAR
    if source == "FX":
        return _Hours.FX_24X5
    return _Hours.US_EXTENDED if extended else _Hours.US_REGULAR


@functools.lru_cache(maxsize=16)
def _build(source: str, hours: _Hours, zone: str) -> MarketCalendar:
    """Build a calendar once per (source, hours, zone); the library takes a while."""
    if hours is _Hours.FX_24X5:
        last = _schedule("XNYS").index[-1]  # forex has no calendar: end with the stock one
        dates = pd.DatetimeIndex(pd.bdate_range(CALENDAR_START, last))
        opens = _at_local(dates - pd.Timedelta(days=1), 17, 0, _NEW_YORK)
        closes = _at_local(dates, 17, 0, _NEW_YORK)
    else:
        schedule = _schedule(source)
        dates = pd.DatetimeIndex(schedule.index)
        opens, closes = _epoch_ns(schedule["open"]), _epoch_ns(schedule["close"])
        opens, closes = _apply_hours(hours, dates, opens, closes)
    keep = closes > opens
    day_numbers = np.asarray(dates.as_unit("s").asi8 // 86_400, dtype=np.int64)[keep]
    opens, closes = opens[keep], closes[keep]
    offsets = utc_offsets_ns(opens, zone)
    return MarketCalendar(f"{source}, {hours.value}", zone, day_numbers, opens, closes, offsets)


def _apply_hours(
    hours: _Hours, dates: pd.DatetimeIndex, opens: np.ndarray, closes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the sessions' opens and closes for ``hours`` (the library gives regular hours)."""
    if hours is _Hours.US_EXTENDED:
        # Pre-market from 04:00; post-market runs 4 hours past the close (17:00 on half days).
        return _at_local(dates, 4, 0, _NEW_YORK), closes + 4 * HOUR_NS
    if hours is _Hours.CME_GLOBEX:
        # CMES runs 17:00-17:00; equity futures halt daily 16:00-17:00 Chicago.
        return opens, np.minimum(_at_local(dates, 16, 0, _CHICAGO), closes)
    if hours is _Hours.CME_REGULAR:
        regular_close = np.minimum(_at_local(dates, 15, 0, _CHICAGO), closes)
        return _at_local(dates, 8, 30, _CHICAGO), regular_close
    return opens, closes


@functools.lru_cache(maxsize=4)
def _schedule(name: str) -> pd.DataFrame:
    import exchange_calendars as xcals

    with _build_lock, warnings.catch_warnings():  # construction is not documented thread-safe
        # exchange_calendars reads Series.values, which pandas deprecates; not ours to fix.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(name, start=CALENDAR_START).schedule


def _at_local(dates: pd.DatetimeIndex, hour: int, minute: int, zone: str) -> np.ndarray:
    """Return ``hour:minute`` wall-clock time in ``zone`` on each date, in ns."""
    local = (dates + pd.Timedelta(hours=hour, minutes=minute)).tz_localize(
        zone, ambiguous=False, nonexistent="shift_forward"
    )
    return np.asarray(local.as_unit("ns").asi8, dtype=np.int64)


def _epoch_ns(column: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(column).as_unit("ns").asi8, dtype=np.int64)


def _week_of(days: np.ndarray) -> np.ndarray:
    return (days + 3) // 7  # 1970-01-01 was a Thursday; weeks start on Monday


def _first_of_each_week(days: np.ndarray) -> np.ndarray:
    weeks = _week_of(days)
    first = np.ones(len(days), dtype=bool)
    first[1:] = weeks[1:] != weeks[:-1]
    return days[first]


def _iso(instant_ns: int) -> str:
    return from_unix_nanos(instant_ns).isoformat().replace("+00:00", "Z")
