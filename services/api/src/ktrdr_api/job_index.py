"""Every job's state for the list, held in memory and folded in log order (no NATS here).

Listing jobs used to read the latest event of every (job, event type) out of the event log
and fold them all on every request: a second and more with a thousand jobs. One
``JobIndex`` per gateway process now holds every job's ``JobState`` instead. Its feed
(``event_log.JobFeed``) delivers first the latest event of each (job, event type) subject,
what the list used to fold, and then every event as it is logged; each goes through the
one fold (``jobs.apply``) in stream order. A job listed from the catch-up is the fold of its
latest events per type, as before; the events logged after it are all folded, as
``GET /api/v1/jobs/{id}`` folds them.

The index knows the last stream sequence it has seen, and ``wait_for(seq)`` is how a
request waits until it has caught up with the log as of that request (read-your-writes,
see ``JobFeed.caught_up``). A repeat (a sequence at or below the last one seen, after the
feed resumed) changes nothing. The log forgets events after the stream's ``max_age``; the
index forgets a job once its newest event is that old, so the list never names a job the
log no longer holds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta

from ktrdr_shared.messages import JobEvent, JobKind

from ktrdr_api.jobs import JobState, JobStatus, apply


@dataclass
class _Indexed:
    """A job's folded state and when the log stored its newest event."""

    state: JobState
    stored: datetime


class JobIndex:
    """Every job folded from the events fed in, newest first on request.

    Args:
        retention: how long the log keeps an event (the stream's ``max_age``; None: forever).
    """

    def __init__(self, *, retention: timedelta | None = None) -> None:
        self.retention = retention
        self.seen_seq = 0  # the last stream sequence fed in
        self._jobs: dict[str, _Indexed] = {}  # in order of each job's first event
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def apply(self, seq: int, stored: datetime, event: JobEvent | None) -> bool:
        """Fold the event the log holds at ``seq`` (None: one that does not decode).

        Args:
            seq: its stream sequence.
            stored: when the log stored it.
            event: the event, or None when it does not decode (it still counts as seen).

        Returns:
            False for a repeat (``seq`` already seen), which changes nothing.
        """
        if seq <= self.seen_seq:
            return False
        self.seen_seq = seq
        if event is not None:
            indexed = self._jobs.get(event.job_id)
            if indexed is None:
                indexed = self._jobs[event.job_id] = _Indexed(JobState(job_id=event.job_id), stored)
            apply(indexed.state, event)
            indexed.stored = max(indexed.stored, stored)
        if self._waiters:
            self._wake()
        return True

    def jobs(
        self,
        *,
        now: datetime,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
    ) -> list[JobState]:
        """Return the jobs of ``kind`` and ``status``, newest created first, at most ``limit``.

        Jobs whose newest event the log has dropped by ``now`` are forgotten first.
        """
        self._forget_expired(now)
        found = [
            i.state
            for i in self._jobs.values()
            if (kind is None or i.state.kind == kind.value)
            and (status is None or i.state.status is status)
        ]
        found.sort(key=lambda s: (s.created is not None, s.created), reverse=True)
        return found if limit is None else found[:limit]

    def reset(self) -> None:
        """Forget every job and sequence (the log went back: purged or declared anew)."""
        self._jobs.clear()
        self.seen_seq = 0

    async def wait_for(self, seq: int, timeout_s: float) -> bool:
        """Return True once ``seq`` has been seen, False when ``timeout_s`` passed before."""
        if self.seen_seq >= seq:
            return True
        if timeout_s <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        entry = (seq, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            return self.seen_seq >= seq
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        return True

    def _wake(self) -> None:
        waiting = []
        for seq, waiter in self._waiters:
            if seq > self.seen_seq:
                waiting.append((seq, waiter))
            elif not waiter.done():
                waiter.set_result(None)
        self._waiters = waiting

    def _forget_expired(self, now: datetime) -> None:
        if self.retention is None:
            return
        oldest = now - self.retention
        expired = [job for job, i in self._jobs.items() if i.stored < oldest]
        for job in expired:
            del self._jobs[job]
