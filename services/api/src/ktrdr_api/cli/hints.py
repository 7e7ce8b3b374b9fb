"""What the CLI says it assumed, and what to do next, in words (no I/O).

The CLI output rules (``services/api/README.md``): say what was assumed (defaults taken,
ranges clamped, data already present) and say what to do next on every empty answer.
What a service already says (a plan's ``notes``, a problem's ``hint``) is printed as it
is; the words here fill in what it leaves unsaid, and never repeat it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

INTRADAY = {"1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h"}
WITH_EXTENDED_HOURS = {"STK", "FUT"}  # IB's useRTH changes their intraday bars
LOAD_EXAMPLE = "ktrdr data load AAPL 1h"
TRAIN_EXAMPLE = "ktrdr train start AAPL --timeframe 1h"


def moment(value: str | datetime) -> datetime:
    """Return an RFC 3339 timestamp (or a datetime) as an aware UTC datetime."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed.astimezone(UTC)


def when(value: str | datetime | None, *, minute: bool = False) -> str:
    """Return a moment in UTC as ``2024-06-28 15:00``.

    Seconds show when they are not zero (a 1 s bar), unless ``minute`` (a job's creation).
    """
    if value is None:
        return ""
    utc = moment(value)
    return utc.strftime("%Y-%m-%d %H:%M:%S" if utc.second and not minute else "%Y-%m-%d %H:%M")


def count(n: int, noun: str) -> str:
    """Return ``1 bar``, ``2 bars``, ``1,979 bars``."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def load_command(
    symbol: str, timeframe: str, start: str | None = None, end: str | None = None
) -> str:
    """Return the ``ktrdr data load`` command that loads what was asked for."""
    words = ["ktrdr data load", symbol, timeframe]
    words += [f"--start {start}"] if start else []
    words += [f"--end {end}"] if end else []
    return " ".join(words)


# ---------------------------------------------------------------- a load's plan


def plan_lines(planned: Mapping[str, Any], asked: Mapping[str, Any]) -> list[str]:
    """Return a load's plan in words: its range, what it fetches, what it assumed.

    Args:
        planned: the ``planned`` event's data (range, segments, bars stored, notes).
        asked: the load's parameters as accepted (the ``accepted`` event's ``params``;
            empty when unknown).
    """
    notes = [str(note) for note in planned.get("notes") or []]
    return [
        _plan_head(planned),
        *(f"note: {note}" for note in notes),
        *(f"note: {line}" for line in assumed(planned, asked, notes)),
    ]


def _plan_head(planned: Mapping[str, Any]) -> str:
    segments = len(planned.get("segments") or [])
    stored = int(planned.get("cached_before") or 0)
    start, end = planned.get("start"), planned.get("end")
    if not (start and end):  # an older producer: no range
        return f"planned: {count(segments, 'segment')} to fetch; {count(stored, 'bar')} stored"
    if moment(start) >= moment(end):
        return f"planned: nothing to fetch: the range to load is empty (at {when(start)} UTC)"
    span = f"from {when(start)} to {when(end)} UTC"
    held = f"{count(stored, 'bar')} of that range already stored" if stored else ""
    if segments:
        return f"planned: {count(segments, 'segment')} to fetch {span}; " + (
            held or "none of it stored yet"
        )
    return f"planned: nothing to fetch {span}: " + (
        held or "no bar missing (the market was closed, or IB already answered it empty)"
    )


def assumed(
    planned: Mapping[str, Any], asked: Mapping[str, Any], notes: Sequence[str]
) -> list[str]:
    """Return what a load took without being told, unless the plan's notes say it already."""
    if not asked:
        return []
    said = " ".join(notes).lower()
    timeframe = str(asked.get("timeframe") or "")
    lines = []
    if not asked.get("start") and "start" not in said:
        lines.append(_no_start(planned, asked, timeframe))
    kind = planned.get("instrument_type") or asked.get("instrument_type")
    extended = kind in WITH_EXTENDED_HOURS and timeframe in INTRADAY
    if extended and not asked.get("use_rth") and "extended hours" not in said:
        lines.append(
            f"{timeframe} bars include extended hours (outside regular trading "
            "hours); --rth loads regular trading hours only"
        )
    return lines


def _no_start(planned: Mapping[str, Any], asked: Mapping[str, Any], timeframe: str) -> str:
    mode = asked.get("mode") or "tail"
    if mode != "tail":
        return f"no --start: a {mode} load begins at IB's earliest bar (its head timestamp)"
    if planned.get("cached_before"):
        return "no --start: a tail load begins at the last stored bar; --start loads earlier bars"
    begins = f", from {when(planned['start'])} UTC" if planned.get("start") else ""
    return (
        f"no --start and nothing stored: the data-store's default range for "
        f"{timeframe}{begins}; --start loads earlier bars"
    )


def stored_line(dataset: Mapping[str, Any]) -> str:
    """Return what a dataset holds now, e.g. ``AAPL 1h: 1,979 bars stored, from ... UTC``."""
    name = f"{dataset['symbol']} {dataset['timeframe']}"
    if not dataset.get("rows"):
        return f"{name}: nothing stored"
    return (
        f"{name}: {count(int(dataset['rows']), 'bar')} stored, from "
        f"{when(dataset.get('first'))} to {when(dataset.get('last'))} UTC"
    )


# ---------------------------------------------------------------- empty and short answers


def show_hint(
    symbol: str,
    timeframe: str,
    *,
    start: str | None,
    end: str | None,
    asked_start: datetime | None,
    first_bar: str | None,
    coverage: Mapping[str, Any],
) -> str | None:
    """Return what to say when stored bars do not reach back to what was asked (else None).

    Args:
        symbol: the dataset's symbol.
        timeframe: its bar size.
        start: ``--start`` as typed (repeated in the load command suggested).
        end: ``--end`` as typed.
        asked_start: ``--start`` as a moment.
        first_bar: the first bar answered (None: the answer was empty).
        coverage: the dataset's coverage (``rows``, ``first``, ``last``, ``answered_empty``).
    """
    load = load_command(symbol, timeframe, start, end)
    name = f"{symbol} {timeframe}"
    if not coverage.get("rows") or not coverage.get("first") or not coverage.get("last"):
        return f"nothing stored for {name}: load it with `{load}`"
    first, last = moment(coverage["first"]), moment(coverage["last"])
    if asked_start and asked_start < first and not _answered(coverage, asked_start, first):
        return (
            f"stored data of {name} begins {when(first)} UTC; nothing stored from "
            f"{start}: load it with `{load}`"
        )
    if first_bar is not None:
        return None
    if asked_start and asked_start > last:  # a tail load fetches from the last bar on
        return (
            f"stored data of {name} ends {when(last)} UTC; nothing stored from {start}: "
            f"load what is newer with `{load_command(symbol, timeframe)}`"
        )
    return (
        f"nothing stored in that range ({name} holds {when(first)} to {when(last)} UTC): "
        f"load it with `{load}`"
    )


def _answered(coverage: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    """Return whether IB already answered ``[start, end)`` empty (loading it again adds none)."""
    return any(
        moment(r["start"]) <= start and moment(r["end"]) >= end
        for r in coverage.get("answered_empty") or []
    )


def no_datasets() -> str:
    """Return what to do when nothing is stored."""
    return f"no datasets stored yet: load one with `{LOAD_EXAMPLE}` (any symbol and timeframe)"


def no_jobs(kind: str | None, status: str | None) -> str:
    """Return what to do when a job list is empty."""
    if kind or status:
        which = " ".join(w for w in (status, kind) if w)
        return f"no {which} jobs: `ktrdr jobs ls` lists every job"
    return f"no jobs yet: start one with `{LOAD_EXAMPLE}` or `{TRAIN_EXAMPLE}`"


def no_models() -> str:
    """Return what to do when no model is stored."""
    return f"no models yet: train one with `{TRAIN_EXAMPLE}` (after `{LOAD_EXAMPLE}`)"


def damaged(dataset: Mapping[str, Any]) -> str:
    """Return what to do about a damaged dataset."""
    name = f"{dataset['symbol']} {dataset['timeframe']}"
    return (
        f"{name} is damaged: `ktrdr data repair {name}` moves the unreadable file aside "
        "and loads its range again"
    )
