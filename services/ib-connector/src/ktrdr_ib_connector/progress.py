"""``segment_progress``: what each running segment is doing, told without flooding.

A running segment is in one of three states:

* ``fetching``: its requests are going out or being answered;
* ``pacing``: nothing of it is in flight and its next request waits at the gate
  for IB's pacing window; ``until`` is when the gate lets it go (wall clock,
  converted from the gate's monotonic clock);
* ``ib_disconnected``: IB is lost; ``since`` is when the connector noticed.

A report goes out on every change of state and, while the counts move, at most
once per ``interval_s``. A segment still fetching when it ends within its first
``interval_s`` sends none, so a small job's one chunk costs no event. The
decisions (``observe``, ``due``) are pure; ``ProgressReporter`` only samples
the running segments a few times a second and publishes what is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from ktrdr_shared.messages import ProgressReason, SegmentProgress
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import utc_now

from ktrdr_ib_connector.pacing import PacingGate
from ktrdr_ib_connector.segments import SegmentRun

log = logging.getLogger(__name__)

# A wait shorter than this at the gate is part of fetching, not worth a state of its own.
MIN_PACING_WAIT_S = 1.0


@dataclass(frozen=True)
class Snapshot:
    """A segment's state and counts at one instant."""

    state: ProgressReason
    chunks: int
    chunks_done: int
    bars: int
    ib_requests: int
    until: datetime | None = None
    since: datetime | None = None

    def counts(self) -> tuple[int, int, int, int]:
        """Return the counts that make a new report worth sending."""
        return (self.chunks, self.chunks_done, self.bars, self.ib_requests)


def observe(
    run: SegmentRun, *, lost_since: datetime | None, next_send_in_s: float | None, now: datetime
) -> Snapshot:
    """Return the segment's snapshot.

    Args:
        run: the segment.
        lost_since: when IB was lost; None while connected.
        next_send_in_s: seconds until the gate lets the segment's job send (None: nothing waits).
        now: the wall-clock instant of the snapshot.
    """
    counts = (run.chunks, run.chunks_done, run.bars, run.tally.sent)
    if lost_since is not None:
        return Snapshot(ProgressReason.IB_DISCONNECTED, *counts, since=lost_since)
    tally = run.tally
    paced = tally.in_flight == 0 and tally.waiting > 0
    if paced and next_send_in_s is not None and next_send_in_s >= MIN_PACING_WAIT_S:
        until = now + timedelta(seconds=next_send_in_s)
        return Snapshot(ProgressReason.PACING, *counts, until=until)
    return Snapshot(ProgressReason.FETCHING, *counts)


def due(
    last: Snapshot | None,
    now: Snapshot,
    *,
    since_last_s: float,
    age_s: float,
    interval_s: float = 1.0,
) -> bool:
    """Return whether ``now`` is worth a report after ``last`` (None: nothing sent yet).

    Args:
        last: the last snapshot reported.
        now: the current snapshot.
        since_last_s: seconds since ``last`` was reported.
        age_s: seconds since the segment started.
        interval_s: the shortest gap between reports of moving counts.
    """
    if last is None:
        return now.state is not ProgressReason.FETCHING or age_s >= interval_s
    if now.state is not last.state:
        return True
    return now.counts() != last.counts() and since_last_s >= interval_s


@dataclass
class _Tracked:
    run: SegmentRun
    started: float
    last: Snapshot | None = None
    last_at: float = 0.0


class ProgressReporter:
    """Sample the running segments a few times a second; publish the reports due."""

    def __init__(
        self,
        publish: Callable[[Event], Awaitable[None]],
        gate: PacingGate,
        connected: Callable[[], bool],
        *,
        interval_s: float = 1.0,
        tick_s: float = 0.2,
    ) -> None:
        self._publish, self._gate, self._connected = publish, gate, connected
        self.interval_s, self.tick_s = interval_s, tick_s
        self._tracked: dict[int, _Tracked] = {}
        self._round = asyncio.Lock()
        self.lost_since: datetime | None = None

    def track(self, run: SegmentRun) -> None:
        """Start reporting on ``run``."""
        self._tracked[id(run)] = _Tracked(run, time.monotonic())

    async def finish(self, run: SegmentRun, *, lost: bool = False) -> None:
        """Stop reporting on ``run``; returns once no report of it can follow.

        With ``lost`` (IB was lost and the segment goes back to the queue) this is
        reported first, unless it already was.
        """
        async with self._round:
            tracked = self._tracked.pop(id(run), None)
            last = tracked.last if tracked is not None else None
            if lost and (last is None or last.state is not ProgressReason.IB_DISCONNECTED):
                self.lost_since = self.lost_since or utc_now()
                await self._send(
                    run,
                    observe(run, lost_since=self.lost_since, next_send_in_s=None, now=utc_now()),
                )

    async def run(self, stopping: asyncio.Event) -> None:
        """Report until ``stopping`` is set."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.tick_s)
            async with self._round:
                await self._report_due()

    async def _report_due(self) -> None:
        self.lost_since = None if self._connected() else self.lost_since or utc_now()
        now_wall, now_mono = utc_now(), time.monotonic()
        for tracked in list(self._tracked.values()):
            snapshot = observe(
                tracked.run,
                lost_since=self.lost_since,
                next_send_in_s=self._next_send_in_s(tracked.run, now_mono),
                now=now_wall,
            )
            if due(
                tracked.last,
                snapshot,
                since_last_s=now_mono - tracked.last_at,
                age_s=now_mono - tracked.started,
                interval_s=self.interval_s,
            ):
                tracked.last, tracked.last_at = snapshot, now_mono
                await self._send(tracked.run, snapshot)

    def _next_send_in_s(self, run: SegmentRun, now_mono: float) -> float | None:
        """Return seconds until the gate lets the segment's job send (the gate's clock is
        the monotonic clock)."""
        at = self._gate.next_send_at(run.command.job_id)
        return None if at is None else max(0.0, at - now_mono)

    async def _send(self, run: SegmentRun, snapshot: Snapshot) -> None:
        c = run.command
        event = SegmentProgress(
            job_id=c.job_id,
            segment_id=c.segment_id,
            state=snapshot.state,
            chunks=snapshot.chunks,
            chunks_done=snapshot.chunks_done,
            bars=snapshot.bars,
            ib_requests=snapshot.ib_requests,
            until=snapshot.until,
            since=snapshot.since,
        )
        try:
            await self._publish(event)
        except Exception:  # a report lost to a NATS hiccup must not stop the segment
            log.exception("could not publish segment_progress for %s", c.job_id)
