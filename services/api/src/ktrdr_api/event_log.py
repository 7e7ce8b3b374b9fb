"""Read job events out of the ``KTRDR_EVENTS`` stream: a job's history, or live; every job.

History comes through a short-lived ephemeral pull consumer filtered on
``ktrdr.evt.job.*.<id>.>`` (its creation says how many events there are, so the
read stops exactly at the end); live events through an ordered push consumer
that starts right after a given stream sequence, so "history, then live"
neither skips nor repeats an event. An event that does not decode (a
malformed publish, a newer event type) or contradicts the job kind its subject names
is skipped with a warning.

The job list comes from the process's ``JobFeed``: one ordered push consumer over
``ktrdr.evt.job.>``, started by the first list request, that folds the latest event of
every (job, event type) and then every new event into a ``job_index.JobIndex``. Each list
request first reads the sequence of the last job event in the stream (one direct read) and
waits until the index has seen it, so it answers with every job logged before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
from ktrdr_api.job_index import JobIndex
from ktrdr_api.jobs import JobState, JobStatus

log = logging.getLogger(__name__)

EVENTS_STREAM = streams.EVENTS.name or "KTRDR_EVENTS"
_FETCH_BATCH = 1000
_RETENTION = timedelta(seconds=streams.EVENTS.max_age) if streams.EVENTS.max_age else None
_HEARTBEAT_S = 2.0  # the job feed's idle heartbeat: nats-py recreates it after two missed
_STALL_S = 1.0  # a job feed that delivers nothing this long while behind the log is rebuilt
_NO_MESSAGE_FOUND = 10037  # JetStream's error code: the stream has no message on the subject


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
        self.feed = JobFeed(nc, timeout_s=timeout_s)

    async def history(self, job_id: str) -> list[LoggedEvent]:
        """Return every event of ``job_id`` logged so far, oldest first."""
        return await self._read(subjects.job_events(job_id), DeliverPolicy.ALL)

    async def list_jobs(
        self,
        *,
        kind: JobKind | None = None,
        status: JobStatus | None = None,
        limit: int | None = None,
    ) -> list[JobState]:
        """Return the jobs of ``kind`` and ``status`` in the log, newest created first.

        Raises:
            ApiError: 503 while NATS is unreachable or without the stream, 504 when the
                job index did not catch up with the log in time.
        """
        await self.feed.caught_up()
        return self.feed.index.jobs(now=datetime.now(UTC), kind=kind, status=status, limit=limit)

    async def close(self) -> None:
        """Stop the job feed (the connection drains the rest)."""
        await self.feed.close()

    def follow(self, job_id: str, *, after_seq: int = 0) -> Follower:
        """Return a follower of ``job_id``'s events after ``after_seq`` (0: from the first).

        Raises:
            ApiError: 503 while NATS is unreachable.
        """
        if not self.nc.is_connected:
            raise nats_unreachable()
        return Follower(self.js, job_id, after_seq)

    async def _read(self, filter_subject: str, policy: DeliverPolicy) -> list[LoggedEvent]:
        config = ConsumerConfig(
            filter_subject=filter_subject,
            deliver_policy=policy,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=1,
        )
        with _jetstream_errors(self.nc, self.timeout_s):
            info = await self.js.add_consumer(EVENTS_STREAM, config, timeout=self.timeout_s)
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


class JobFeed:
    """Every job event of the log, folded into a ``JobIndex`` as it is logged.

    One per gateway process, started by the first list request (the gateway holds no job
    state until someone lists jobs, as the overview's poller starts with its first
    watcher). Its ordered push consumer delivers the latest event of each (job, event type)
    subject, then every new one. nats-py resubscribes it after a reconnect and recreates it
    when heartbeats stop; a list request that finds it silent while behind the log rebuilds
    it from the last sequence seen, and one that finds the log behind the index (purged,
    declared anew, every job event expired) rebuilds the index from the start.
    """

    def __init__(self, nc: NATS, *, timeout_s: float) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout_s)
        self.timeout_s = timeout_s
        self.index = JobIndex(retention=_RETENTION)
        self.generation = 0  # counts (re)starts: a stale subscription's messages are dropped
        self._sub: Any = None
        self._lock = asyncio.Lock()

    async def caught_up(self) -> None:
        """Return once the index holds every job event logged before this call.

        Raises:
            ApiError: 503 while NATS is unreachable or without the stream, 504 when the
                index did not reach the log's last job event within the request timeout.
        """
        if self._sub is None:
            await self._start()
        seen, generation = self.index.seen_seq, self.generation  # before: more may come
        last = await self._last_seq()
        if last < seen:  # the log went back: purged, declared anew, every job event expired
            await self._restart(generation, anew=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while True:
            seen, generation = self.index.seen_seq, self.generation
            left = deadline - loop.time()
            if await self.index.wait_for(last, min(_STALL_S, left)):
                return
            if loop.time() >= deadline:
                raise _index_behind(self.timeout_s, self.index.seen_seq, last)
            if self.index.seen_seq == seen:  # silent while behind: the consumer is lost
                log.warning(
                    "job index: no event for %g s at %d of %d; resubscribing", _STALL_S, seen, last
                )
                await self._restart(generation)

    async def close(self) -> None:
        """Unsubscribe (a later list request starts the feed again)."""
        async with self._lock:
            await self._unsubscribe()

    async def _start(self) -> None:
        async with self._lock:
            if self._sub is None:  # not started, or closed: from the last sequence seen
                await self._subscribe()

    async def _restart(self, generation: int, *, anew: bool = False) -> None:
        """Subscribe again after the last sequence seen (``anew``: from an empty index)."""
        async with self._lock:
            if generation != self.generation:
                return  # another request restarted it meanwhile
            await self._unsubscribe()
            if anew:
                self.index.reset()
            await self._subscribe()

    async def _subscribe(self) -> None:
        """Take the latest event of each subject, then live ones; resume after a sequence."""
        self.generation += 1
        seen = self.index.seen_seq
        if seen == 0:
            config = ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
        else:
            config = ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seen + 1
            )
        with _jetstream_errors(self.nc, self.timeout_s):
            self._sub = await self.js.subscribe(
                subjects.JOB_EVENTS_ALL,
                stream=EVENTS_STREAM,
                cb=functools.partial(self._take, self.generation),
                ordered_consumer=True,
                idle_heartbeat=_HEARTBEAT_S,
                config=config,
            )

    async def _take(self, generation: int, msg: Msg) -> None:
        if generation != self.generation:
            return
        logged = decode_event(msg)
        meta = msg.metadata
        self.index.apply(
            meta.sequence.stream, meta.timestamp, None if logged is None else logged.event
        )

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await sub.unsubscribe()

    async def _last_seq(self) -> int:
        """Return the stream sequence of the last job event in the log (0: none)."""
        with _jetstream_errors(self.nc, self.timeout_s):
            try:
                msg = await self.js.get_last_msg(EVENTS_STREAM, subjects.JOB_EVENTS_ALL)
            except nats.js.errors.NotFoundError as e:
                if e.err_code == _NO_MESSAGE_FOUND:
                    return 0
                raise
        return msg.seq or 0


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


@contextlib.contextmanager
def _jetstream_errors(nc: NATS, timeout_s: float) -> Iterator[None]:
    """Turn what JetStream raises into the API's 503 and 504."""
    if not nc.is_connected:
        raise nats_unreachable()
    try:
        yield
    except nats.js.errors.NotFoundError as e:
        raise _no_stream() from e
    except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as e:
        raise _jetstream_timeout(timeout_s) from e
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
        raise nats_unreachable() from e


def _index_behind(timeout_s: float, seen: int, last: int) -> ApiError:
    return ApiError(
        504,
        "nats_timeout",
        f"the gateway's job index did not catch up with the event log within {timeout_s:g} s "
        f"(it has read up to sequence {seen} of {last}); try again",
        retry_after_s=2.0,
    )


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
