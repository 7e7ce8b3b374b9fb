"""Bar validation at the door: one pure, vectorised check of a ``BarBatch``.

Every batch that enters ktrdr from outside (IB's answer in the connector, a batch published by
hand on ``ktrdr.bars.*`` reaching the store) goes through :func:`check_batch` once, before it can
touch anything stored. The check is numpy over the columns, never a Python loop per bar, so it
costs little next to the decode.

What the rules are, and why:

- Prices are finite; negative prices are real (CL settled at -37.63 on 2020-04-20), so only
  NaN and +/-inf are refused. ``wap`` is finite where present; ``volume`` is finite and >= 0;
  ``count`` is >= 0.
- OHLC order depends on ``whatToShow``. For TRADES, MIDPOINT, BID and ASK the four prices are
  one series' open, high, low and close, so ``low <= min(open, close)``, ``high >=
  max(open, close)`` and ``low <= high``. For BID_ASK IB's fields are aggregates of two series
  (open = time-average bid, high = max ask, low = min bid, close = time-average ask; see
  ``shared/design/tws-simulator.md``): ``low <= open`` (min bid <= average bid), ``close <=
  high`` (average ask <= max ask) and ``low <= high`` hold always, but ``open <= high`` and
  ``low <= close`` hold only while the market is not crossed, so they are not required.
- Stamps lie in the batch's window ``[start, end)``, no two alike (order is not required: the
  store sorts), in whole seconds, on the timeframe's grid: daily and weekly bars at 00:00:00
  UTC (the store's convention: the session date); sizes that divide half an hour at whole
  multiples of their size in UTC; 1h and 4h bars on the half-hour grid in UTC, because IB cuts
  them on the exchange's local clock and stamps a session that opens off the grid (09:30 New
  York) with a short first bar at the open.
- No stamp before :data:`EARLIEST_NS` (1971-01-01): the epoch year is where a zero or a
  seconds-for-nanoseconds slip lands, and no market data is that old in IB.
- With ``now_ns``: no bar opens later than one bar after now.
- With ``subject``: the subject's symbol key and timeframe are the body's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ktrdr_shared.messages.bars import BarBatch
from ktrdr_shared.subjects import SubjectError, parse_bars
from ktrdr_shared.subjects import bars as subjects_bars
from ktrdr_shared.types import Timeframe, WhatToShow, from_unix_nanos, symbol_key

CODE = "invalid_bars"
"""The error code of a batch that fails a check (``BatchRejected.code``, ``SegmentFailed.code``)."""

EARLIEST_NS = 31_536_000 * 1_000_000_000  # 1971-01-01T00:00:00Z
_SECOND_NS = 1_000_000_000
_HALF_HOUR_NS = 1_800 * _SECOND_NS
_DAY_NS = 86_400 * _SECOND_NS


@dataclass(frozen=True)
class BarProblem:
    """Why a batch may not be stored: the first rule it breaks.

    Attributes:
        check: the rule's name (``non_finite``, ``negative``, ``ohlc_order``, ``outside_window``,
            ``duplicate_ts``, ``off_grid``, ``too_early``, ``future``, ``subject_mismatch``).
        index: the first offending bar (its position in the batch), None for the batch itself.
        field: the offending column, None where the rule is about the whole batch.
        message: what was wrong, with the values, for people.
    """

    check: str
    index: int | None
    field: str | None
    message: str


def check_batch(
    batch: BarBatch, *, subject: str | None = None, now_ns: int | None = None
) -> BarProblem | None:
    """Return the first rule ``batch`` breaks, or None when it may be stored.

    Args:
        batch: the bars as they came (from IB or off the bus).
        subject: the subject the batch arrived on; checked against the body when given.
        now_ns: the current time; bars opening later than one bar after it are refused.
    """
    arrays = batch_arrays(batch)
    if isinstance(arrays, BarProblem):
        return arrays
    return check_arrays(batch, arrays, subject=subject, now_ns=now_ns)


def batch_arrays(batch: BarBatch) -> dict[str, np.ndarray] | BarProblem:
    """Return the batch's columns as numpy arrays (``wap``/``count`` only when present).

    The store builds its Arrow table from these same arrays (no copy), so a checked batch
    is converted from lists once.
    """
    try:
        arrays = {"ts": np.asarray(batch.ts, dtype=np.int64)}
        if batch.count is not None:
            arrays["count"] = np.asarray(batch.count, dtype=np.int64)
    except OverflowError as e:
        return BarProblem("out_of_range", None, None, f"a stamp or count is out of range: {e}")
    for name in ("open", "high", "low", "close", "volume"):
        arrays[name] = np.asarray(getattr(batch, name), dtype=np.float64)
    if batch.wap is not None:
        arrays["wap"] = np.asarray(batch.wap, dtype=np.float64)
    return arrays


class Header(Protocol):
    """What the checks read of a batch besides its columns (``BarBatch`` is one)."""

    @property
    def timeframe(self) -> Timeframe: ...
    @property
    def what_to_show(self) -> WhatToShow: ...
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...


@dataclass(frozen=True)
class BatchHeader:
    """A batch's header without its bars (what a held batch keeps for ``check_many``)."""

    timeframe: Timeframe
    what_to_show: WhatToShow
    start: int
    end: int

    @classmethod
    def of(cls, batch: BarBatch) -> BatchHeader:
        return cls(batch.timeframe, batch.what_to_show, batch.start, batch.end)


def check_arrays(
    batch: BarBatch | Header,
    arrays: dict[str, np.ndarray],
    *,
    subject: str | None = None,
    now_ns: int | None = None,
) -> BarProblem | None:
    """Return the first rule the batch breaks, given its columns from ``batch_arrays``.

    ``subject`` is checked only for a ``BarBatch`` (a header alone has no symbol).
    """
    problem = check_subject(batch, subject) if subject and isinstance(batch, BarBatch) else None
    if problem is not None:
        return problem
    names = ("open", "high", "low", "close", "volume", "wap")
    cols: dict[str, np.ndarray] = {name: arrays[name] for name in names if name in arrays}
    count = arrays.get("count")
    if _all_good(batch, cols, count, arrays["ts"], now_ns):
        return None
    return _first_problem(batch, cols, count, arrays["ts"], now_ns)


def check_many(
    headers: Sequence[Header],
    arrays: Sequence[dict[str, np.ndarray]],
    *,
    now_ns: int | None = None,
) -> list[BarProblem | None]:
    """Return ``check_arrays`` of each batch (subjects aside), checking all of them at once.

    The batches' columns are joined and checked with the same few array operations as one
    batch, so a round of a thousand good batches costs about what a handful cost one by one;
    only when that finds something are the batches checked one by one, to say which broke
    which rule.
    """
    if not headers:
        return []
    if not _all_good_many(headers, arrays, now_ns):
        return [check_arrays(h, a, now_ns=now_ns) for h, a in zip(headers, arrays, strict=True)]
    return [None] * len(headers)


def _all_good_many(
    headers: Sequence[Header], arrays: Sequence[dict[str, np.ndarray]], now_ns: int | None
) -> bool:
    """Return True when every batch surely passes; batches of one kind only (else False)."""
    first = headers[0]
    if any((h.timeframe, h.what_to_show) != (first.timeframe, first.what_to_show) for h in headers):
        return False
    joined = {
        name: np.concatenate([a[name] for a in arrays if name in a])
        for name in ("ts", "open", "high", "low", "close", "volume", "wap", "count")
        if any(name in a for a in arrays)
    }
    ts = joined.pop("ts")
    count = joined.pop("count", None)
    if ts.size == 0:
        return all(h.start < h.end for h in headers)
    sizes = np.fromiter((len(a["ts"]) for a in arrays), np.int64, len(arrays))
    ends = np.cumsum(sizes)
    rises = np.diff(ts)
    rises[ends[(ends > 0) & (ends < ts.size)] - 1] = 1  # where one batch ends, another begins
    if not _values_good(first.what_to_show, joined, count) or rises.min(initial=1) <= 0:
        return False
    some = sizes > 0  # each non-empty batch's first and last stamp against its window
    starts = np.fromiter((h.start for h in headers), np.int64, len(headers))[some]
    stops = np.fromiter((h.end for h in headers), np.int64, len(headers))[some]
    firsts, lasts = ts[(ends - sizes)[some]], ts[ends[some] - 1]
    latest = np.inf if now_ns is None else now_ns + first.timeframe.nanos
    return bool(
        (firsts >= np.maximum(starts, EARLIEST_NS)).all()
        and (lasts < stops).all()
        and lasts.max() <= latest
        and not (ts % _grid_ns(first.timeframe)).any()
    )


def _values_good(what: WhatToShow, cols: dict[str, np.ndarray], count: np.ndarray | None) -> bool:
    """Return True when every price is finite, volume and count >= 0 and OHLC in order."""
    total = sum(float(values.sum()) for values in cols.values())  # inf, -inf or nan in any
    o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
    if not math.isfinite(total) or cols["volume"].min(initial=0) < 0:
        return False
    if count is not None and count.min(initial=0) < 0:
        return False
    if what is WhatToShow.BID_ASK:
        return bool((lo <= o).all() and (c <= h).all() and (lo <= h).all())
    # low <= min(open, close) <= max(open, close) <= high, so low <= high too
    return bool((lo <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all())


def _first_problem(
    batch: Header,
    cols: dict[str, np.ndarray],
    count: np.ndarray | None,
    ts: np.ndarray,
    now_ns: int | None,
) -> BarProblem | None:
    """Return the first rule broken, checking each rule on its own (the slow, exact path)."""
    for check in (_check_values, _check_order):
        if (problem := check(batch.what_to_show, cols, count)) is not None:
            return problem
    return _check_stamps(batch, ts, now_ns)


def _all_good(
    batch: Header,
    cols: dict[str, np.ndarray],
    count: np.ndarray | None,
    ts: np.ndarray,
    now_ns: int | None,
) -> bool:
    """Return True when the batch surely passes every check, in few array operations.

    The common case, a good batch, costs about a third of the separate checks; False only
    means "look closer": the separate checks then find the first problem, or none.
    """
    if ts.size == 0:
        return True
    if not _values_good(batch.what_to_show, cols, count) or np.diff(ts).min(initial=1) <= 0:
        return False  # (strictly rising stamps: sorted and unique)
    first, last = int(ts[0]), int(ts[-1])
    latest = batch.end if now_ns is None else min(batch.end, now_ns + batch.timeframe.nanos + 1)
    return (
        first >= max(EARLIEST_NS, batch.start)
        and last < latest
        and not bool((ts % _grid_ns(batch.timeframe)).any())
    )


def check_subject(batch: BarBatch, subject: str) -> BarProblem | None:
    """Return ``subject_mismatch`` when ``subject`` names another dataset than the body."""
    if subject == subjects_bars(batch.symbol, batch.timeframe):
        return None  # the common case, without parsing
    try:
        parsed = parse_bars(subject)
    except SubjectError as e:
        return BarProblem("subject_mismatch", None, None, str(e))
    body = (symbol_key(batch.symbol), batch.timeframe)
    if (parsed.symbol_key, parsed.timeframe) != body:
        return BarProblem(
            "subject_mismatch",
            None,
            None,
            f"subject '{subject}' is {parsed.symbol_key} {parsed.timeframe} but "
            f"the body is {body[0]} {body[1]}",
        )
    return None


def _first(mask: np.ndarray) -> int | None:
    """Return the index of the first True in ``mask``, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _check_values(
    what: WhatToShow, cols: dict[str, np.ndarray], count: np.ndarray | None
) -> BarProblem | None:
    for name, values in cols.items():
        if (i := _first(~np.isfinite(values))) is not None:
            return BarProblem("non_finite", i, name, f"bar {i}: {name} is {values[i]}")
    if (i := _first(cols["volume"] < 0)) is not None:
        return BarProblem("negative", i, "volume", f"bar {i}: volume is {cols['volume'][i]}")
    if count is not None and (i := _first(count < 0)) is not None:
        return BarProblem("negative", i, "count", f"bar {i}: count is {count[i]}")
    return None


def _check_order(
    what: WhatToShow, cols: dict[str, np.ndarray], count: np.ndarray | None
) -> BarProblem | None:
    o, h, lo, c = cols["open"], cols["high"], cols["low"], cols["close"]
    if what is WhatToShow.BID_ASK:  # low = min bid <= open = avg bid; close = avg ask <= max ask
        rules = (("low", lo > h), ("low", lo > o), ("high", c > h))
    else:
        rules = (("low", lo > h), ("low", lo > np.minimum(o, c)), ("high", h < np.maximum(o, c)))
    for name, broken in rules:
        if (i := _first(broken)) is not None:
            return BarProblem(
                "ohlc_order",
                i,
                name,
                f"bar {i} ({what}): open {o[i]} high {h[i]} low {lo[i]} "
                f"close {c[i]} are not in order",
            )
    return None


def _check_stamps(batch: Header, ts: np.ndarray, now_ns: int | None) -> BarProblem | None:
    def problem(check: str, i: int, why: str) -> BarProblem:
        return BarProblem(check, i, "ts", f"bar {i} at {_show(int(ts[i]))}: {why}")

    if (i := _first(ts < EARLIEST_NS)) is not None:
        return problem("too_early", i, f"before {_show(EARLIEST_NS)}")
    if now_ns is not None and (i := _first(ts > now_ns + batch.timeframe.nanos)) is not None:
        return problem("future", i, f"opens after now ({_show(now_ns)}) plus one bar")
    if (i := _first((ts < batch.start) | (ts >= batch.end))) is not None:
        return problem("outside_window", i, f"outside [{_show(batch.start)}, {_show(batch.end)})")
    if (i := _first(ts % _grid_ns(batch.timeframe) != 0)) is not None:
        return problem("off_grid", i, f"not on the {batch.timeframe} grid")
    order = np.argsort(ts, kind="stable")
    repeats = order[1:][np.diff(ts[order]) == 0]
    if repeats.size:
        return problem("duplicate_ts", int(repeats.min()), "a second bar with that stamp")
    return None


def _grid_ns(timeframe: Timeframe) -> int:
    """Return the step every stamp of ``timeframe`` is a multiple of (UTC nanoseconds)."""
    if not timeframe.is_intraday:
        return _DAY_NS
    if _HALF_HOUR_NS % timeframe.nanos == 0:
        return timeframe.nanos
    return _HALF_HOUR_NS  # 1h, 4h: a session opening at :30 starts with a bar stamped there


def _show(nanos: int) -> str:
    return f"{from_unix_nanos(nanos).isoformat()} ({nanos} ns)"
