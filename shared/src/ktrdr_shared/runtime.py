"""The NATS runtime every service shares: connect, serve, drain.

``ServiceApp`` is the lifecycle of one ktrdr process: connect (retrying
forever, unlike nats-py's default of 60 attempts), declare what it needs,
register a ``nats.micro`` service whose endpoints decode requests with the
codec and turn every error into a micro error reply (``Nats-Service-Error-Code``
plus a JSON ``ErrorReply`` body) without crashing, run background tasks such as
pull consumers, and on SIGTERM/SIGINT stop taking work, finish what it holds
and drain the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NoReturn

import msgspec
import nats
import nats.js.errors
from nats import micro
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, EndpointStats, Service, ServiceConfig

from ktrdr_shared import codec, job_log, streams, subjects, tls
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import ConfigError, KtrdrError
from ktrdr_shared.messages.base import Event
from ktrdr_shared.messages.common import ErrorReply
from ktrdr_shared.messages.jobs import JobKind
from ktrdr_shared.nats_errors import ConnectionErrors, first_connect

log = logging.getLogger(__name__)

_error_encoder = msgspec.json.Encoder(enc_hook=str)


async def connect(settings: Settings, *, name: str, **options: Any) -> NATS:
    """Connect to NATS with reconnects that never give up, and errors that say why.

    nats-py stops reconnecting after 60 attempts by default; a ktrdr service
    must outlive any NATS outage, so ``max_reconnect_attempts`` is -1 (also for
    the first connect: a service started before its server waits for it). A
    server that refuses the credentials ends the wait at once. What the server
    reports later (a permissions violation) is logged naming the user and the
    subject, and fails a ``KtrdrClient`` call on that subject at once
    (``ktrdr_shared.nats_errors``).

    Args:
        settings: where NATS is and how to authenticate.
        name: the client name NATS shows for this connection.
        **options: overrides for ``nats.connect`` (tests shorten timeouts); an
            ``error_cb`` given here gets every error instead of the log.

    Raises:
        NatsRefused: the server refused the user (a ``ConfigError``: fix a setting).
        NatsConnectError: the attempts ``options`` allow ran out; it names the
            servers, the user and the last reason.
    """
    auth = auth_options(settings)
    errors = ConnectionErrors(
        name,
        settings.nats_user,
        auth.get("inbox_prefix", "_INBOX"),
        forward=options.pop("error_cb", None),
        creds=settings.nats_creds,
    )

    async def on_disconnected() -> None:
        log.warning("nats %s: disconnected; reconnecting", name)

    async def on_reconnected() -> None:
        log.info("nats %s: reconnected", name)

    params: dict[str, Any] = {
        **auth,
        "servers": list(settings.nats_url),
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
        "connect_timeout": 2,
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        "error_cb": errors.on_error,
        "disconnected_cb": on_disconnected,
        "reconnected_cb": on_reconnected,
    }
    params.update(options)
    nc = NATS()
    await first_connect(nc, errors, params)
    return nc


def auth_options(settings: Settings) -> dict[str, Any]:
    """Return the ``nats.connect`` options for who this process is and how it talks.

    Credentials (a ``.creds`` file or user and password), TLS (a client context
    from ``KTRDR_NATS_TLS_CA|CERT|KEY``, or the system's trust store for a
    ``tls://`` URL with no CA) and, for a named user, the inbox prefix
    ``_INBOX.<user>``: its replies arrive under a prefix that only it may
    subscribe to. Everything that connects to NATS starts from these options.

    Raises:
        ConfigError: a TLS file cannot be loaded; the message names the variable.
    """
    options: dict[str, Any] = {}
    if settings.nats_creds:
        options["user_credentials"] = settings.nats_creds
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password.reveal() if settings.nats_password else ""
        options["inbox_prefix"] = f"_INBOX.{settings.nats_user}"
    if settings.nats_tls_ca or settings.nats_tls_cert:
        settings.check_tls_files()
        try:
            options["tls"] = tls.client_context(
                settings.nats_tls_ca, settings.nats_tls_cert, settings.nats_tls_key
            )
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ConfigError(
                f"KTRDR_NATS_TLS_CA={settings.nats_tls_ca}, KTRDR_NATS_TLS_CERT="
                f"{settings.nats_tls_cert}, KTRDR_NATS_TLS_KEY={settings.nats_tls_key}: "
                f"cannot load them as CA, certificate and key: {e}"
            ) from e
    return options


async def last_job_event(
    js: JetStreamContext, kind: JobKind, job_id: str, event: str
) -> bytes | None:
    """Return the payload of the job's last ``event`` event in the log (None: it has none).

    One direct read of ``ktrdr.evt.job.<kind>.<job_id>.<event>``: how a service learns,
    without folding the log, whether a job was accepted, cancelled or has ended.

    Raises:
        nats.errors.Error: the log could not be read (not: the event is absent).
    """
    subject = subjects.job_event(kind, job_id, event)
    try:
        msg = await js.get_last_msg(streams.EVENTS.name or "", subject)
    except nats.js.errors.NotFoundError:
        return None
    return msg.data or b""


async def publish_event(
    js: JetStreamContext, event: Event, msg_id: str | None = None, *, kind: JobKind | None = None
) -> None:
    """Append an event to the event log, on the subject its family and tag name.

    A job event goes under its job's ``kind``; it may be left out only where the event
    names it itself (``accepted``, the segment events, a result), see
    ``subjects.job_event_kind``. The event goes with a ``Nats-Msg-Id``: ``msg_id``, else a
    job event's own (``job_log.event_msg_id``), so a repeat inside the stream's duplicate
    window is dropped and a service that retries after a crash announces a step once.

    Raises:
        subjects.SubjectError: a job event whose kind is missing or contradicts it.
    """
    msg_id = msg_id or job_log.event_msg_id(event)
    headers = {"Nats-Msg-Id": msg_id} if msg_id else None
    subject = subjects.event_subject(event, kind=kind)
    await js.publish(subject, codec.encode(event), headers=headers)


async def flush_subscriptions(nc: NATS) -> None:
    """Return once the server holds every subscription made so far on ``nc``.

    nats-py's ``flush`` writes its PING straight to the socket, ahead of the commands still
    buffered for its flusher task (the SUBs just made), so one PONG can come back before the
    server has read them: a request from another connection then finds no responders. The
    first round trip lets the flusher write them; the second PING follows them on the wire.
    """
    await nc.flush()
    await nc.flush()


@dataclass(frozen=True)
class RawReply:
    """A reply that is already bytes (e.g. an Arrow IPC stream), with its content type."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class Endpoint:
    """A request/reply endpoint: its micro name, subject, request type and handler."""

    name: str
    subject: str
    request_type: Any
    handler: Callable[[Any], Awaitable[Any]]
    description: str = ""


async def respond_error(request: Request, error: KtrdrError) -> None:
    """Reply with the micro error headers and a JSON ``ErrorReply`` body."""
    body = ErrorReply(code=error.code, message=error.message, details=error.details)
    await request.respond_error(str(error.status), error.message, data=_error_encoder.encode(body))


async def serve_request(endpoint: Endpoint, request: Request) -> KtrdrError | None:
    """Decode, call the handler, reply; every failure becomes an error reply.

    Returns the error replied with (None: the request was answered), for the endpoint's
    error count in ``$SRV.STATS``.
    """
    try:
        message = codec.decode(
            request.data, endpoint.request_type, subject=request.subject, headers=request.headers
        )
        reply = await endpoint.handler(message)
        if isinstance(reply, RawReply):
            await request.respond(reply.data, headers={codec.CONTENT_TYPE: reply.content_type})
        else:
            await request.respond(codec.encode(reply))
    except KtrdrError as e:
        log.info("%s: %s error: %s", endpoint.subject, e.code, e.message)
        await respond_error(request, e)
        return e
    except Exception as e:
        # An unexpected failure is a bug: log it with its traceback, answer
        # 500 with what happened, and keep serving.
        log.exception("%s: unexpected error", endpoint.subject)
        error = KtrdrError(f"internal error in {endpoint.name}: {e!r}")
        await respond_error(request, error)
        return error
    return None


@dataclass
class ErrorTally:
    """The error replies of each endpoint, for ``$SRV.STATS``.

    nats.micro counts an error only when a handler raises; ours answer every failure with
    an error reply instead, so the tally is kept here and added to the stats it reports
    (its ``stats_handler`` sees each endpoint's stats before they are sent).
    """

    counts: dict[str, int] = field(default_factory=dict)
    last: dict[str, str] = field(default_factory=dict)

    def record(self, endpoint: str, error: KtrdrError) -> None:
        """Count one error reply of ``endpoint``."""
        self.counts[endpoint] = self.counts.get(endpoint, 0) + 1
        self.last[endpoint] = f"{error.status} {error.code}: {error.message}"

    def add_to(self, stats: EndpointStats) -> None:
        """Add the tally of ``stats``' endpoint to what nats.micro counted (a ``stats_handler``)."""
        stats.num_errors += self.counts.get(stats.name, 0)
        stats.last_error = self.last.get(stats.name, stats.last_error)


BackgroundTask = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass
class ServiceApp:
    """One ktrdr process: a micro service, its endpoints and its background tasks.

    Attributes:
        name: the micro service name (``ib-connector``, ``data-store``, ...).
        version: semantic version reported by ``$SRV.INFO``.
        description: what the service does.
        settings: the loaded settings (NATS location and credentials).
        setup: called once connected, before serving (declare streams, open stores).
    """

    name: str
    version: str
    description: str
    settings: Settings
    setup: Callable[[NATS, JetStreamContext], Awaitable[None]] | None = None
    endpoints: list[Endpoint] = field(default_factory=list)
    tasks: list[BackgroundTask] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    nc: NATS | None = None
    # Set with ``stopping`` by a task that ends the service for a reason a supervisor should
    # see (the connector's gateway lease taken by another): the process exits with it.
    exit_status: int = 0
    _service: Service | None = None
    _errors: ErrorTally = field(default_factory=ErrorTally)
    _running: list[asyncio.Task[None]] = field(default_factory=list)

    async def prepare(
        self, js: JetStreamContext, *consumers: streams.ConsumerSpec, buckets: bool = False
    ) -> None:
        """Declare this service's streams, ``consumers`` and (``buckets``) KV/object buckets,
        or verify that the admin did, as its settings say (``streams.prepare``)."""
        await streams.prepare(
            js,
            *consumers,
            buckets=buckets,
            declare=self.settings.declares,
            service=self.name,
            wait_s=self.settings.nats_declare_wait_s,
        )

    def endpoint(
        self, name: str, subject: str, request_type: Any, description: str = ""
    ) -> Callable[[Callable[[Any], Awaitable[Any]]], Callable[[Any], Awaitable[Any]]]:
        """Register the decorated coroutine as the handler of ``subject``."""

        def register(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
            self.endpoints.append(Endpoint(name, subject, request_type, handler, description))
            return handler

        return register

    def background(self, task: BackgroundTask) -> BackgroundTask:
        """Register a coroutine that runs until the ``stopping`` event it is given is set."""
        self.tasks.append(task)
        return task

    async def start(self, nc: NATS | None = None) -> None:
        """Connect (unless given a connection), run setup, serve endpoints, start tasks."""
        self.nc = nc or await connect(self.settings, name=self.name)
        js = self.nc.jetstream()
        if self.setup is not None:
            await self.setup(self.nc, js)
        self._service = await micro.add_service(
            self.nc,
            ServiceConfig(
                name=self.name,
                version=self.version,
                description=self.description,
                stats_handler=self._errors.add_to,
            ),
        )
        for ep in self.endpoints:
            await self._service.add_endpoint(
                EndpointConfig(
                    name=ep.name,
                    subject=ep.subject,
                    handler=self._bind(ep),
                    metadata={"description": ep.description} if ep.description else None,
                )
            )
        await flush_subscriptions(self.nc)  # the server has the endpoints before start returns
        self._running = [asyncio.create_task(t(self.stopping)) for t in self.tasks]
        log.info("%s %s serving %d endpoints", self.name, self.version, len(self.endpoints))

    def _bind(self, endpoint: Endpoint) -> Callable[[Request], Awaitable[None]]:
        async def handle(request: Request) -> None:
            error = await serve_request(endpoint, request)
            if error is not None:
                self._errors.record(endpoint.name, error)

        return handle

    async def stop(self) -> None:
        """Stop taking requests, let background tasks finish, drain the connection."""
        self.stopping.set()
        if self._service is not None:
            await self._service.stop()
        if self._running:
            done, pending = await asyncio.wait(self._running, timeout=30)
            for task in pending:
                task.cancel()
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("%s: background task failed", self.name, exc_info=task.exception())
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(nats.errors.Error, asyncio.TimeoutError):
                await self.nc.drain()
        log.info("%s stopped", self.name)

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (or ``stopping`` is set), then stop."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        # The first connect retries forever (NATS may come up later): a SIGTERM meanwhile
        # must still end the process, so starting races the stop request.
        starting = asyncio.create_task(self.start())
        stop_asked = asyncio.create_task(self.stopping.wait())
        await asyncio.wait({starting, stop_asked}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            if self.nc is not None and not self.nc.is_closed:
                await self.nc.close()
            log.info("%s stopped before it finished starting", self.name)
            return
        stop_asked.cancel()
        starting.result()  # a failed start raises here
        try:
            await self.stopping.wait()
        finally:
            await self.stop()


def configure_logging(level: str, service: str) -> None:
    """Log to stderr with the service name on every line."""
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)s {service} %(name)s: %(message)s",
    )


def exit_on_config_error(service: str, error: ConfigError) -> NoReturn:
    """Print ``<service>: configuration error: <message>`` on stderr and exit with status 2."""
    message = error.message.removeprefix(f"{service}: ")
    print(f"{service}: configuration error: {message}", file=sys.stderr)
    raise SystemExit(2) from None


def run_main(service: str, build: Callable[[], ServiceApp]) -> None:
    """Build the service from the environment and run it until SIGTERM (a ``main``).

    A configuration error (in the settings, or JetStream found not as declared at
    start) exits with status 2 and one clear line on stderr, not a traceback.
    """
    try:
        app = build()
        configure_logging(app.settings.log_level, app.name)
        asyncio.run(app.run())
        if app.exit_status:
            raise SystemExit(app.exit_status)
    except ConfigError as e:
        exit_on_config_error(service, e)
