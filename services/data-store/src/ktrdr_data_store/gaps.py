"""Plan what a load must fetch: the range minus stored bars, answered ranges and closed time (pure).

All times are int64 nanoseconds since the epoch (UTC); every range is half-open
``[start, end)`` and holds the bars whose *stamp* lies in it, as a ``FetchBars`` segment does.
A bar is stamped at its open; a daily bar at 00:00 UTC of its session date and a weekly bar at
00:00 UTC of its week's first session date (``MarketCalendar.bar_windows`` gives these).

Which bars can exist follows IB (and the simulator): intraday bars are cut on the
``timeframe`` grid of the market's wall clock and clipped to their session, so a session that
opens off the grid (09:30 with hourly bars, 17:00 with 4-hour bars) starts with a short bar
stamped at the open. A bar's *slot* runs from its stamp to the next grid point or session
boundary, whichever comes first; a daily or weekly bar's slot is its one-day window.

A stored bar fills the slot its stamp lies in. What is left of the open time, less what IB
already answered, falls into stretches; a stretch is a gap only if some bar could be stamped in
it. That is the precise form of "a stretch shorter than one bar is not a gap": a range that
starts at 10:15 with hourly bars has no bar before 11:00 to fetch, while a missing 09:30 bar
of half an hour is a gap.

Gaps separated only by closed time are joined into one segment where IB's requests are long
(a week of minute bars is one request, whatever nights it spans), but not for bars of 30 s or
less: their requests cover half an hour to eight hours, so a segment across a night would
spend requests on windows IB answers "no data" for, against its strict pacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import overload

import numpy as np
from ktrdr_shared.types import LoadMode, Timeframe, from_unix_nanos, to_unix_nanos

from ktrdr_data_store.calendar import DAY_NS, utc_offsets_ns

Range = tuple[int, int]

#: IB's rules for small bars (hard pacing, six months of history, requests of hours, not
#: weeks) apply to bars of this many seconds or less.
SMALL_BAR_MAX_S = 30
_NEVER = np.iinfo(np.int64).max
_EMPTY = np.zeros(0, dtype=np.int64)


def plan_missing_segments(
    *,
    timeframe: Timeframe,
    start_ns: int,
    end_ns: int,
    stored_ts: Sequence[int] | np.ndarray,
    answered: Sequence[Range],
    sessions: Sequence[Range],
    zone: str = "UTC",
) -> list[Range]:
    """Return the fewest, largest ranges to fetch so that ``[start_ns, end_ns)`` is complete.

    Every bar that could exist in the range and is neither stored nor inside an answered
    range lies in exactly one returned range. No returned range overlaps a stored bar's slot or
    an answered range, and each starts at a bar stamp (in open time). Ranges separated only by
    closed time (a night, a weekend, a holiday) are joined, so one range may span a weekend;
    for bars of 30 s or less (``is_small_bar``) they are not, and each range lies in one
    stretch of open time (abutting sessions, as forex's, make one stretch).

    Args:
        timeframe: the bar size.
        start_ns: the range's first instant.
        end_ns: the range's end (exclusive).
        stored_ts: stamps of the bars in the store (any order; only those near the range matter).
        answered: ranges IB already answered (with or without bars), any order, may overlap.
        sessions: where bars can be stamped, from ``MarketCalendar.bar_windows``: the sessions
            for intraday bars, one-day windows for daily and weekly bars. They may abut, not
            overlap.
        zone: IANA zone of the market's wall clock (``MarketCalendar.zone``), which the
            intraday bar grid follows; ignored for daily and weekly bars.

    Returns:
        Sorted, disjoint ``(start, end)`` ranges; empty when nothing is missing.

    Raises:
        ValueError: if ``start_ns`` is after ``end_ns``, a range is inverted or sessions overlap.
    """
    if start_ns > end_ns:
        raise ValueError(f"start_ns {start_ns} is after end_ns {end_ns}; give start before end")
    step = timeframe.nanos if timeframe.is_intraday else DAY_NS
    windows = _Windows.of(sessions, zone if timeframe.is_intraday else "UTC", step)
    stored_slots = windows.slots(_near(stored_ts, start_ns - step, end_ns))
    filled = _merge(*_concat(stored_slots, _ranges(answered, "answered")))
    open_in_range = _clip(*_merge(windows.opens, windows.closes), start_ns, end_ns)
    missing = _subtract(open_in_range, filled, start_ns, end_ns)
    stamps = windows.first_stamp_from(missing[0])
    has_bar = stamps < missing[1]
    segments = (stamps[has_bar], missing[1][has_bar])
    if is_small_bar(timeframe):
        return list(zip(segments[0].tolist(), segments[1].tolist(), strict=True))
    return _join_across_closed_time(segments, filled)


def is_small_bar(timeframe: Timeframe) -> bool:
    """Return whether IB's rules for bars of 30 s or less apply to ``timeframe``."""
    return timeframe.seconds <= SMALL_BAR_MAX_S


def resolve_range(
    mode: LoadMode,
    *,
    now: datetime | int,
    default_lookback: timedelta,
    requested_start: datetime | int | None = None,
    requested_end: datetime | int | None = None,
    first_stored: datetime | int | None = None,
    last_stored: datetime | int | None = None,
    head_timestamp: datetime | int | None = None,
    timeframe: Timeframe | None = None,
) -> Range:
    """Return the ``(start, end)`` ns range a load of ``mode`` covers.

    - ``tail``: from the last stored bar (or ``now - default_lookback`` when nothing is
      stored) to ``now``.
    - ``backfill``: from IB's head timestamp to the first stored bar (``now`` when empty).
    - ``full``: from the head timestamp to ``now``; planning then finds the internal gaps too.

    A requested start or end overrides the mode's. The range is empty (``start == end``) when
    the store already reaches past it. Times are aware datetimes or ns since the epoch.

    Args:
        mode: how the load picks its range.
        now: the current time; nothing may be requested after it.
        default_lookback: how far back a tail load of an empty store starts.
        requested_start: the start the user gave, if any.
        requested_end: the end the user gave, if any.
        first_stored: the stamp of the first stored bar, if any.
        last_stored: the stamp of the last stored bar, if any.
        head_timestamp: IB's earliest bar (``ktrdr.ib.head_timestamp``); backfill and full
            need it unless a start is given.
        timeframe: the bar size; for daily and weekly bars the head is moved back to 00:00 UTC
            of its day, because their bars are stamped then, before the session opens.

    Raises:
        ValueError: naming the field, for a naive datetime, a requested time after ``now``,
            a requested start not before the requested end, a lookback that is not positive,
            or a backfill or full load without a head timestamp or a start.
    """
    now_ns = _instant(now, "now")
    start, end = _instant(requested_start, "start"), _instant(requested_end, "end")
    _check_requested(start, end, now_ns)
    if default_lookback <= timedelta(0):
        raise ValueError(f"default_lookback {default_lookback} must be positive")
    if start is None:
        head = _instant(head_timestamp, "head_timestamp")
        if head is not None and timeframe is not None and not timeframe.is_intraday:
            head = head // DAY_NS * DAY_NS
        lookback_start = now_ns - _to_nanos(default_lookback)
        start = _mode_start(mode, _instant(last_stored, "last_stored"), head, lookback_start)
    if end is None:
        first = _instant(first_stored, "first_stored")
        end = first if mode is LoadMode.BACKFILL and first is not None else now_ns
    return start, max(start, end)


def _mode_start(mode: LoadMode, last_stored: int | None, head: int | None, lookback: int) -> int:
    if mode is LoadMode.TAIL:
        return lookback if last_stored is None else last_stored
    if head is None:
        raise ValueError(
            f"a {mode.value} load starts at IB's head timestamp, and head_timestamp is missing; "
            "ask ktrdr.ib.head_timestamp for it or give a start"
        )
    return head


def _check_requested(start: int | None, end: int | None, now_ns: int) -> None:
    for name, value in (("start", start), ("end", end)):
        if value is not None and value > now_ns:
            raise ValueError(
                f"{name} {_iso(value)} is in the future (now is {_iso(now_ns)}); "
                f"give a {name} at or before now"
            )
    if start is not None and end is not None and start >= end:
        raise ValueError(
            f"start {_iso(start)} is not before end {_iso(end)}; give a start before the end"
        )


@overload
def _instant(value: datetime | int, name: str) -> int: ...


@overload
def _instant(value: datetime | int | None, name: str) -> int | None: ...


def _instant(value: datetime | int | None, name: str) -> int | None:
    """Return a time as ns since the epoch, naming the field if it is naive."""
    if value is None or isinstance(value, int):
        return value
    try:
        return to_unix_nanos(value)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from e


def _to_nanos(span: timedelta) -> int:
    """Return a duration in nanoseconds, exactly."""
    return (span.days * 86_400 + span.seconds) * 1_000_000_000 + span.microseconds * 1_000


class _Windows:
    """Where bars can be stamped: sorted, non-overlapping windows, their clocks and the grid."""

    def __init__(self, opens: np.ndarray, closes: np.ndarray, offsets: np.ndarray, step: int):
        self.opens, self.closes, self.offsets, self.step = opens, closes, offsets, step
        self.boundaries = np.unique(np.concatenate([opens, closes]))

    @classmethod
    def of(cls, sessions: Sequence[Range], zone: str, step: int) -> _Windows:
        opens, closes = _ranges(sessions, "sessions")
        order = np.argsort(opens, kind="stable")
        opens, closes = opens[order], closes[order]
        overlap = np.flatnonzero(opens[1:] < closes[:-1])
        if len(overlap):
            i = int(overlap[0])
            first, second = _span(opens[i], closes[i]), _span(opens[i + 1], closes[i + 1])
            raise ValueError(f"sessions {first} and {second} overlap; give disjoint sessions")
        return cls(opens, closes, utc_offsets_ns(opens, zone), step)

    def offset_at(self, instants: np.ndarray) -> np.ndarray:
        """Return the UTC offset of the window each instant lies in (or last opened before)."""
        if len(self.opens) == 0:
            return np.zeros(len(instants), dtype=np.int64)
        i = np.searchsorted(self.opens, instants, side="right") - 1
        offsets: np.ndarray = self.offsets[np.maximum(i, 0)]
        return offsets

    def slots(self, stamps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the slot each stamp fills: to the next grid point or window boundary."""
        step, offset = self.step, self.offset_at(stamps)
        next_grid = ((stamps + offset) // step + 1) * step - offset
        i = np.searchsorted(self.boundaries, stamps, side="right")
        bounds = np.append(self.boundaries, _NEVER)
        return stamps, np.minimum(next_grid, bounds[i])

    def first_stamp_from(self, instants: np.ndarray) -> np.ndarray:
        """Return the first instant at or after each one where a bar can be stamped.

        Each instant must lie in a window: the answer is the next grid point of that window's
        clock or the next window's open, whichever comes first (the caller checks it is in time).
        """
        step, offset = self.step, self.offset_at(instants)
        grid = -((-(instants + offset)) // step) * step - offset
        next_open = np.append(self.opens, _NEVER)[np.searchsorted(self.opens, instants)]
        first: np.ndarray = np.minimum(grid, next_open)
        return first


def _near(stored_ts: Sequence[int] | np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Return the sorted, unique stamps in ``[lo, hi)``: only those can fill a slot in range."""
    ts = np.asarray(stored_ts, dtype=np.int64)
    if len(ts) > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
        ts = np.sort(ts)
    ts = ts[np.searchsorted(ts, lo, side="left") : np.searchsorted(ts, hi, side="left")]
    if len(ts) < 2:
        return ts
    # sorted already: a neighbour mask is ~500x faster than np.unique on millions of stamps
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]
    return ts[keep]


def _ranges(pairs: Sequence[Range], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return the non-empty ranges as start and end arrays, refusing inverted ones."""
    if len(pairs) == 0:
        return _EMPTY, _EMPTY
    both = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    inverted = np.flatnonzero(both[:, 0] > both[:, 1])
    if len(inverted):
        i = int(inverted[0])
        raise ValueError(f"{name}[{i}] {_span(*both[i])} ends before it starts")
    keep = both[:, 0] < both[:, 1]
    return both[keep, 0], both[keep, 1]


def _concat(*parts: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the union of ranges as sorted, disjoint, non-abutting ranges."""
    if len(starts) == 0:
        return _EMPTY, _EMPTY
    order = np.argsort(starts, kind="stable")
    starts, reach = starts[order], np.maximum.accumulate(ends[order])
    first = np.flatnonzero(np.concatenate([[True], starts[1:] > reach[:-1]]))
    last = np.append(first[1:], len(starts)) - 1
    return starts[first], reach[last]


def _clip(starts: np.ndarray, ends: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    starts, ends = np.maximum(starts, lo), np.minimum(ends, hi)
    keep = starts < ends
    return starts[keep], ends[keep]


def _subtract(
    ranges: tuple[np.ndarray, np.ndarray], holes: tuple[np.ndarray, np.ndarray], lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return sorted disjoint ``ranges`` within ``[lo, hi)`` less merged ``holes``."""
    between = _clip(np.append(lo, holes[1]), np.append(holes[0], hi), lo, hi)
    return _intersect(ranges, between)


def _intersect(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Return the intersection of two lists of sorted, disjoint ranges, sorted."""
    first = np.searchsorted(a[1], b[0], side="right")  # first of a ending after each b starts
    stop = np.searchsorted(a[0], b[1], side="left")  # a's that start before each b ends
    counts = np.maximum(stop - first, 0)
    which_b = np.repeat(np.arange(len(b[0])), counts)
    rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    which_a = np.repeat(first, counts) + rank
    return np.maximum(a[0][which_a], b[0][which_b]), np.minimum(a[1][which_a], b[1][which_b])


def _join_across_closed_time(
    segments: tuple[np.ndarray, np.ndarray], filled: tuple[np.ndarray, np.ndarray]
) -> list[Range]:
    """Join neighbouring segments unless a stored slot or an answered range lies between them.

    What else lies between them holds no bar to fetch (closed time, or less than a bar), and
    one request over it costs IB less than two.
    """
    starts, ends = segments
    if len(starts) == 0:
        return []
    j = np.searchsorted(filled[1], ends[:-1], side="right")  # first filled ending after a gap
    blocked = np.append(filled[0], _NEVER)[j] < starts[1:]
    first = np.flatnonzero(np.concatenate([[True], blocked]))
    last = np.append(first[1:], len(starts)) - 1
    return list(zip(starts[first].tolist(), ends[last].tolist(), strict=True))


def _span(start: int, end: int) -> str:
    return f"[{_iso(int(start))}, {_iso(int(end))})"


def _iso(instant_ns: int) -> str:
    return from_unix_nanos(instant_ns).isoformat().replace("+00:00", "Z")
