"""Plan a load: its range, the segments to fetch, and what the store already held (pure).

``resolve_range`` (gaps.py) turns a mode into a range; here that range is fitted to the
market: it starts no earlier than the calendar knows and ends where the last *complete* bar
ends (``MarketCalendar.complete_until``), so the bar still forming is never fetched and never
recorded as answered. ``plan_missing_segments`` then finds what is missing inside it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from ktrdr_shared.messages import LoadData
from ktrdr_shared.types import InstrumentType, Timeframe

from ktrdr_data_store.calendar import DAY_NS, MarketCalendar, calendar_for
from ktrdr_data_store.gaps import plan_missing_segments, resolve_range

log = logging.getLogger(__name__)

Range = tuple[int, int]

# How far back a tail load of an empty dataset reaches: about the span IB serves in a
# handful of requests, not its whole history (a backfill or full load goes there).
DEFAULT_LOOKBACK: dict[Timeframe, timedelta] = {
    Timeframe.S1: timedelta(hours=6),
    Timeframe.S5: timedelta(days=1),
    Timeframe.S15: timedelta(days=2),
    Timeframe.S30: timedelta(days=3),
    Timeframe.M1: timedelta(days=7),
    Timeframe.M5: timedelta(days=30),
    Timeframe.M15: timedelta(days=60),
    Timeframe.M30: timedelta(days=90),
    Timeframe.H1: timedelta(days=180),
    Timeframe.H4: timedelta(days=365),
    Timeframe.D1: timedelta(days=5 * 365),
    Timeframe.W1: timedelta(days=10 * 365),
}


@dataclass(frozen=True)
class LoadPlan:
    """A planned load: ``[start_ns, end_ns)``, the missing segments in it, the bars held."""

    start_ns: int
    end_ns: int
    segments: list[Range]
    cached_before: int


def market_calendar(
    instrument_type: InstrumentType, exchange: str | None, *, use_rth: bool = False
) -> MarketCalendar:
    """Return the calendar of an instrument; an exchange with no calendar of its own takes
    its type's default (e.g. a US stock on an exchange ktrdr has not mapped trades NYSE hours).
    """
    try:
        return calendar_for(instrument_type, exchange, use_rth=use_rth)
    except ValueError:
        log.info("no calendar for %s on %s; using the %s default", instrument_type, exchange,
                 instrument_type)  # fmt: skip
        return calendar_for(instrument_type, None, use_rth=use_rth)


def load_range(
    command: LoadData,
    *,
    now_ns: int,
    calendar: MarketCalendar,
    first_stored: int | None,
    last_stored: int | None,
    head_ns: int | None = None,
) -> Range:
    """Return the range a load covers, fitted to the calendar and to complete bars.

    Raises:
        ValueError: naming the field, for a time in the future or a backfill/full load with
            neither a head timestamp nor a start (see ``gaps.resolve_range``).
    """
    timeframe = command.timeframe
    start, end = resolve_range(
        command.mode, now=now_ns, default_lookback=DEFAULT_LOOKBACK[timeframe],
        requested_start=command.start, requested_end=command.end,
        first_stored=first_stored, last_stored=last_stored, head_timestamp=head_ns,
        timeframe=timeframe,
    )  # fmt: skip
    start = max(start, calendar.first_ns)
    end = min(end, calendar.complete_until(timeframe, now_ns), calendar.last_ns)
    return start, max(start, end)


def plan_segments(
    timeframe: Timeframe,
    span: Range,
    *,
    calendar: MarketCalendar,
    stored_ts: np.ndarray,
    answered: list[Range],
) -> LoadPlan:
    """Return the missing segments of ``span`` and how many of its bars were stored.

    Args:
        timeframe: the bar size.
        span: the load's range, from ``load_range``.
        calendar: the market's sessions.
        stored_ts: stamps of stored bars near the span (ns; may reach one bar before it).
        answered: ranges IB already answered for this dataset.
    """
    start, end = span
    inside = stored_ts[(stored_ts >= start) & (stored_ts < end)]
    if start >= end:
        return LoadPlan(start, end, [], int(inside.size))
    segments = plan_missing_segments(
        timeframe=timeframe, start_ns=start, end_ns=end, stored_ts=stored_ts,
        answered=answered, sessions=calendar.bar_windows(timeframe, start, end),
        zone=calendar.zone,
    )  # fmt: skip
    return LoadPlan(start, end, segments, int(inside.size))


def read_margin_ns(timeframe: Timeframe) -> int:
    """Return how far before a span stored bars matter (a bar stamped just before it)."""
    return timeframe.nanos if timeframe.is_intraday else DAY_NS * 7


def traded_since(calendar: MarketCalendar, timeframe: Timeframe, last_ns: int, now_ns: int) -> bool:
    """Return whether a bar stamped after ``last_ns`` has completed by ``now_ns``.

    The gap filler's test: a weekend, a holiday or a night adds no complete bar, so no
    load is issued for them.
    """
    until = min(calendar.complete_until(timeframe, now_ns), calendar.last_ns)
    after = last_ns + 1
    if until <= after:
        return False
    segments = plan_missing_segments(
        timeframe=timeframe, start_ns=after, end_ns=until, stored_ts=np.zeros(0, np.int64),
        answered=[], sessions=calendar.bar_windows(timeframe, after, until), zone=calendar.zone,
    )  # fmt: skip
    return bool(segments)
