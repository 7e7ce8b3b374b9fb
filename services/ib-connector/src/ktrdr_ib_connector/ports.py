"""What the connector's orchestration talks to, as small protocols (ports).

``handlers.Connector`` (a ``FetchBars`` command -> a segment -> its event) and the
``fetcher`` (retry policy) are written against these; each has a real adapter and an
in-memory one (``memory.py``), so the orchestration is tested in milliseconds and one
wiring test per path runs on the real servers.

==================  =================================  ==============================
port                real adapter                       in-memory adapter
==================  =================================  ==============================
``IbPort``          ``boundary.IbBoundary`` (ib_async)  ``memory.ScriptedIb``
``IbLink``          ``client.IbConnection``             ``memory.MemoryLink``
``EventLog``        ``eventlog.JetStreamLog``           ``memory.EventRecorder``
==================  =================================  ==============================

The command off the work queue is ``ktrdr_shared.consumer.CommandMessage`` (JetStream's
``Msg``; in memory ``ktrdr_shared.testing.queue.MemoryCommand``), shared by every service.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Protocol

from ib_async import Contract
from ktrdr_shared.messages.base import Event

from ktrdr_ib_connector.boundary import DetailsAnswer, HeadAnswer, HistoricalAnswer, Owner
from ktrdr_ib_connector.client import ConnectionOptions, ConnectionState
from ktrdr_ib_connector.pacing import HistoricalRequest


class IbPort(Protocol):
    """IB's data: each call returns a typed answer (``boundary``'s tagged unions)."""

    @property
    def requests_made(self) -> int:
        """Return the data requests sent to IB so far (all kinds)."""
        ...

    async def historical(
        self, contract: Contract, key: HistoricalRequest, owner: Owner
    ) -> HistoricalAnswer:
        """Ask for one chunk of bars, paced; counted on ``owner.tally`` (not ready: it waits
        a while for a connect in progress)."""
        ...

    async def head_timestamp(
        self, contract: Contract, what_to_show: str, use_rth: bool
    ) -> HeadAnswer:
        """Ask for the earliest bar IB has (not ready: ``LinkLost`` at once)."""
        ...

    async def contract_details(self, query: Contract) -> DetailsAnswer:
        """Ask which contracts match ``query`` (not ready: ``LinkLost`` at once)."""
        ...

    async def server_time(self) -> datetime | None:
        """Return IB's clock (None when IB does not answer in time)."""
        ...


class IbLink(Protocol):
    """Whether IB is there: the connection's readiness and what it knows of the gateway."""

    ready: asyncio.Event
    options: ConnectionOptions
    state: ConnectionState

    @property
    def problem(self) -> str:
        """Return why the connection is not ready, in words (empty when it is)."""
        ...

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Wait until the connection is ready; return False on timeout."""
        ...

    def ib_now(self) -> datetime:
        """Return IB's clock now."""
        ...


class EventLog(Protocol):
    """The event log as a load job's segments use it (the data-load kind)."""

    async def append(self, event: Event, msg_id: str | None = None) -> None:
        """Append a job event; a repeated ``msg_id`` inside the dedup window is dropped."""
        ...

    async def append_batch(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Append a bar batch (``headers`` carry its ``Nats-Msg-Id``); returns once stored."""
        ...

    async def has_event(self, job_id: str, event: str) -> bool:
        """Return whether the job has an ``event`` event (e.g. ``cancel_requested``).

        Raises:
            ServiceTimeout: the log could not be read.
        """
        ...
