"""A small typed SDK for users' own services (and for ktrdr's own tests and API).

    client = await KtrdrClient.connect()          # KTRDR_NATS_URL etc.
    job_id = await client.load_data("AAPL", "1h")
    async for event in client.job_events(job_id):  # history first, then live
        print(event)

Requests raise the same ``KtrdrError`` subclasses the service raised, rebuilt
from the micro error reply; "nobody is serving this subject" and "too slow"
become ``ServiceUnavailable``-style ``RetryableError`` and ``ServiceTimeout``.
A request or command the connection's NATS user may not send fails at once
with ``PermissionDenied`` naming the user and the subject (NATS reports it
out of band; without this it would wait for the timeout).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import RetryableError, ServiceTimeout, error_from_code
from ktrdr_shared.messages import (
    TERMINAL_JOB_EVENTS,
    BarBatch,
    ErrorReply,
    JobEvent,
    LoadData,
    StartTraining,
)
from ktrdr_shared.nats_errors import unless_denied
from ktrdr_shared.runtime import connect

R = TypeVar("R")

ERROR_CODE_HEADER = "Nats-Service-Error-Code"


def new_job_id() -> str:
    """Return a fresh job id: 32 hex characters of a uuid4."""
    return uuid.uuid4().hex


class KtrdrClient:
    """Send commands, make requests and follow events over one NATS connection."""

    def __init__(self, nc: NATS, *, timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.timeout_s = timeout_s

    @classmethod
    async def connect(cls, settings: Settings | None = None, **options: Any) -> KtrdrClient:
        """Connect with ``settings`` (default: from the environment).

        Raises:
            NatsRefused: the server refused the user; the message names server, user, reason.
            NatsConnectError: the attempts ``options`` allow ran out (by default it waits).
        """
        settings = settings or Settings.from_env()
        return cls(await connect(settings, name="ktrdr-client", **options))

    async def close(self) -> None:
        """Drain and close the connection."""
        await self.nc.drain()

    async def request(
        self, subject: str, message: Any, reply_type: type[R], *, timeout_s: float | None = None
    ) -> R:
        """Send a request and decode its reply.

        Raises:
            KtrdrError: the subclass the service reported (``UnknownSymbol``, ...).
            RetryableError: no service is subscribed to ``subject``.
            ServiceTimeout: the service did not answer in time.
            PermissionDenied: this connection's NATS user may not publish to ``subject``.
        """
        timeout = timeout_s or self.timeout_s
        try:
            reply = await unless_denied(
                self.nc, subject, self.nc.request(subject, codec.encode(message), timeout=timeout)
            )
        except nats.errors.NoRespondersError as e:
            raise RetryableError(
                f"no service is answering {subject}; is it running?", details={"subject": subject}
            ) from e
        except nats.errors.TimeoutError as e:
            raise ServiceTimeout(
                f"no reply on {subject} within {timeout}s", details={"subject": subject}
            ) from e
        if reply.headers and ERROR_CODE_HEADER in reply.headers:
            body = codec.decode(reply.data, ErrorReply, subject=subject)
            raise error_from_code(body.code, body.message, body.details)
        return codec.decode(reply.data, reply_type, subject=subject, headers=reply.headers)

    async def send_command(self, subject: str, command: Any) -> str:
        """Publish a command to JetStream with its job id as ``Nats-Msg-Id``.

        A command without ``job_id`` gets a fresh one. Returns the job id; a
        resend with the same id inside the dedup window is dropped by NATS.

        Raises:
            PermissionDenied: this connection's NATS user may not publish to ``subject``.
        """
        if getattr(command, "job_id", None) is None:
            command = msgspec.structs.replace(command, job_id=new_job_id())
        headers = {"Nats-Msg-Id": command.job_id}
        await unless_denied(
            self.nc, subject, self.js.publish(subject, codec.encode(command), headers=headers)
        )
        return str(command.job_id)

    async def load_data(self, symbol: str, timeframe: str, **fields: Any) -> str:
        """Ask the data-store to load bars; return the job id."""
        command = msgspec.convert(
            {"symbol": symbol, "timeframe": timeframe, **fields}, LoadData, from_attributes=False
        )
        return await self.send_command(subjects.CMD_DATA_LOAD, command)

    async def start_training(self, spec: StartTraining) -> str:
        """Ask a trainer to train a model; return the job id."""
        return await self.send_command(subjects.CMD_TRAIN_START, spec)

    async def job_events(self, job_id: str, *, follow: bool = True) -> AsyncIterator[JobEvent]:
        """Yield a job's events from its first, then live until it ends.

        With ``follow=False`` stop once the history is exhausted.
        """
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
        sub = await self.js.subscribe(
            subjects.job_events(job_id),
            stream=streams.EVENTS.name,
            ordered_consumer=True,
            config=config,
        )
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=None if follow else 0.5)
                except nats.errors.TimeoutError:
                    return
                event: JobEvent = codec.decode(
                    msg.data, JobEvent, subject=msg.subject, headers=msg.headers
                )
                yield event
                if isinstance(event, TERMINAL_JOB_EVENTS):
                    return
        finally:
            await sub.unsubscribe()

    async def bar_batches(
        self, symbol_key: str = "*", timeframe: str = "*"
    ) -> AsyncIterator[BarBatch]:
        """Yield bar batches as they are published (a plain, live subscription)."""
        sub = await self.nc.subscribe(f"ktrdr.bars.{symbol_key}.{timeframe}")
        try:
            async for msg in sub.messages:
                yield codec.decode(msg.data, BarBatch, subject=msg.subject, headers=msg.headers)
        finally:
            await sub.unsubscribe()
