"""Read job events out of the ``KTRDR_EVENTS`` stream: a job's history, or live.

History comes through a short-lived ephemeral pull consumer filtered on
``ktrdr.evt.job.*.<id>.>`` (its creation says how many events there are, so the
read stops exactly at the end); live events through an ordered push consumer
that starts right after a given stream sequence, so "history, then live"
neither skips nor repeats an event. An event that does not decode (a
malformed publish, a newer event type) or contradicts the job kind its subject names
is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import nats.errors
import nats.js.errors
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.errors import MessageDecodeError
from ktrdr_shared.messages import JobEvent, JobKind
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from ktrdr_api.errors import ApiError
from ktrdr_api.gateway import nats_unreachable

log = logging.getLogger(__name__)

EVENTS_STREAM = streams.EVENTS.name or "KTRDR_EVENTS"
_FETCH_BATCH = 1000


@dataclass(frozen=True)
class LoggedEvent:
    """A job event, its job's kind (from the subject) and its sequence in the event log (the
    SSE event id)."""

    seq: int
    job_id: str
    kind: JobKind
    event: JobEvent


def decode_event(msg: Msg) -> LoggedEvent | None:
    """Return the logged event of a stream message, or None when it does not decode."""
    try:
        event = codec.decode(msg.data, JobEvent, subject=msg.subject, headers=msg.headers)
        kind = subjects.job_event_kind(event, subjects.parse_job_event(msg.subject).kind)
    except MessageDecodeError as e:
        log.warning("skipping an unreadable job event: %s", e.message)
        return None
    except subjects.SubjectError as e:  # e.g. a data load's event under the training kind
        log.warning("skipping a job event on the wrong subject: %s", e)
        return None
    return LoggedEvent(
        seq=msg.metadata.sequence.stream, job_id=event.job_id, kind=kind, event=event
    )


class EventLog:
    """The job events of the event log, read for one request at a time."""

    def __init__(self, nc: NATS, *, timeout_s: float) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.timeout_s = timeout_s

    async def history(self, job_id: str) -> list[LoggedEvent]:
        """Return every event of ``job_id`` logged so far, oldest first."""
        return await self._read(subjects.job_events(job_id), DeliverPolicy.ALL)

    async def latest_per_subject(self, kind: JobKind | None = None) -> list[LoggedEvent]:
        """Return the latest event of each (job, event type) in the log, in log order.

        With ``kind`` only that kind's jobs are read.
        """
        filter_subject = subjects.JOB_EVENTS_ALL if kind is None else subjects.job_kind_events(kind)
        found = await self._read(filter_subject, DeliverPolicy.LAST_PER_SUBJECT)
        return sorted(found, key=lambda e: e.seq)

    def follow(self, job_id: str, *, after_seq: int = 0) -> Follower:
        """Return a follower of ``job_id``'s events after ``after_seq`` (0: from the first).

        Raises:
            ApiError: 503 while NATS is unreachable.
        """
        if not self.nc.is_connected:
            raise nats_unreachable()
        return Follower(self.js, job_id, after_seq)

    async def _read(self, filter_subject: str, policy: DeliverPolicy) -> list[LoggedEvent]:
        if not self.nc.is_connected:
            raise nats_unreachable()
        config = ConsumerConfig(
            filter_subject=filter_subject,
            deliver_policy=policy,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=1,
        )
        try:
            info = await self.js.add_consumer(EVENTS_STREAM, config, timeout=self.timeout_s)
        except nats.js.errors.NotFoundError as e:
            raise _no_stream() from e
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
            raise _jetstream_timeout(self.timeout_s) from e
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
            raise nats_unreachable() from e
        try:
            return await self._fetch(info.name, info.num_pending or 0)
        finally:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await self.js.delete_consumer(EVENTS_STREAM, info.name)

    async def _fetch(self, consumer: str, pending: int) -> list[LoggedEvent]:
        found: list[LoggedEvent] = []
        if pending == 0:
            return found
        sub = await self.js.pull_subscribe_bind(consumer=consumer, stream=EVENTS_STREAM)
        try:
            received = 0
            while received < pending:
                try:
                    msgs = await sub.fetch(
                        min(pending - received, _FETCH_BATCH), timeout=self.timeout_s
                    )
                except nats.errors.TimeoutError as e:
                    raise _jetstream_timeout(self.timeout_s) from e
                received += len(msgs)
                found.extend(e for e in map(decode_event, msgs) if e is not None)
        finally:
            await sub.unsubscribe()
        return found


class Follower:
    """Live events of one job, from just after a stream sequence (an async context)."""

    def __init__(self, js: JetStreamContext, job_id: str, after_seq: int) -> None:
        self.js = js
        self.job_id = job_id
        self.after_seq = after_seq
        self._sub: Any = None

    async def __aenter__(self) -> Follower:
        if self.after_seq > 0:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.after_seq + 1
            )
        else:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        try:
            self._sub = await self.js.subscribe(
                subjects.job_events(self.job_id),
                stream=EVENTS_STREAM,
                ordered_consumer=True,
                config=config,
            )
        except nats.js.errors.NotFoundError as e:
            raise _no_stream() from e
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
            raise nats_unreachable() from e
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await self._sub.unsubscribe()

    async def next(self, timeout_s: float | None) -> LoggedEvent | None:
        """Return the next readable event, or None when none came within ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            if left == 0.0:
                return None
            try:
                msg = await self._sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                return None
            event = decode_event(msg)
            if event is not None:
                return event


def _no_stream() -> ApiError:
    return ApiError(
        503,
        "stream_missing",
        f"the event log stream {EVENTS_STREAM} does not "
        "exist yet: start any ktrdr service once to declare it",
    )


def _jetstream_timeout(timeout_s: float) -> ApiError:
    return ApiError(
        504,
        "nats_timeout",
        f"JetStream did not answer within {timeout_s:g} s; try again",
        retry_after_s=2.0,
    )
