"""What NATS tells a connection out of band, turned into errors a person can act on.

nats-py reports two things only through a connection's ``error_cb``: why the
server refused a connect (``Authorization Violation`` arrives there, then
``connect`` raises ``NoServersError`` or keeps retrying), and a permissions
violation for something the connection published or subscribed to (a request
then just times out). ``ConnectionErrors`` is that callback for one
connection: it keeps the reason of the last failed attempt, says when a
refusal makes retrying pointless, logs each violation naming the user and the
subject, and fails the calls waiting on a refused subject at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import weakref
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import nats.errors
from nats.aio.client import Client as NATS

from ktrdr_shared.errors import ConfigError, PermanentError

log = logging.getLogger(__name__)

R = TypeVar("R")
ErrorCallback = Callable[[Exception], Awaitable[None]]

_VIOLATION = re.compile(r'permissions violation for (publish|subscription) to "([^"]*)"', re.I)
# nats-server's answers to CONNECT that no retry changes.
_REFUSALS = ("authorization violation", "authentication expired", "authentication revoked")


class NatsConnectError(nats.errors.Error):
    """The first connection to NATS failed; the message names the servers, the user and why."""


class NatsRefused(NatsConnectError, ConfigError):
    """NATS refused the credentials or the certificate: no retry helps, a setting must change."""


class PermissionDenied(PermanentError):
    """NATS refused this connection's user a publish or a subscription the call needed."""

    code: ClassVar[str] = "permission_denied"
    status: ClassVar[int] = 403


@dataclass(frozen=True)
class Violation:
    """A permissions violation the server reported: what it refused, on which subject."""

    action: str  # "publish" or "subscribe"
    subject: str  # as the server wrote it (nats-server lower-cases it)


def parse_violation(error: BaseException) -> Violation | None:
    """Return the violation ``error`` reports, or None when it reports none."""
    match = _VIOLATION.search(str(error))
    if match is None:
        return None
    return Violation("publish" if match[1].lower() == "publish" else "subscribe", match[2])


def is_refusal(error: BaseException) -> bool:
    """Return True when ``error`` is the server (or its certificate) turning this client away."""
    if isinstance(error, nats.errors.AuthorizationError | ssl.SSLCertVerificationError):
        return True
    text = str(error).lower()
    return any(refusal in text for refusal in _REFUSALS)


def reason_of(error: BaseException) -> str:
    """Return what ``error`` says, without nats-py's ``nats: '...'`` wrapping."""
    return str(error).removeprefix("nats: ").strip("'") or type(error).__name__


class ConnectionErrors:
    """One connection's ``error_cb``: remembers, explains and routes what NATS reports.

    Args:
        name: the connection's client name (the service), for log lines.
        user: the NATS user it connects as (None: none, or the one of a creds file).
        inbox_prefix: where its request replies arrive (``_INBOX.<user>``).
        forward: the caller's own ``error_cb``, given every error unchanged; without
            one, each error is logged.
        creds: the ``.creds`` file it authenticates with, if any.
    """

    def __init__(
        self,
        name: str,
        user: str | None,
        inbox_prefix: str,
        forward: ErrorCallback | None = None,
        creds: str | None = None,
    ) -> None:
        self.name = name
        self.user = user
        self.creds = creds
        self.inbox_prefix = inbox_prefix
        self.forward = forward
        self.last: Exception | None = None
        self.refusal: Exception | None = None  # the first; later attempts may fail otherwise
        self.refused = asyncio.Event()
        self._waiting: dict[object, tuple[str, asyncio.Future[PermissionDenied]]] = {}

    @property
    def who(self) -> str:
        """Return the user in words: ``user 'api'``, ``the user of <creds>`` or ``no user``."""
        if self.user:
            return f"user '{self.user}'"
        return f"the user of {self.creds}" if self.creds else "no user"

    async def on_error(self, error: Exception) -> None:
        """Record, route and log (or forward) one error NATS reported."""
        self.last = error
        if is_refusal(error) and self.refusal is None:
            self.refusal = error
            self.refused.set()
        violation = parse_violation(error)
        if violation is not None:
            self._deny(violation)
        if self.forward is not None:
            await self.forward(error)
        elif violation is not None:
            log.warning("nats %s: %s", self.name, self.denial(violation))
        else:
            log.warning("nats %s (%s): %s", self.name, self.who, error)

    def denial(self, violation: Violation, subject: str | None = None) -> str:
        """Return the sentence for ``violation`` (``subject``: as the caller spelled it)."""
        return (
            f"permission denied: NATS {self.who} may not {violation.action} to "
            f"{subject or violation.subject}"
        )

    @contextlib.contextmanager
    def watching(self, subject: str) -> Iterator[asyncio.Future[PermissionDenied]]:
        """Yield a future that gets the ``PermissionDenied`` of a call on ``subject``.

        It is set when, while inside, the server refuses a publish to ``subject`` or
        a subscription under this connection's reply inbox.
        """
        denied: asyncio.Future[PermissionDenied] = asyncio.get_running_loop().create_future()
        key = object()
        self._waiting[key] = (subject, denied)
        try:
            yield denied
        finally:
            del self._waiting[key]
            denied.cancel()

    def _deny(self, violation: Violation) -> None:
        inbox = self.inbox_prefix.lower() + "."
        for subject, denied in self._waiting.values():
            if denied.done():
                continue
            if violation.action == "publish" and violation.subject == subject.lower():
                message = self.denial(violation, subject)
            elif violation.action == "subscribe" and violation.subject.startswith(inbox):
                message = (
                    f"{self.denial(violation)}, where the replies to {subject} arrive; "
                    f"its permissions must allow subscribing to {self.inbox_prefix}.>"
                )
            else:
                continue
            denied.set_result(
                PermissionDenied(
                    message,
                    details={"user": self.user, "subject": subject, "action": violation.action},
                )
            )

    def connect_error(
        self, servers: Sequence[str], cause: BaseException | None
    ) -> NatsConnectError:
        """Return the error for a first connect that failed with ``cause``."""
        # NoServersError says only that attempts ran out; the reason came through error_cb.
        reason = self.refusal or self.last or cause
        where = f"NATS at {', '.join(servers)}"
        if reason is None:
            return NatsConnectError(f"cannot connect to {where} as {self.who}")
        if not is_refusal(reason):
            return NatsConnectError(f"cannot connect to {where} as {self.who}: {reason_of(reason)}")
        if isinstance(reason, ssl.SSLCertVerificationError):
            fix = "KTRDR_NATS_TLS_CA must be the CA that signed the server's certificate"
        elif self.user or self.creds:
            fix = "check KTRDR_NATS_USER and KTRDR_NATS_PASSWORD[_FILE] (or KTRDR_NATS_CREDS)"
        else:
            fix = (
                "the server requires a user: set KTRDR_NATS_USER and "
                "KTRDR_NATS_PASSWORD_FILE (`just up --secure` prints the admin's)"
            )
        return NatsRefused(
            f"{where} refused a connection with {self.who}: {reason_of(reason)}; {fix}"
        )


_BY_CONNECTION: weakref.WeakKeyDictionary[NATS, ConnectionErrors] = weakref.WeakKeyDictionary()


def errors_of(nc: NATS) -> ConnectionErrors | None:
    """Return the error routing of a connection opened by ``runtime.connect`` (None: another)."""
    return _BY_CONNECTION.get(nc)


async def first_connect(nc: NATS, errors: ConnectionErrors, params: dict[str, Any]) -> None:
    """Connect ``nc``; stop retrying as soon as the server refuses it.

    nats-py retries a refused connect as it retries an unreachable server (forever
    with ``max_reconnect_attempts=-1``); a wrong password never starts to work.

    Raises:
        NatsRefused: the server refused the credentials or its certificate did not verify.
        NatsConnectError: the attempts ran out; the message has the last reason.
    """
    attempt = asyncio.ensure_future(nc.connect(**params))
    refused = asyncio.ensure_future(errors.refused.wait())
    try:
        await asyncio.wait([attempt, refused], return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when the caller is cancelled (a service stopped while it waits)
        refused.cancel()
        failed = await _settle(attempt)
        if failed:
            with contextlib.suppress(Exception):
                await nc.close()
    if failed:
        cause = None if attempt.cancelled() else attempt.exception()
        raise errors.connect_error(list(params["servers"]), cause) from cause
    _BY_CONNECTION[nc] = errors


async def _settle(task: asyncio.Future[Any]) -> bool:
    """Cancel ``task`` unless it is done, wait for it; return True unless it succeeded."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await task
    return task.cancelled() or task.exception() is not None


async def unless_denied(nc: NATS, subject: str, call: Awaitable[R]) -> R:
    """Await ``call`` (a request or publish on ``subject``); fail at once if NATS refuses it.

    Raises:
        PermissionDenied: the server reported a permissions violation for ``subject``
            (or for this connection's reply inbox) while the call was waiting.
    """
    errors = errors_of(nc)
    if errors is None:
        return await call
    with errors.watching(subject) as denied:
        task = asyncio.ensure_future(call)
        either: list[asyncio.Future[Any]] = [task, denied]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed = await _settle(task)
        if failed and denied.done() and not denied.cancelled():
            raise denied.result()
        return task.result()
