"""One cancel watcher: which jobs were stopped and why, and the work to stop at once.

A service that runs a job's work (the connector's segments, the trainer's run) keeps
one ``CancelWatcher``. ``follow`` turns the job kind's ``cancel_requested`` events
into ``stop``; ``running`` registers a piece of work under its job for as long as it
runs, so a cancel stops it at once, and work registered for a job already stopped is
stopped as it starts. The memory of stopped jobs is bounded (the oldest go first): a
cancel arriving while no work of its job runs here is still honoured when the job's
command is delivered later.

The watcher decides nothing about what "stop" means: each registration brings its own
callback (cancel a task, set a flag the training loop checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TypeVar

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from ktrdr_shared import codec, subjects
from ktrdr_shared.errors import MessageDecodeError
from ktrdr_shared.messages import CancelRequested, JobKind

log = logging.getLogger(__name__)

K = TypeVar("K")
V = TypeVar("V")

REMEMBERED = 1000  # stopped jobs (and other per-job notes) kept in memory
CANCEL_REQUESTED = "cancel requested"  # the reason of a cancel that gives none

StopWork = Callable[[str], object]  # told the reason; stops one piece of running work


def remember(memory: OrderedDict[K, V], key: K, value: V, limit: int = REMEMBERED) -> None:
    """Keep ``key`` as the newest entry of a bounded memory (the oldest go first)."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > limit:
        memory.popitem(last=False)


def default_reason(event: CancelRequested) -> str:
    """Return the reason a cancel request gives, or ``cancel requested`` when it gives none."""
    return event.reason or CANCEL_REQUESTED


class CancelWatcher:
    """Jobs stopped here (bounded, with reasons) and the work running for each job."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self.remembered = remembered
        self._stopped: OrderedDict[str, str] = OrderedDict()
        self._running: dict[str, list[StopWork]] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._stopped

    def reason(self, job_id: str) -> str | None:
        """Return why the job was stopped (None: not stopped, or long forgotten)."""
        return self._stopped.get(job_id)

    def remember(self, job_id: str, reason: str) -> None:
        """Note that the job must not run on (e.g. the event log says it ended); stop nothing."""
        remember(self._stopped, job_id, reason, self.remembered)

    def stop(self, job_id: str, reason: str) -> None:
        """Remember the job as stopped and stop its running work now."""
        self.remember(job_id, reason)
        for stop in list(self._running.get(job_id, ())):
            stop(reason)

    def running_jobs(self) -> list[str]:
        """Return the jobs with work registered here, oldest registration first."""
        return list(self._running)

    @contextlib.contextmanager
    def running(self, job_id: str, stop: StopWork) -> Iterator[None]:
        """Register ``stop`` for the block's work; a job already stopped is stopped at once."""
        self._running.setdefault(job_id, []).append(stop)
        try:
            known = self._stopped.get(job_id)
            if known is not None:
                stop(known)
            yield
        finally:
            stops = self._running.get(job_id, [])
            stops.remove(stop)
            if not stops:
                self._running.pop(job_id, None)

    def on_request(
        self, data: bytes, subject: str, reason: Callable[[CancelRequested], str] = default_reason
    ) -> None:
        """Stop the job a ``cancel_requested`` payload names (a malformed one is logged)."""
        try:
            event = codec.decode(data, CancelRequested, subject=subject)
        except MessageDecodeError as e:
            log.warning("ignoring a malformed cancel request: %s", e.message)
            return
        self.stop(event.job_id, reason(event))

    async def follow(
        self,
        nc: NATS,
        kind: JobKind,
        stopping: asyncio.Event,
        reason: Callable[[CancelRequested], str] = default_reason,
    ) -> None:
        """Stop ``kind``'s jobs as their cancel requests arrive, until ``stopping`` is set.

        Args:
            nc: the service's NATS client.
            kind: whose cancel requests to follow.
            stopping: set when the service stops.
            reason: what a request means in this service's words (default: its own reason).
        """

        async def on_cancel(msg: Msg) -> None:
            self.on_request(msg.data, msg.subject, reason)

        sub = await nc.subscribe(subjects.cancel_requests(kind), cb=on_cancel)
        try:
            await stopping.wait()
        finally:
            await sub.unsubscribe()
