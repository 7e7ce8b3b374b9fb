"""The pacing gate's scheduling parts: the fair order among waiters, and its one timer.

Waiters are kept by priority class (lower first, strictly), then by job, then
by arrival. Within a class the jobs take turns: the job granted least recently
goes first (a job never granted counts as least recent; ties go to the job
whose first waiter came earliest), so a backfill of thousands of chunks and a
tail load of three share IB's budget one request each, not in arrival order.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

W = TypeVar("W", bound=Hashable)
Clock = Callable[[], float]
Sleeper = Callable[[float], Awaitable[None]]

_NEVER = -1  # the grant stamp of a job never granted: it goes before every other


class FairQueue(Generic[W]):
    """Waiters in fair order: priority class, then round-robin by job, then arrival."""

    def __init__(self) -> None:
        self._lanes: dict[int, dict[str, dict[W, int]]] = {}  # class -> job -> waiter -> arrival
        self._places: dict[W, tuple[int, str]] = {}
        self._stamps: dict[str, int] = {}  # job -> number of its latest grant
        self._arrivals = itertools.count()
        self._grants = itertools.count()

    def __len__(self) -> int:
        return len(self._places)

    def __contains__(self, waiter: W) -> bool:
        return waiter in self._places

    def push(self, waiter: W, job: str, priority: int) -> None:
        """Queue ``waiter`` at the back of its job's lane in class ``priority``."""
        self._lanes.setdefault(priority, {}).setdefault(job, {})[waiter] = next(self._arrivals)
        self._places[waiter] = (priority, job)

    def granted(self, waiter: W) -> None:
        """Take ``waiter`` out and make its job the most recently served."""
        _, job = self._places[waiter]
        self._stamps[job] = next(self._grants)
        self.remove(waiter)

    def remove(self, waiter: W) -> None:
        """Take ``waiter`` out without serving its job (it was cancelled)."""
        priority, job = self._places.pop(waiter)
        jobs = self._lanes[priority]
        del jobs[job][waiter]
        if not jobs[job]:
            del jobs[job]
            if not jobs:
                del self._lanes[priority]
            self._forget_stamps()

    def in_order(self) -> list[W]:
        """Return every waiter in the order they would be granted if all could go now."""
        order: list[W] = []
        for priority in sorted(self._lanes):
            jobs = self._lanes[priority]
            turns = sorted(
                jobs,
                key=lambda job: (self._stamps.get(job, _NEVER), next(iter(jobs[job].values()))),
            )
            lanes = [list(jobs[job]) for job in turns]
            for round_ in itertools.zip_longest(*lanes):
                order.extend(w for w in round_ if w is not None)
        return order

    def of_job(self, job: str) -> list[W]:
        """Return ``job``'s waiters, oldest first within each class."""
        return [w for jobs in self._lanes.values() for w in jobs.get(job, {})]

    def _forget_stamps(self) -> None:
        """Drop the stamps that can no longer change anyone's turn.

        A job with nothing waiting whose last grant is older than every waiting
        job's would, if it came back, go first either way: forgetting it is
        safe and keeps the table as small as the set of busy jobs.
        """
        waiting = {job for jobs in self._lanes.values() for job in jobs}
        oldest = min((self._stamps.get(job, _NEVER) for job in waiting), default=None)
        for job in [
            j
            for j, s in self._stamps.items()
            if j not in waiting and (oldest is None or s < oldest)
        ]:
            del self._stamps[job]


class WakeUp:
    """One pending wake-up on an injected clock: arming an earlier one replaces it."""

    def __init__(self, clock: Clock, sleep: Sleeper, callback: Callable[[], None]) -> None:
        self._clock, self._sleep, self._callback = clock, sleep, callback
        self._task: asyncio.Task[None] | None = None
        self.at = math.inf
        self.slept_s = 0.0

    def arm(self, at: float) -> None:
        """Call back at ``at`` unless a wake-up no later is already pending."""
        if at >= self.at:
            return
        self.cancel()
        self.at = at
        self._task = asyncio.get_running_loop().create_task(self._run(at))

    def cancel(self) -> None:
        """Drop the pending wake-up, if any."""
        if self._task is not None:
            self._task.cancel()
        self._task, self.at = None, math.inf

    async def _run(self, at: float) -> None:
        started = self._clock()
        try:
            await self._sleep(max(0.0, at - started))
        finally:
            self.slept_s += self._clock() - started
        self._task, self.at = None, math.inf
        self._callback()


__all__ = ["Clock", "FairQueue", "Sleeper", "WakeUp"]
