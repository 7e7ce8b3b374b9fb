"""IB's local validation of historical requests, as pure functions that raise ``IBError``.

The order of checks follows the gateway's (spec section 6, ibx): end time (10314), duration,
bar size, whatToShow, formatDate, keepUpToDate (all 321), then the step/length limit (162).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ktrdr_ib_sim import codes
from ktrdr_ib_sim.sessions import Sessions
from ktrdr_ib_sim.timeframes import (
    BAR_SIZES,
    LEGAL_BAR_SIZES_TEXT,
    BarSize,
    Duration,
    DurationUnit,
)

#: whatToShow values IB knows. The simulator models the first five; others get "no data".
KNOWN_WHAT_TO_SHOW = frozenset(
    {
        "TRADES",
        "MIDPOINT",
        "BID",
        "ASK",
        "BID_ASK",
        "ADJUSTED_LAST",
        "HISTORICAL_VOLATILITY",
        "OPTION_IMPLIED_VOLATILITY",
        "REBATE_RATE",
        "FEE_RATE",
        "YIELD_BID",
        "YIELD_ASK",
        "YIELD_BID_ASK",
        "YIELD_LAST",
        "SCHEDULE",
        "AGGTRADES",
    }
)
LIVE_UPDATE_WHAT_TO_SHOW = frozenset({"TRADES", "MIDPOINT", "BID", "ASK"})

#: Longest duration (nominal seconds) IB serves per bar size of 30 secs or less.
SMALL_BAR_MAX_SECONDS = {1: 2000, 5: 86_400, 10: 7 * 86_400, 15: 7 * 86_400, 30: 31 * 86_400}
#: Bars of 30 secs or less are kept for six months only.
SMALL_BAR_HISTORY_S = 183 * 86_400

_UTC_END = re.compile(r"^(\d{8})-(\d{2}):(\d{2}):(\d{2})$")
_ZONED_END = re.compile(r"^(\d{8}) (\d{2}):(\d{2}):(\d{2})(?: (\S+))?$")
_DURATION = re.compile(r"^(-?\d+) ([SDWMY])$")
_UNIT_LIMITS = {
    DurationUnit.SECONDS: (
        86_400,
        "Historical data request for greater than 86400 seconds rejected.",
    ),
    DurationUnit.DAYS: (
        365,
        "Historical data requests for durations longer than 365 days must be made in years.",
    ),
    DurationUnit.WEEKS: (
        52,
        "Historical data request for durations longer than 52 weeks must be made in years.",
    ),
    DurationUnit.MONTHS: (
        12,
        "Historical data request for durations longer than 12 months must be made in years.",
    ),
    DurationUnit.YEARS: (68, "Historical data requested duration is invalid."),
}


@dataclass(frozen=True)
class EndTime:
    """A parsed ``endDateTime``: ``None`` means now; ``implied_zone`` calls for warning 2174."""

    epoch_s: int | None
    implied_zone: bool = False


def _local_to_epoch(date: str, hms: tuple[str, str, str], zone: str) -> int:
    try:
        tz = ZoneInfo(zone)
        naive = dt.datetime.strptime(date + "".join(hms), "%Y%m%d%H%M%S")
    except (ValueError, KeyError, OSError) as e:  # bad date, unknown or malformed zone
        raise codes.BAD_END_DATE from e
    return int(naive.replace(tzinfo=tz).timestamp())


def parse_end(text: str, login_tz: str) -> EndTime:
    """Parse an ``endDateTime`` in any form IB accepts (spec 3.1).

    Raises:
        IBError: 10314 for anything else.
    """
    if text == "":
        return EndTime(None)
    if match := _UTC_END.match(text):
        date, *hms = match.groups()
        return EndTime(_local_to_epoch(date, (hms[0], hms[1], hms[2]), "UTC"))
    if match := _ZONED_END.match(text):
        date, hh, mm, ss, zone = match.groups()
        return EndTime(_local_to_epoch(date, (hh, mm, ss), zone or login_tz), zone is None)
    raise codes.BAD_END_DATE


def parse_duration(text: str) -> Duration:
    """Parse a ``durationStr`` such as ``"30 D"``.

    Raises:
        IBError: 321 with IB's text for a missing, malformed, too small or too large duration.
    """
    if text.strip() == "":
        raise codes.validation("Historical data request duration not specified.")
    match = _DURATION.match(text)
    if match is None:
        raise codes.validation(
            "When specifying a unit, historical data request duration format is "
            "integer{SPACE}unit (S|D|W|M|Y)."
        )
    duration = Duration(int(match.group(1)), DurationUnit(match.group(2)))
    seconds = duration.unit is DurationUnit.SECONDS
    if duration.count < 1 or (seconds and duration.count < 30):
        raise codes.validation("Historical data requested duration is invalid.")
    limit, text_if_over = _UNIT_LIMITS[duration.unit]
    if duration.count > limit:
        raise codes.validation(text_if_over)
    return duration


def parse_bar_size(text: str) -> BarSize:
    """Return the bar size for a ``barSizeSetting``.

    Raises:
        IBError: 321 listing the legal sizes.
    """
    bar = BAR_SIZES.get(text)
    if bar is None:
        raise codes.validation(
            f"Historical data bar size setting is invalid. Legal ones are: {LEGAL_BAR_SIZES_TEXT}"
        )
    return bar


def check_what_to_show(what_to_show: str) -> None:
    """Raise a 321 for a whatToShow IB does not know."""
    if what_to_show not in KNOWN_WHAT_TO_SHOW:
        raise codes.validation(f"Historical data request whatToShow is invalid: {what_to_show}")


def check_format_date(format_date: int) -> None:
    """Raise a 321 for a formatDate other than 1 or 2 (3 would break ib_async, see spec 3.2)."""
    if format_date not in (1, 2):
        raise codes.validation(f"Date formatting selection of {format_date} rejected.")


def check_live_updates(keep_up_to_date: bool, end: EndTime, what_to_show: str) -> None:
    """Raise the 321 IB sends when keepUpToDate is combined with what it cannot stream."""
    if not keep_up_to_date:
        return
    if end.epoch_s is not None:
        raise codes.validation("End date not supported with live updates")
    if what_to_show not in LIVE_UPDATE_WHAT_TO_SHOW:
        raise codes.validation("Source price not supported with live updates")


def check_step(bar: BarSize, duration: Duration) -> None:
    """Raise 162 "Time length exceed max." when a small bar size is asked for too long."""
    if bar.is_small and duration.nominal_seconds > SMALL_BAR_MAX_SECONDS[bar.seconds]:
        raise codes.TIME_LENGTH_EXCEEDED


@dataclass(frozen=True)
class HistoricalParams:
    """A validated historical request: what to cut, over which duration, up to when."""

    end: EndTime
    duration: Duration
    bar: BarSize


def validate_historical(
    *,
    end_text: str,
    duration_text: str,
    bar_text: str,
    what_to_show: str,
    format_date: int,
    keep_up_to_date: bool,
    login_tz: str,
) -> HistoricalParams:
    """Run IB's checks in IB's order and return the parsed request.

    Raises:
        IBError: The first rule the request breaks (10314, 321 or 162).
    """
    end = parse_end(end_text, login_tz)
    duration = parse_duration(duration_text)
    bar = parse_bar_size(bar_text)
    check_what_to_show(what_to_show)
    check_format_date(format_date)
    check_live_updates(keep_up_to_date, end, what_to_show)
    check_step(bar, duration)
    return HistoricalParams(end, duration, bar)


def window_start(end_s: int, duration: Duration, sessions: Sessions) -> int:
    """Return where a request's window starts, given its end.

    Seconds and weeks count back in clock time; days count back in trading sessions (IB's
    "1 D" at a weekend is the last session); months and years in calendar months and years.
    """
    unit, n = duration.unit, duration.count
    if unit is DurationUnit.SECONDS:
        return end_s - n
    if unit is DurationUnit.WEEKS:
        return end_s - n * 7 * 86_400
    if unit is DurationUnit.DAYS:
        started = int(np.searchsorted(sessions.opens, end_s, side="left"))
        return int(sessions.opens[max(started - n, 0)]) if started else end_s
    offset = pd.DateOffset(months=n) if unit is DurationUnit.MONTHS else pd.DateOffset(years=n)
    return int((pd.Timestamp(end_s, unit="s", tz="UTC") - offset).timestamp())
