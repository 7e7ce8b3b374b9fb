"""What one dataset holds: stored ranges, gaps, and what IB answered empty (no NATS imports).

Everything is computed from the store, the answered ledger and the market calendar with the
same rules as load planning (``gaps.plan_missing_segments``), so coverage shows exactly what a
load would fetch:

- ``gaps``: missing segments inside ``[requested start or first bar, requested end or the end
  of the last bar)``, i.e. open time where a bar could be stamped that is neither stored nor
  answered. A weekend, a holiday or a night is not a gap, and neither is a stretch too short to
  hold a bar. A requested end after ``now`` is cut to the last bar that has closed.
- ``stored``: the stored bars as contiguous ranges, from the first bar's open to the last
  bar's end. Two neighbouring bars share a range unless a gap lies between them, so a range
  runs across nights, weekends and holidays.
- ``answered_empty``: the parts of answered ranges that hold no stored bar although the
  calendar says a bar could be stamped there (a halt, a holiday the calendar does not know,
  a symbol with no data yet). Closed time that IB was asked about is not listed: it is never a
  gap anyway. These parts may lie inside a stored range (nothing is missing there).
- ``rows``, ``first``, ``last``: the bars inside the requested range (the whole dataset when
  none is given).
- ``days`` (when asked): every calendar date of the requested range, else of what the dataset
  covers (its bars, gaps and answered-empty ranges), up to now, with its state
  (``coverage_days``).

The calendar follows the instrument type when it is known; otherwise a six-letter pair of
currency codes (``EURUSD``, ``EUR.USD``) is forex (24x5) and anything else a US stock (XNYS
with extended hours), as the connector's discovery order would most often find.
"""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pyarrow as pa
from ktrdr_shared.errors import InvalidRequest
from ktrdr_shared.messages import Coverage, CoverageDay, CoverageRequest, DayState, TimeRange
from ktrdr_shared.types import InstrumentType, Timeframe, from_unix_nanos, to_unix_nanos, utc_now

from ktrdr_data_store.calendar import DAY_NS, MarketCalendar
from ktrdr_data_store.gaps import plan_missing_segments
from ktrdr_data_store.ledger import AnsweredLedger, merge_ranges
from ktrdr_data_store.planning import market_calendar
from ktrdr_data_store.store import BarStore, year_of

Range = tuple[int, int]

#: The most calendar dates ``coverage_days`` lists: 20 years (a longer range keeps its latest).
MAX_DAYS = 20 * 366

# Currencies IB trades as CASH pairs on IDEALPRO.
CURRENCIES = frozenset({
    "USD", "EUR", "GBP", "JPY", "CHF", "AUD", "NZD", "CAD", "SEK", "NOK", "DKK", "HKD",
    "SGD", "CNH", "MXN", "ZAR", "PLN", "HUF", "CZK", "TRY", "ILS", "KRW", "RUB", "INR",
})  # fmt: skip
_PAIR = re.compile(r"^([A-Z]{3})[._/ ]?([A-Z]{3})$")


def default_instrument_type(symbol: str) -> InstrumentType:
    """Return the instrument type to assume for a symbol whose type is unknown.

    A pair of currency codes (``EURUSD``, ``EUR.USD``, ``EUR_USD``) is forex; anything else is
    taken for a stock.
    """
    match = _PAIR.match(symbol.strip().upper())
    if match and match[1] in CURRENCIES and match[2] in CURRENCIES and match[1] != match[2]:
        return InstrumentType.CASH
    return InstrumentType.STK


def coverage_of(
    store: BarStore,
    ledger: AnsweredLedger,
    request: CoverageRequest,
    *,
    instrument_type: InstrumentType | None = None,
    exchange: str | None = None,
    now: datetime | None = None,
    use_rth: bool = False,
) -> Coverage:
    """Return what is stored, what is missing and what IB answered empty for one dataset.

    Args:
        store: where the bars are.
        ledger: the ranges IB already answered.
        request: the dataset, and optionally the range to look at.
        instrument_type: the symbol's type, when known (see the module docstring otherwise).
        exchange: where it trades, when known (picks e.g. NASDAQ's calendar over NYSE's).
        now: the current time (default: the clock); gaps end at the last closed bar before it.
        use_rth: the dataset holds regular trading hours only (its profile), so the hours
            outside them are no gaps.

    Raises:
        InvalidRequest: naming the field, for a naive ``start``, ``end`` or ``now``.
    """
    timeframe = Timeframe(request.timeframe)
    calendar = market_calendar(
        instrument_type or default_instrument_type(request.symbol), exchange, use_rth=use_rth
    )
    start, end = _instant(request.start, "start"), _instant(request.end, "end")
    now_ns = _instant(now, "now") or to_unix_nanos(utc_now())
    answered = _clip_all(ledger.ranges(request.symbol, timeframe), start, end)
    stamps = _stored_stamps(store, request.symbol, timeframe, start, end)
    ends = bar_ends(calendar, timeframe, stamps)
    gaps = _gaps(calendar, timeframe, start, end, stamps, ends, answered, now_ns)
    empty = _answered_empty(calendar, timeframe, stamps, answered)
    days = None
    if request.days:
        lo, hi = _days_span(start, end, stamps, ends, gaps + empty, now_ns)
        days = coverage_days(calendar, timeframe, lo, hi, stamps, gaps, empty)
    return Coverage(
        symbol=request.symbol,
        timeframe=timeframe,
        rows=len(stamps),
        first=from_unix_nanos(int(stamps[0])) if len(stamps) else None,
        last=from_unix_nanos(int(stamps[-1])) if len(stamps) else None,
        stored=_time_ranges(stored_ranges(stamps, ends, gaps)),
        gaps=_time_ranges(gaps),
        answered_empty=_time_ranges(empty),
        days=days,
    )


def _gaps(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    start: int | None,
    end: int | None,
    stamps: np.ndarray,
    ends: np.ndarray,
    answered: list[Range],
    now_ns: int,
) -> list[Range]:
    """Return what is missing from the requested range, else from the first bar to the last."""
    gap_lo = start if start is not None else (int(stamps[0]) if len(stamps) else None)
    gap_hi = end if end is not None else (int(ends[-1]) if len(stamps) else None)
    if gap_hi is None and gap_lo is not None:
        gap_hi = now_ns  # a start on an empty dataset: everything up to now is missing
    if gap_lo is None or gap_hi is None:
        return []
    gap_hi = _not_after_now(calendar, timeframe, gap_hi, now_ns)
    return _plan(calendar, timeframe, gap_lo, gap_hi, stamps, answered)


def _answered_empty(
    calendar: MarketCalendar, timeframe: Timeframe, stamps: np.ndarray, answered: list[Range]
) -> list[Range]:
    """Return the answered time where a bar could be stamped and none is stored."""
    if not answered:
        return []
    unanswered = _plan(calendar, timeframe, answered[0][0], answered[-1][1], stamps, [])
    return _intersect(unanswered, answered)


def _days_span(
    start: int | None,
    end: int | None,
    stamps: np.ndarray,
    ends: np.ndarray,
    covered: list[Range],
    now_ns: int,
) -> Range:
    """Return the range ``days`` lists: the one asked for, else the bars' and ``covered``'s.

    It ends at ``now`` at the latest; it is empty when there is nothing to list.
    """
    spans = covered + ([(int(stamps[0]), int(ends[-1]))] if len(stamps) else [])
    los = [start] if start is not None else [a for a, _ in spans]
    his = [end] if end is not None else [b for _, b in spans]
    if not los or not his:
        return 0, 0
    return min(los), min(max(his), now_ns)


def coverage_days(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    lo_ns: int,
    hi_ns: int,
    stamps: np.ndarray,
    gaps: list[Range],
    empty: list[Range],
) -> list[CoverageDay]:
    """Return the state of every calendar date of ``[lo_ns, hi_ns)``, oldest first.

    A date is the one a session is named after (a forex or CME session that opens the evening
    before belongs to the next day). The dates run from the one ``lo_ns`` falls in to the one
    ``hi_ns - 1`` falls in (an instant inside a session: the session's date; any other: its
    UTC date), only those the calendar covers, and at most ``MAX_DAYS`` (20 years) of them:
    a longer range keeps its latest dates. Each session date is looked at through a window:
    the session itself for intraday bars; for daily bars the UTC day its bar is stamped on,
    and for weekly bars that of its week's first session date. Bars are counted from their
    stamps rather than the stored ranges, which run across answered-empty days.

    Args:
        calendar: the dataset's market calendar.
        timeframe: the dataset's bar size.
        lo_ns: where the range starts.
        hi_ns: where it ends (exclusive).
        stamps: the stored bars' stamps, sorted.
        gaps: the missing ranges, sorted and disjoint.
        empty: the ranges IB answered empty, sorted and disjoint.

    Returns:
        ``closed`` where the calendar has no session; else ``partial`` (bars and a gap),
        ``stored`` (bars, no gap), ``gap`` (a gap, no bars), ``empty`` (answered empty, no
        bars) or ``none`` (none of these: outside what was asked or covered).
    """
    if lo_ns >= hi_ns:
        return []
    first = max(_date_of(calendar, timeframe, lo_ns), int(calendar.dates[0]))
    last = min(_date_of(calendar, timeframe, hi_ns - 1), int(calendar.dates[-1]))
    first = max(first, last - MAX_DAYS + 1)
    if first > last:
        return []
    dates = np.arange(first, last + 1, dtype=np.int64)
    at = np.searchsorted(calendar.dates, dates)  # each date's session, when it has one
    closed = calendar.dates[at] != dates
    lo, hi = _day_windows(calendar, timeframe, at)
    has_bars = np.searchsorted(stamps, hi) > np.searchsorted(stamps, lo)
    has_gap, has_empty = _overlaps(gaps, lo, hi), _overlaps(empty, lo, hi)
    first_that_holds = {
        DayState.CLOSED: closed,
        DayState.PARTIAL: has_bars & has_gap,
        DayState.STORED: has_bars,
        DayState.GAP: has_gap,
        DayState.EMPTY: has_empty,
    }
    states = [*first_that_holds, DayState.NONE]
    picked = np.select(list(first_that_holds.values()), range(5), default=5).tolist()
    names = np.datetime_as_string(dates.astype("datetime64[D]")).tolist()
    return [CoverageDay(date=name, state=states[i]) for name, i in zip(names, picked, strict=True)]


def _date_of(calendar: MarketCalendar, timeframe: Timeframe, instant_ns: int) -> int:
    """Return the date (days since 1970-01-01) an instant counts for in ``coverage_days``."""
    if timeframe.is_intraday:
        i = int(np.searchsorted(calendar.opens, instant_ns, side="right")) - 1
        if i >= 0 and instant_ns < int(calendar.closes[i]):
            return int(calendar.dates[i])
    return instant_ns // DAY_NS


def _day_windows(
    calendar: MarketCalendar, timeframe: Timeframe, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Return the windows of the sessions at ``at``: where their bars are stamped."""
    if timeframe.is_intraday:
        return calendar.opens[at], calendar.closes[at]
    dates = calendar.dates[at]
    if timeframe is Timeframe.W1:
        weeks = (calendar.dates + 3) // 7  # 1970-01-01 was a Thursday; weeks start on Monday
        dates = calendar.dates[np.searchsorted(weeks, weeks[at])]
    return dates * DAY_NS, (dates + 1) * DAY_NS


def _overlaps(ranges: list[Range], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Return whether each window ``[lo, hi)`` overlaps one of sorted, disjoint ``ranges``."""
    if not ranges:
        return np.zeros(len(lo), dtype=bool)
    starts, ends = np.asarray(ranges, dtype=np.int64).T
    j = np.searchsorted(ends, lo, side="right")  # the first range ending after the window opens
    found: np.ndarray = (j < len(ends)) & (starts[np.minimum(j, len(ends) - 1)] < hi)
    return found


def stored_ranges(stamps: np.ndarray, ends: np.ndarray, gaps: list[Range]) -> list[Range]:
    """Return sorted bars as ranges, split wherever a gap lies between two of them.

    Args:
        stamps: the bars' stamps, sorted and unique.
        ends: each bar's end (``bar_ends``).
        gaps: missing segments; none overlaps a stored bar.
    """
    if len(stamps) == 0:
        return []
    gap_starts = np.asarray([g[0] for g in gaps], dtype=np.int64)
    cuts = np.unique(np.searchsorted(stamps, gap_starts, side="left"))
    cuts = cuts[(cuts > 0) & (cuts < len(stamps))]
    firsts = np.concatenate([[0], cuts])
    lasts = np.append(cuts, len(stamps)) - 1
    return list(zip(stamps[firsts].tolist(), ends[lasts].tolist(), strict=True))


def bar_ends(calendar: MarketCalendar, timeframe: Timeframe, stamps: np.ndarray) -> np.ndarray:
    """Return where each bar ends, by the same rule as the gap planner's slots.

    An intraday bar ends at the next grid point of the market's clock or its session's close,
    whichever comes first; a daily bar after its UTC day; a weekly bar at the next Monday.
    """
    if len(stamps) == 0:
        return stamps
    if timeframe is Timeframe.D1:
        return stamps + DAY_NS
    if timeframe is Timeframe.W1:
        days = stamps // DAY_NS
        next_monday = ((days + 3) // 7 + 1) * 7 - 3  # 1970-01-01 was a Thursday
        return next_monday * DAY_NS
    i = np.searchsorted(calendar.opens, stamps, side="right") - 1
    inside = (i >= 0) & (stamps < calendar.closes[np.maximum(i, 0)])
    offsets = calendar.offsets[np.maximum(i, 0)]
    step = timeframe.nanos
    next_grid = (stamps + offsets) // step * step - offsets + step  # as ``calendar.grid_floor``
    closes = np.where(inside, calendar.closes[np.maximum(i, 0)], next_grid)
    ends: np.ndarray = np.minimum(next_grid, closes)
    return ends


def _plan(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    lo: int,
    hi: int,
    stamps: np.ndarray,
    answered: list[Range],
) -> list[Range]:
    lo, hi = max(lo, calendar.first_ns), min(hi, calendar.last_ns)
    if lo >= hi:
        return []
    return plan_missing_segments(
        timeframe=timeframe,
        start_ns=lo,
        end_ns=hi,
        stored_ts=stamps,
        answered=answered,
        sessions=calendar.bar_windows(timeframe, lo, hi),
        zone=calendar.zone,
    )


def _not_after_now(calendar: MarketCalendar, timeframe: Timeframe, end: int, now_ns: int) -> int:
    if end <= now_ns:
        return end
    now_ns = min(max(now_ns, calendar.first_ns), calendar.last_ns)
    return min(end, calendar.complete_until(timeframe, now_ns))


def _stored_stamps(
    store: BarStore, symbol: str, timeframe: Timeframe, start: int | None, end: int | None
) -> np.ndarray:
    """Return the stamps of the bars in ``[start, end)``, read a year at a time.

    Only ``ts`` is kept, so ten million one-minute bars cost 80 MB here, not all their columns.
    """
    stats = store.stats(symbol, timeframe)
    if stats.first_ns is None or stats.last_ns is None:
        return np.zeros(0, dtype=np.int64)
    lo = stats.first_ns if start is None else max(start, stats.first_ns)
    hi = stats.last_ns + 1 if end is None else min(end, stats.last_ns + 1)
    parts = []
    first_year, last_year = year_of(np.array([lo, max(lo, hi - 1)], dtype=np.int64)).tolist()
    for year in range(first_year, last_year + 1):
        year_lo, year_hi = max(lo, _year_start(year)), min(hi, _year_start(year + 1))
        if year_lo < year_hi:
            table = store.read(symbol, timeframe, year_lo, year_hi)
            parts.append(table.column("ts").cast(pa.int64()).to_numpy())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _year_start(year: int) -> int:
    return int(np.datetime64(f"{year:04d}-01-01", "ns").astype(np.int64))


def _clip_all(ranges: list[Range], start: int | None, end: int | None) -> list[Range]:
    lo = start if start is not None else np.iinfo(np.int64).min
    hi = end if end is not None else np.iinfo(np.int64).max
    return merge_ranges([(max(a, lo), min(b, hi)) for a, b in ranges])


def _intersect(a: list[Range], b: list[Range]) -> list[Range]:
    """Return the intersection of two sorted lists of disjoint ranges."""
    out: list[Range] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo < hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _time_ranges(ranges: list[Range]) -> list[TimeRange]:
    return [TimeRange(start=from_unix_nanos(a), end=from_unix_nanos(b)) for a, b in ranges]


def _instant(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return to_unix_nanos(value)
    except ValueError as e:
        raise InvalidRequest(f"{name}: {e}", details={"field": name}) from e
