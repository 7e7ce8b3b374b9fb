"""A job's progress in words: why it is where it is, and when it should end.

The REST job view (and each ``progress`` event) carries a ``reason`` and an estimate;
``explain`` turns them into the words the progress line and ``ktrdr jobs show`` print,
e.g. ``fetching 1,234 bars/s · 12/30 requests · ETA 14:03`` or ``waiting for IB's
pacing window until 14:05:12``. Times are the user's local time, with the date only
when it is not today.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

PHRASES = {
    "planning": "planning",
    "queued": "queued behind other jobs",
    "fetching": "fetching",
    "pacing": "waiting for IB's pacing window",
    "ib_disconnected": "IB disconnected",
    "no_connector": "no ib-connector running",
    "storing": "storing",
    "cancelling": "cancelling",
    "storage_full": "the data directory is full; waiting for space",
    "training": "training",
    "done": "done",
}


def explain(
    progress: Mapping[str, Any], *, now: datetime | None = None, tz: tzinfo | None = None
) -> str:
    """Return a progress's reason and estimate in words ("" when it gives no reason).

    Args:
        progress: a REST ``progress`` object or a ``progress`` event's data.
        now: the moment to compare dates with (default: now).
        tz: the zone to print times in (default: the local zone).
    """
    reason = progress.get("reason")
    if not reason:
        return ""
    clock = _Clock(now, tz)
    parts = [_head(str(reason), progress, clock)]
    done, planned = progress.get("requests_done"), progress.get("requests_planned")
    if done is not None:
        parts.append(f"{done:,}/{planned:,} requests" if planned else f"{done:,} requests")
    if progress.get("eta") and reason not in ("done", "cancelling"):
        parts.append(f"ETA {clock(progress['eta'], seconds=False)}")
    return " · ".join(parts)


def counts(progress: Mapping[str, Any]) -> str:
    """Return what a job did so far, e.g. ``12 IB requests, 4,567 bars`` ("" when unknown)."""
    parts = []
    if progress.get("requests_done") is not None:
        parts.append(f"{progress['requests_done']:,} IB requests")
    if progress.get("bars") is not None:
        parts.append(f"{progress['bars']:,} bars")
    return ", ".join(parts)


def _head(reason: str, progress: Mapping[str, Any], clock: _Clock) -> str:
    phrase = PHRASES.get(reason, reason.replace("_", " "))
    if reason == "fetching" and progress.get("rate") is not None:
        return f"{phrase} {progress['rate']:,.0f} bars/s"
    if reason == "pacing" and progress.get("until"):
        return f"{phrase} until {clock(progress['until'])}"
    if reason == "ib_disconnected" and progress.get("since"):
        return f"{phrase} since {clock(progress['since'])}"
    if reason == "done" and progress.get("bars") is not None:
        return f"{phrase}: {progress['bars']:,} bars"
    return phrase


class _Clock:
    """Print moments as local times of day (with the date when not today)."""

    def __init__(self, now: datetime | None, tz: tzinfo | None) -> None:
        self.tz = tz
        self.today = (now or datetime.now(tz)).astimezone(tz).date()

    def __call__(self, value: str | datetime, *, seconds: bool = True) -> str:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        local = moment.astimezone(self.tz)
        shown = local.strftime("%H:%M:%S" if seconds else "%H:%M")
        return shown if local.date() == self.today else f"{local:%Y-%m-%d} {shown}"
