"""A small typed SDK for users' own services (and for ktrdr's own tests and API).

    client = await KtrdrClient.connect()          # KTRDR_NATS_URL etc.
    job_id = await client.load_data("AAPL", "1h")
    async for event in client.job_events(job_id):  # history first, then live
        print(event)

Requests raise the same ``KtrdrError`` subclasses the service raised, rebuilt
from the micro error reply; "nobody is serving this subject" and "too slow"
become ``NoResponders`` (a ``RetryableError``) and ``NoReply`` (a
``ServiceTimeout``). A request or command the connection's NATS user may not
send fails at once with ``PermissionDenied`` naming the user and the subject
(NATS reports it out of band; without this it would wait for the timeout).

``request_raw`` is the one place a request's failures are named: the typed
``KtrdrClient.request``, the api's gateway and the trainer's store queries all
send through it and only reword what it raises.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import (
    InvalidRequest,
    KtrdrError,
    MessageDecodeError,
    NoReply,
    NoResponders,
    NotFound,
    error_from_code,
)
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
ERROR_HEADER = "Nats-Service-Error"


def new_job_id() -> str:
    """Return a fresh job id: 32 hex characters of a uuid4."""
    return uuid.uuid4().hex


async def request_raw(nc: NATS, subject: str, message: Any, *, timeout_s: float) -> Msg:
    """Send a request (bytes as they are, anything else encoded); return the reply as it came.

    Raises:
        KtrdrError: the subclass the service reported in its error reply (``UnknownSymbol``, ...).
        NoResponders: no service is subscribed to ``subject``.
        NoReply: the service did not answer within ``timeout_s``.
        PermissionDenied: this connection's NATS user may not publish to ``subject``.
    """
    payload = message if isinstance(message, bytes) else codec.encode(message)
    try:
        reply = await unless_denied(nc, subject, nc.request(subject, payload, timeout=timeout_s))
    except nats.errors.NoRespondersError as e:
        raise NoResponders(
            f"no service is answering {subject}; is it running?", details={"subject": subject}
        ) from e
    except TimeoutError as e:  # nats.errors.TimeoutError is one
        raise NoReply(
            f"no reply on {subject} within {timeout_s}s",
            details={"subject": subject, "timeout_s": timeout_s},
        ) from e
    if reply.headers and ERROR_CODE_HEADER in reply.headers:
        raise error_of_reply(subject, reply.data, reply.headers)
    return reply


async def gather(nc: NATS, subject: str, *, wait_s: float, stall_s: float) -> list[bytes]:
    """Send one request that many may answer (``$SRV.PING.<service>``); return every answer.

    Waits at most ``wait_s``, and once an answer has come, no longer than ``stall_s`` for the
    next: every instance answers at once, so a pause means all have.

    Raises:
        nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError: NATS is
            unreachable.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    answers: list[bytes] = []
    sub = await nc.subscribe(nc.new_inbox())
    try:
        await nc.publish(subject, b"", reply=sub.subject)
        while (left := deadline - loop.time()) > 0:
            msg = await sub.next_msg(timeout=min(left, stall_s) if answers else left)
            answers.append(msg.data)
    except nats.errors.TimeoutError:
        pass  # the last answer came in time (or none did)
    finally:
        await sub.unsubscribe()
    return answers


def error_of_reply(subject: str, data: bytes, headers: dict[str, str]) -> KtrdrError:
    """Rebuild the error a service replied with (a body that is no ``ErrorReply``: from the
    micro headers' status and description)."""
    try:
        body = codec.decode(data, ErrorReply, subject=subject)
    except MessageDecodeError:
        status = headers.get(ERROR_CODE_HEADER, "500")
        text = headers.get(ERROR_HEADER, "") or data.decode(errors="replace")
        code = {"400": InvalidRequest.code, "404": NotFound.code}.get(status, KtrdrError.code)
        return error_from_code(code, text)
    return error_from_code(body.code, body.message, body.details)


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
            NoResponders: no service is subscribed to ``subject`` (a ``RetryableError``).
            NoReply: the service did not answer in time (a ``ServiceTimeout``).
            PermissionDenied: this connection's NATS user may not publish to ``subject``.
            MessageDecodeError: the reply is not a ``reply_type``.
        """
        reply = await self.request_raw(subject, message, timeout_s=timeout_s)
        return codec.decode(reply.data, reply_type, subject=subject, headers=reply.headers)

    async def request_raw(
        self, subject: str, message: Any, *, timeout_s: float | None = None
    ) -> Msg:
        """Send a request (bytes as they are); return the reply undecoded (see ``request_raw``)."""
        return await request_raw(self.nc, subject, message, timeout_s=timeout_s or self.timeout_s)

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
        sub = await self.nc.subscribe(subjects.bars_filter(symbol_key, timeframe))
        try:
            async for msg in sub.messages:
                yield codec.decode(msg.data, BarBatch, subject=msg.subject, headers=msg.headers)
        finally:
            await sub.unsubscribe()
