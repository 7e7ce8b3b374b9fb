"""Request/reply and commands over NATS, with every failure turned into an ``ApiError``.

``Gateway`` is what the controllers get injected: it knows which service owns
a subject, so "nobody answers" becomes 503 "no ib-connector is running",
"too slow" becomes 504 naming it, and a micro error reply (status header plus
a JSON ``ErrorReply``) becomes the fitting 4xx with the service's own message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import nats.errors
import nats.js.errors
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import gather, new_job_id, request_raw
from ktrdr_shared.errors import KtrdrError, MessageDecodeError, NoReply, NoResponders
from ktrdr_shared.messages import JobKind
from ktrdr_shared.messages.base import Event
from ktrdr_shared.nats_errors import PermissionDenied
from ktrdr_shared.runtime import publish_event
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_api.errors import ApiError, from_service, service_timeout, service_unavailable

R = TypeVar("R")

# How to start each service that answers requests (``subjects.answered_by`` names it).
HOW_TO_START: dict[str, str] = {
    "ib-connector": "start it with `python -m ktrdr_ib_connector`",
    "data-store": "start it with `python -m ktrdr_data_store`",
    "trainer": "start it on the GPU host with `python -m ktrdr_trainer`",
}


def service_of(subject: str) -> tuple[str, str]:
    """Return the name of the service that answers ``subject`` and how to start it."""
    service = subjects.answered_by(subject)
    if service is None:
        return ("service", "start the service that serves it")
    return (service, HOW_TO_START.get(service, "start it"))


@dataclass(frozen=True)
class RawAnswer:
    """A reply kept as bytes (an Arrow IPC stream), with its headers."""

    data: bytes
    headers: dict[str, str]


class Gateway:
    """One NATS connection, shared by every request the gateway serves."""

    def __init__(self, nc: NATS, *, timeout_s: float) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.timeout_s = timeout_s

    async def request(
        self, subject: str, message: Any, reply_type: type[R], *, timeout_s: float | None = None
    ) -> R:
        """Send a request and decode its reply.

        Raises:
            ApiError: 503 when nobody answers, 504 when nobody answers in time,
                the mapped status of a service's error reply, 502 for a reply
                that does not decode.
        """
        answer = await self.request_raw(subject, message, timeout_s=timeout_s)
        try:
            return codec.decode(answer.data, reply_type, subject=subject, headers=answer.headers)
        except MessageDecodeError as e:
            service, _ = service_of(subject)
            raise ApiError(
                502,
                "bad_reply",
                f"the {service} answered {subject} with a reply "
                f"this gateway cannot read ({e.message}); are their versions in "
                "step?",
                service=service,
            ) from e

    async def request_raw(
        self, subject: str, message: Any, *, timeout_s: float | None = None
    ) -> RawAnswer:
        """Send a request; return the reply's bytes and headers (error replies raise)."""
        self.require_connection()
        service, hint = service_of(subject)
        timeout = timeout_s or self.timeout_s
        try:
            reply = await request_raw(self.nc, subject, message, timeout_s=timeout)
        except NoResponders as e:
            raise service_unavailable(service, subject, hint) from e
        except NoReply as e:
            raise service_timeout(service, subject, timeout) from e
        except PermissionDenied as e:
            raise ApiError(
                500, e.code, f"{e.message}; the api's NATS user needs that permission"
            ) from e
        except KtrdrError as e:  # the service's own error reply
            raise from_service(service, e.code, e.message, e.details) from e
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.OutboundBufferLimitError,
        ) as e:
            raise nats_unreachable() from e
        return RawAnswer(reply.data, dict(reply.headers or {}))

    async def send_command(self, subject: str, command: Any) -> str:
        """Publish a command to JetStream with its job id as ``Nats-Msg-Id``; return the id."""
        self.require_connection()
        if getattr(command, "job_id", None) is None:
            command = msgspec.structs.replace(command, job_id=new_job_id())
        try:
            await self.js.publish(
                subject,
                codec.encode(command),
                headers={"Nats-Msg-Id": command.job_id},
                timeout=self.timeout_s,
            )
        except (nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError) as e:
            raise ApiError(
                503,
                "stream_missing",
                f"no JetStream stream takes {subject}; start "
                "any ktrdr service once to declare the streams",
            ) from e
        except nats.errors.TimeoutError as e:
            raise ApiError(
                504,
                "nats_timeout",
                f"JetStream did not confirm {subject} within {self.timeout_s:g} s; try again",
            ) from e
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
            raise nats_unreachable() from e
        return str(command.job_id)

    async def publish_event(self, event: Event, *, kind: JobKind | None = None) -> None:
        """Append an event to the event log (e.g. a ``CancelRequested``, under its job's
        ``kind``)."""
        self.require_connection()
        try:
            await publish_event(self.js, event, kind=kind)
        except (nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError) as e:
            raise ApiError(
                504, "nats_timeout", "JetStream did not store the event in time; try again"
            ) from e
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
            raise nats_unreachable() from e

    def require_connection(self) -> None:
        """Fail fast while NATS is unreachable (rather than time out naming a service).

        Raises:
            ApiError: 503 ``nats_unavailable``.
        """
        if not self.nc.is_connected:
            raise nats_unreachable()

    async def ping(self, service: str, *, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """Return a ``$SRV.PING`` answer of one instance of ``service``, or None if none answers."""
        try:
            reply = await self.nc.request(
                subjects.micro(subjects.PING, service), b"", timeout=timeout_s
            )
        except (TimeoutError, nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return None
        try:
            return dict(msgspec.json.decode(reply.data))
        except (msgspec.DecodeError, TypeError, ValueError):
            return None

    async def gather(self, subject: str, *, wait_s: float, stall_s: float) -> list[bytes]:
        """Send one request that many may answer (``$SRV.STATS``); return every answer.

        Waits at most ``wait_s``, and once an answer has come, no longer than ``stall_s``
        for the next: every instance answers at once, so a pause means all have.

        Raises:
            ApiError: 503 while NATS is unreachable.
        """
        self.require_connection()
        try:
            return await gather(self.nc, subject, wait_s=wait_s, stall_s=stall_s)
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError) as e:
            raise nats_unreachable() from e


def nats_unreachable() -> ApiError:
    """Return the 503 of a gateway that has lost its NATS connection."""
    return ApiError(
        503,
        "nats_unavailable",
        "the gateway is not connected to NATS right now; "
        "it reconnects on its own: try again shortly",
        retry_after_s=2.0,
    )
