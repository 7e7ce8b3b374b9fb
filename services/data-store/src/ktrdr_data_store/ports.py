"""What the load runner talks to, as ports: the event log, the command queue, the connector.

Each port is a small protocol with two adapters: the NATS one the service runs on (JetStream
job events, the ``KTRDR_DATA``/``KTRDR_IB`` work queues, request/reply to the ib-connector)
and an in-memory one, so the runner's orchestration (plan, dispatch, replay after a restart,
duplicate reports, cancel, a full disk, failed segments) is tested in milliseconds
(``tests/test_load_runner.py``); one wiring test per path runs on the real servers
(``tests/test_loads.py``). The store is ``store.BarStore`` (``MemoryBarStore`` in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import KtrdrClient, gather
from ktrdr_shared.errors import KtrdrError, NotFound
from ktrdr_shared.job_log import event_msg_id
from ktrdr_shared.messages import (
    HeadTimestamp,
    HeadTimestampRequest,
    IbStatus,
    JobEvent,
    JobKind,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.runtime import last_job_event, publish_event
from ktrdr_shared.types import WhatToShow, utc_now
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from ktrdr_data_store.jobs import ConnectorFacts

log = logging.getLogger(__name__)

R = TypeVar("R")
LOAD = JobKind.DATA_LOAD  # the only kind of job the data-store runs or publishes events of
LOAD_EVENTS = subjects.job_kind_events(LOAD)

# One entry of the log as the runner follows it: its position, and the event (None where the
# entry is no load event the runner can read: malformed, or on the wrong subject).
Logged = tuple[int, JobEvent | None]


class EventLog(Protocol):
    """The load jobs' events: appended with a message id, read back in order, and looked up."""

    async def publish(self, event: JobEvent, msg_id: str | None = None) -> None:
        """Append ``event`` (a repeat of ``msg_id`` inside the duplicate window is dropped)."""
        ...

    async def last(self, job_id: str, event: str) -> JobEvent | None:
        """Return the job's last event of type ``event`` (``accepted``, ``completed``...)."""
        ...

    async def last_seq(self) -> int | None:
        """Return the position of the last load event now (None: the log holds none)."""
        ...

    def follow(self, stopping: asyncio.Event) -> AsyncIterator[Logged]:
        """Yield every load event from the start of the log, then new ones, until
        ``stopping`` is set."""
        ...


class CommandQueue(Protocol):
    """The work queues: commands sent once per message id (``FetchBars``, ``LoadData``)."""

    async def send(self, subject: str, command: msgspec.Struct, msg_id: str) -> None:
        """Queue ``command`` on ``subject``; a repeat of ``msg_id`` is dropped."""
        ...


class Connector(Protocol):
    """The ib-connector, as the runner asks it: requests, and whether it (and IB) is there."""

    async def request(self, subject: str, request: Any, reply_type: type[R]) -> R:
        """Ask and return the typed answer (the connector's error raised as a ``KtrdrError``)."""
        ...

    async def facts(self, known: ConnectorFacts) -> ConnectorFacts:
        """Return whether a connector answers and has IB (``known`` where there is no news)."""
        ...

    async def count(self) -> int:
        """Return how many ib-connectors serve now (the pool a load is spread across)."""
        ...


# -- NATS -------------------------------------------------------------------------------------


class JetStreamEventLog:
    """``EventLog`` on the ``KTRDR_EVENTS`` stream (``ktrdr.evt.job.data_load.>``)."""

    def __init__(self, nc: NATS) -> None:
        self.js = nc.jetstream()

    async def publish(self, event: JobEvent, msg_id: str | None = None) -> None:
        """Publish on the event's subject under the data-load kind."""
        await publish_event(self.js, event, msg_id=msg_id, kind=LOAD)

    async def last(self, job_id: str, event: str) -> JobEvent | None:
        """Read ``ktrdr.evt.job.data_load.<job>.<event>``'s last message directly."""
        data = await last_job_event(self.js, LOAD, job_id, event)
        if data is None:
            return None
        found: JobEvent = codec.decode(
            data, JobEvent, subject=subjects.job_event(LOAD, job_id, event)
        )
        return found

    async def last_seq(self) -> int | None:
        """Return the stream sequence of the last load-job event."""
        try:
            msg = await self.js.get_last_msg(streams.EVENTS.name or "", LOAD_EVENTS)
        except nats.js.errors.NotFoundError:
            return None
        return int(msg.seq or 0)

    async def follow(self, stopping: asyncio.Event) -> AsyncIterator[Logged]:
        """An ordered consumer from the start of the stream (it resets itself on reconnect)."""
        sub = await self.js.subscribe(
            LOAD_EVENTS,
            stream=streams.EVENTS.name,
            ordered_consumer=True,
            idle_heartbeat=2.0,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        try:
            while not stopping.is_set():
                try:
                    msg: Msg = await sub.next_msg(timeout=1.0)
                except nats.errors.TimeoutError:
                    continue
                except nats.errors.Error as e:  # a reconnect in progress
                    log.warning("job events: %s; retrying", e)
                    await asyncio.sleep(0.5)
                    continue
                yield msg.metadata.sequence.stream, _decoded(msg)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()


def _decoded(msg: Msg) -> JobEvent | None:
    try:
        event: JobEvent = codec.decode(msg.data, JobEvent, subject=msg.subject, headers=msg.headers)
        subjects.job_event_kind(event, subjects.parse_job_event(msg.subject).kind)
    except KtrdrError as e:
        log.warning("skipping a malformed job event: %s", e.message)
        return None
    except subjects.SubjectError as e:  # e.g. a training job's event published by hand
        log.warning("skipping a job event on the wrong subject: %s", e)
        return None
    return event


class JetStreamQueue:
    """``CommandQueue`` on JetStream (the work-queue streams behind the command subjects)."""

    def __init__(self, nc: NATS) -> None:
        self.js = nc.jetstream()

    async def send(self, subject: str, command: msgspec.Struct, msg_id: str) -> None:
        """Publish with ``Nats-Msg-Id`` (the stream drops a repeat)."""
        await self.js.publish(subject, codec.encode(command), headers={"Nats-Msg-Id": msg_id})


class NatsConnector:
    """``Connector`` over request/reply (``ktrdr.ib.*``)."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.client = KtrdrClient(nc, timeout_s=10.0)

    async def request(self, subject: str, request: Any, reply_type: type[R]) -> R:
        """Request through the client (its error mapping)."""
        return await self.client.request(subject, request, reply_type)

    async def facts(self, known: ConnectorFacts) -> ConnectorFacts:
        """Ask ``ktrdr.ib.status``: no responders is no connector, a slow answer no news."""
        try:
            reply = await self.nc.request(subjects.IB_STATUS, b"", timeout=2.0)
            status = codec.decode(reply.data, IbStatus, subject=subjects.IB_STATUS)
        except nats.errors.NoRespondersError:
            return ConnectorFacts(up=False)
        except (nats.errors.Error, KtrdrError):
            return known
        return _status_facts(status, known)

    async def count(self) -> int:
        """Count the ib-connectors answering ``$SRV.PING.ib-connector`` (at least one: a load
        planned while none answers waits for one, and is then fetched whole by it)."""
        try:
            answers = await gather(
                self.nc,
                subjects.micro(subjects.PING, subjects.ANSWERED_BY["ktrdr.ib."]),
                wait_s=1.0,
                stall_s=0.1,
            )
        except nats.errors.Error:
            return 1
        return max(1, len(answers))


def _status_facts(status: IbStatus, known: ConnectorFacts) -> ConnectorFacts:
    if status.connected:
        return ConnectorFacts(up=True, ib_connected=True)
    lost = known.since if known.ib_connected is False else utc_now()
    return ConnectorFacts(up=True, ib_connected=False, since=status.since or lost)


# -- in memory --------------------------------------------------------------------------------


class MemoryEventLog:
    """``EventLog`` in memory: an append-only list; a repeated message id is dropped, as the
    stream's duplicate window does. Several runners may follow it (a restart is a new one)."""

    def __init__(self) -> None:
        self.events: list[JobEvent] = []
        self._ids: set[str] = set()
        self._changed = asyncio.Condition()

    async def publish(self, event: JobEvent, msg_id: str | None = None) -> None:
        """Append ``event`` unless its id was seen: ``msg_id``, else the event's own
        (``job_log.event_msg_id``), as ``runtime.publish_event`` sends it."""
        msg_id = msg_id or event_msg_id(event)
        if msg_id is not None:
            if msg_id in self._ids:
                return
            self._ids.add(msg_id)
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    async def last(self, job_id: str, event: str) -> JobEvent | None:
        """Return the job's last event of that type."""
        found = [e for e in self.events if e.job_id == job_id and event_type(e) == event]
        return found[-1] if found else None

    async def last_seq(self) -> int | None:
        """Return the 1-based position of the last event."""
        return len(self.events) or None

    async def follow(self, stopping: asyncio.Event) -> AsyncIterator[Logged]:
        """Yield from the first event on, waiting for new ones."""
        seen = 0
        while not stopping.is_set():
            async with self._changed:
                if seen == len(self.events):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout=0.5)
                fresh = self.events[seen:]
            for event in fresh:
                seen += 1
                yield seen, event

    async def wait_for(
        self, found: Callable[[JobEvent], bool], timeout_s: float = 10.0
    ) -> JobEvent:
        """Return the first event ``found`` accepts, waiting for it (a test's condition).

        Raises:
            TimeoutError: none came within ``timeout_s`` (a guard, not a synchronisation).
        """
        async with asyncio.timeout(timeout_s), self._changed:
            while True:
                for event in self.events:
                    if found(event):
                        return event
                await self._changed.wait()

    def of(self, job_id: str, kind: type[R]) -> list[R]:
        """Return the job's events of one type, in order."""
        return [e for e in self.events if e.job_id == job_id and isinstance(e, kind)]


@dataclass
class MemoryQueue:
    """``CommandQueue`` in memory: what was sent, once per message id."""

    sent: list[tuple[str, msgspec.Struct]] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)
    repeats: int = 0  # sends the duplicate window dropped

    async def send(self, subject: str, command: msgspec.Struct, msg_id: str) -> None:
        """Record ``command`` unless ``msg_id`` was seen."""
        if msg_id in self.ids:
            self.repeats += 1
            return
        self.ids.add(msg_id)
        self.sent.append((subject, command))

    def of(self, subject: str, kind: type[R]) -> list[R]:
        """Return the commands sent on ``subject``, in order."""
        return [c for s, c in self.sent if s == subject and isinstance(c, kind)]


@dataclass
class MemoryConnector:
    """``Connector`` in memory: a connected ib-connector that knows one instrument, its clock
    and its head timestamp; ``error`` is raised for every request while it is set."""

    server_time: datetime
    instrument: SymbolInfo
    head: datetime
    up: bool = True
    ib_connected: bool = True
    error: KtrdrError | None = None
    asked: list[str] = field(default_factory=list)
    connectors: int = 1  # how many ``count`` says serve

    async def count(self) -> int:
        """Return ``connectors``."""
        return self.connectors

    async def request(self, subject: str, request: Any, reply_type: type[R]) -> R:
        """Answer ``StatusRequest``, ``ValidateSymbol`` and ``HeadTimestampRequest``."""
        self.asked.append(subject)
        if self.error is not None:
            raise self.error
        answer: Any
        if isinstance(request, StatusRequest):
            answer = self._status()
        elif isinstance(request, ValidateSymbol):
            answer = self.instrument
        elif isinstance(request, HeadTimestampRequest):
            answer = HeadTimestamp(
                symbol=request.symbol,
                what_to_show=request.what_to_show or WhatToShow.TRADES,
                head_timestamp=self.head,
            )
        else:
            raise NotFound(f"the memory connector does not answer {subject}")
        if not isinstance(answer, reply_type):
            raise TypeError(f"{subject}: {type(answer).__name__} is no {reply_type.__name__}")
        return answer

    async def facts(self, known: ConnectorFacts) -> ConnectorFacts:
        """Return the connector's state as set."""
        if not self.up:
            return ConnectorFacts(up=False)
        return _status_facts(self._status(), known)

    def _status(self) -> IbStatus:
        return IbStatus(
            connected=self.ib_connected,
            host="memory",
            port=0,
            client_id=0,
            server_time=self.server_time if self.ib_connected else None,
        )
