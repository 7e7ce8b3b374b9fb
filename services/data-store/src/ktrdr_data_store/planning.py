"""Plan a load: its range, the segments to fetch, and what the store already held (pure).

``resolve_range`` (gaps.py) turns a mode into a range; here that range is fitted to the
market: it starts no earlier than the calendar knows and ends where the last *complete* bar
ends (``MarketCalendar.complete_until``), so the bar still forming is never fetched and never
recorded as answered. Bars of 30 s or less start no earlier than IB keeps them
(``SMALL_BAR_HISTORY_NS``, six months back from IB's clock), and the plan says so in a note.
``plan_missing_segments`` then finds what is missing inside it, and ``assumed_notes`` says in
the plan's notes what the load took without being told (its start, extended hours).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import NamedTuple

import numpy as np
from ktrdr_shared.messages import LoadData
from ktrdr_shared.types import InstrumentType, LoadMode, Timeframe, from_unix_nanos

from ktrdr_data_store.calendar import DAY_NS, MarketCalendar, calendar_for
from ktrdr_data_store.gaps import is_small_bar, plan_missing_segments, resolve_range

log = logging.getLogger(__name__)

Range = tuple[int, int]

#: IB serves no bars of 30 s or less older than six months (tws-simulator.md 5.5); 180 days
#: stays inside that whatever the months' lengths (the simulator keeps 183).
SMALL_BAR_HISTORY_NS = 180 * DAY_NS
_SECOND_NS = 1_000_000_000

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


#: Types whose intraday bars IB's useRTH changes: stocks' pre- and post-market, futures'
#: sessions outside regular hours (Globex overnight). Forex and indexes have none.
_EXTENDED_HOURS = {
    InstrumentType.STK: "pre- and post-market",
    InstrumentType.FUT: "the sessions outside regular trading hours",
}


class LoadSpan(NamedTuple):
    """The range ``[start_ns, end_ns)`` a load covers and, in sentences, what it leaves out.

    ``span[0]`` and ``span[1]`` are the range, as they were when ``load_range`` returned a pair.
    """

    start_ns: int
    end_ns: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadPlan:
    """A planned load: ``[start_ns, end_ns)``, the missing segments in it, the bars held.

    ``notes`` say, for the job's ``JobPlanned.notes``, what the load asked for but will not
    fetch and why (bars older than IB keeps).
    """

    start_ns: int
    end_ns: int
    segments: list[Range]
    cached_before: int
    notes: list[str] = field(default_factory=list)


def market_calendar(
    instrument_type: InstrumentType, exchange: str | None, *, use_rth: bool = False
) -> MarketCalendar:
    """Return the calendar of an instrument; an exchange with no calendar of its own takes
    its type's default (e.g. a US stock on an exchange ktrdr has not mapped trades NYSE hours).
    """
    try:
        return calendar_for(instrument_type, exchange, use_rth=use_rth)
    except ValueError:
        log.info(
            "no calendar for %s on %s; using the %s default",
            instrument_type,
            exchange,
            instrument_type,
        )
        return calendar_for(instrument_type, None, use_rth=use_rth)


def load_range(
    command: LoadData,
    *,
    now_ns: int,
    calendar: MarketCalendar,
    first_stored: int | None,
    last_stored: int | None,
    head_ns: int | None = None,
) -> LoadSpan:
    """Return the range a load covers, fitted to the calendar, to complete bars and to IB.

    Bars of 30 s or less start no earlier than ``ib_history_start``; a note says what was cut,
    and a load wholly older than that is an empty range at its end.

    Raises:
        ValueError: naming the field, for a time in the future or a backfill/full load with
            neither a head timestamp nor a start (see ``gaps.resolve_range``).
    """
    timeframe = command.timeframe
    start, end = resolve_range(
        command.mode,
        now=now_ns,
        default_lookback=DEFAULT_LOOKBACK[timeframe],
        requested_start=command.start,
        requested_end=command.end,
        first_stored=first_stored,
        last_stored=last_stored,
        head_timestamp=head_ns,
        timeframe=timeframe,
    )
    return _fit_to_market(timeframe, start, end, calendar=calendar, now_ns=now_ns)


def _fit_to_market(
    timeframe: Timeframe, start: int, end: int, *, calendar: MarketCalendar, now_ns: int
) -> LoadSpan:
    """Return ``[start, end)`` within the calendar, complete bars and IB's history."""
    start = max(start, calendar.first_ns)
    end = min(end, calendar.complete_until(timeframe, now_ns), calendar.last_ns)
    return _within_ib_history(timeframe, (start, max(start, end)), now_ns)


def ib_history_start(timeframe: Timeframe, now_ns: int) -> int | None:
    """Return the earliest instant IB serves bars of ``timeframe`` from, or None if no limit.

    Bars of 30 s or less go back ``SMALL_BAR_HISTORY_NS`` from IB's clock, rounded up to a whole
    second so a note reads plainly; larger bars go back to IB's head timestamp.
    """
    if not is_small_bar(timeframe):
        return None
    oldest = now_ns - SMALL_BAR_HISTORY_NS
    return -(-oldest // _SECOND_NS) * _SECOND_NS


def _within_ib_history(timeframe: Timeframe, span: Range, now_ns: int) -> LoadSpan:
    """Return ``span`` less what is older than IB keeps, with a note on what was cut."""
    start, end = span
    oldest = ib_history_start(timeframe, now_ns)
    if oldest is None or start >= oldest or start >= end:
        return LoadSpan(start, end)
    limit = "IB's six-month limit for bars of 30 s or less"
    if end <= oldest:
        note = (
            f"{timeframe} bars from {_iso(start)} to {_iso(end)} are all older than {limit} "
            f"(it keeps them from {_iso(oldest)}); nothing was requested"
        )
        return LoadSpan(end, end, (note,))
    note = f"{timeframe} bars before {_iso(oldest)} are older than {limit} and were not requested"
    return LoadSpan(oldest, end, (note,))


def plan_segments(
    timeframe: Timeframe,
    span: LoadSpan | Range,
    *,
    calendar: MarketCalendar,
    stored_ts: np.ndarray,
    answered: list[Range],
) -> LoadPlan:
    """Return the missing segments of ``span`` and how many of its bars were stored.

    Bars of 30 s or less are planned one segment per stretch of open time, so no request the
    connector cuts from a segment covers only closed hours (see ``plan_missing_segments``).

    Args:
        timeframe: the bar size.
        span: the load's range and notes, from ``load_range`` (a bare pair has no notes).
        calendar: the market's sessions.
        stored_ts: stamps of stored bars near the span (ns; may reach one bar before it).
        answered: ranges IB already answered for this dataset.
    """
    start, end = span[0], span[1]
    notes = list(span.notes) if isinstance(span, LoadSpan) else []
    inside = stored_ts[(stored_ts >= start) & (stored_ts < end)]
    if start >= end:
        return LoadPlan(start, end, [], int(inside.size), notes)
    segments = plan_missing_segments(
        timeframe=timeframe,
        start_ns=start,
        end_ns=end,
        stored_ts=stored_ts,
        answered=answered,
        sessions=calendar.bar_windows(timeframe, start, end),
        zone=calendar.zone,
    )
    return LoadPlan(start, end, segments, int(inside.size), notes)


def assumed_notes(
    command: LoadData,
    *,
    start_ns: int,
    instrument_type: InstrumentType,
    stored_rows: int,
    first_stored: int | None,
    last_stored: int | None,
) -> list[str]:
    """Return, for the plan's notes, what a load took without being told.

    Without a start: where it starts and why (a tail's default reach, the last stored bar with
    how many bars the dataset holds, or IB's earliest bar). Without ``use_rth``, for intraday
    bars of a stock or a future: that they include extended hours.

    Args:
        command: the load as asked.
        start_ns: where the plan starts (``LoadPlan.start_ns``).
        instrument_type: what the symbol turned out to be.
        stored_rows: bars the dataset held before the load.
        first_stored: its first bar's stamp, if any.
        last_stored: its last bar's stamp, if any.
    """
    notes = []
    if command.start is None:
        notes.append(_start_note(command, start_ns, stored_rows, first_stored, last_stored))
    extended = _EXTENDED_HOURS.get(instrument_type)
    if extended and command.timeframe.is_intraday and not command.use_rth:
        notes.append(
            f"use_rth not set: {command.timeframe} bars include extended hours "
            f"({extended}); set use_rth (ktrdr data load --rth) for regular trading "
            "hours only"
        )
    return notes


def _start_note(
    command: LoadData, start_ns: int, rows: int, first: int | None, last: int | None
) -> str:
    timeframe, begin = command.timeframe, _iso(start_ns)
    if command.mode is LoadMode.TAIL and last is not None and first is not None:
        held = f"{command.symbol} {timeframe} holds {rows:,} bars from {_iso(first)}"
        return (
            f"no start given: this tail load starts at the last stored bar, {_iso(last)} ({held})"
        )
    if command.mode is LoadMode.TAIL:
        reach = f"reaches back {_span(DEFAULT_LOOKBACK[timeframe])} for {timeframe} bars"
        return (
            f"no start given: loading from {begin} (a tail load of an empty dataset {reach}; "
            "give a start to reach further, or use mode full for all IB has)"
        )
    if command.mode is LoadMode.BACKFILL and first is not None and command.end is None:
        until = f"up to the first stored bar, {_iso(first)}"
        return (
            f"no start given: loading from {begin}, IB's earliest bar, {until} (mode "
            "backfill loads what IB has before it)"
        )
    return (
        f"no start given: loading from {begin}, IB's earliest bar (mode {command.mode} "
        "loads all IB has)"
    )


def _span(length: timedelta) -> str:
    """Return a lookback in words: ``6 hours``, ``180 days``, ``5 years``."""
    if length < timedelta(days=1):
        return f"{length // timedelta(hours=1)} hours"
    if length.days % 365 == 0:
        years = length.days // 365
        return f"{years} year" if years == 1 else f"{years} years"
    return f"{length.days} day" if length.days == 1 else f"{length.days} days"


def read_margin_ns(timeframe: Timeframe) -> int:
    """Return how far before a span stored bars matter (a bar stamped just before it)."""
    return timeframe.nanos if timeframe.is_intraday else DAY_NS * 7


def traded_since(calendar: MarketCalendar, timeframe: Timeframe, last_ns: int, now_ns: int) -> bool:
    """Return whether a bar stamped after ``last_ns`` has completed by ``now_ns``.

    The gap filler's test: a weekend, a holiday or a night adds no complete bar, so no
    load is issued for them. The range is fitted as ``load_range`` fits a tail load (calendar
    bounds, complete bars, IB's history for bars of 30 s or less), so the filler is due exactly
    when that load would plan a segment.
    """
    after, until, _ = _fit_to_market(
        timeframe, last_ns + 1, now_ns, calendar=calendar, now_ns=now_ns
    )
    if until <= after:
        return False
    segments = plan_missing_segments(
        timeframe=timeframe,
        start_ns=after,
        end_ns=until,
        stored_ts=np.zeros(0, np.int64),
        answered=[],
        sessions=calendar.bar_windows(timeframe, after, until),
        zone=calendar.zone,
    )
    return bool(segments)


def _iso(instant_ns: int) -> str:
    return from_unix_nanos(instant_ns).isoformat().replace("+00:00", "Z")
