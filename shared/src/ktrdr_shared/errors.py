"""One small error hierarchy: retryable (nak with a delay) or permanent (terminate).

Every error carries a stable ``code`` string that travels in replies and
events, an HTTP-like ``status`` for NATS micro error headers and the REST
gateway, and ``details`` naming the input that caused it.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KtrdrError(Exception):
    """Base of every error ktrdr raises on purpose.

    Attributes:
        code: stable machine-readable code (``invalid_request``, ``not_found``, ...).
        status: the HTTP-style status used in ``Nats-Service-Error-Code`` and REST.
        retryable: whether trying again later can succeed.
        message: what went wrong and, where possible, what to do.
        details: the inputs that caused it (field, value, subject, ...).
    """

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class RetryableError(KtrdrError):
    """A failure that may pass on its own: nak the message with a delay and try again."""

    code: ClassVar[str] = "unavailable"
    status: ClassVar[int] = 503
    retryable: ClassVar[bool] = True

    def __init__(
        self, message: str, *, delay_s: float = 5.0, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.delay_s = delay_s


class PermanentError(KtrdrError):
    """A failure that repeats however often it is tried: terminate and report it."""

    code: ClassVar[str] = "failed"
    status: ClassVar[int] = 422


class InvalidRequest(PermanentError):
    """The request or message is malformed or breaks a constraint."""

    code: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400


class MessageDecodeError(InvalidRequest):
    """A payload that does not decode into the message its subject expects.

    Attributes:
        subject: the subject it arrived on ("" when unknown).
        field: the dotted path of the offending field, or None for a payload
            that is not even well-formed JSON/msgpack.
        problem: msgspec's description of what is wrong.
    """

    def __init__(self, *, subject: str, field: str | None, problem: str, expected: str) -> None:
        where = f"field '{field}': " if field else ""
        on = f" on '{subject}'" if subject else ""
        super().__init__(
            f"invalid {expected}{on}: {where}{problem}",
            details={"subject": subject, "field": field, "problem": problem, "expected": expected},
        )
        self.subject = subject
        self.field = field
        self.problem = problem


class NotFound(PermanentError):
    """A job, model, dataset or route that does not exist."""

    code: ClassVar[str] = "not_found"
    status: ClassVar[int] = 404


class UnknownSymbol(PermanentError):
    """IB has no contract for the symbol (IB error 200)."""

    code: ClassVar[str] = "unknown_symbol"
    status: ClassVar[int] = 404


class DatasetDamaged(PermanentError):
    """A stored file of one dataset cannot be read (a truncated year file, a garbled ledger).

    Only that dataset is affected; the message names the file, the problem and what to do.
    409: the request is fine, the dataset's state is what stands in the way, and asking again
    cannot help until someone moves the file aside.
    """

    code: ClassVar[str] = "dataset_damaged"
    status: ClassVar[int] = 409


class StorageFull(RetryableError):
    """The data directory's file system has no space left (ENOSPC, EDQUOT).

    Nothing is half-written (every file is replaced atomically); the message names the data
    directory. Bars stay on the bus and loads wait, both going on once space returns.
    """

    code: ClassVar[str] = "storage_full"
    status: ClassVar[int] = 507


class IbUnavailable(RetryableError):
    """The IB connection is down or not yet ready."""

    code: ClassVar[str] = "ib_unavailable"
    status: ClassVar[int] = 503


class PacingViolation(RetryableError):
    """IB refused a request for pacing (162 "pacing violation")."""

    code: ClassVar[str] = "pacing"
    status: ClassVar[int] = 429


class ServiceTimeout(RetryableError):
    """A service did not answer in time."""

    code: ClassVar[str] = "timeout"
    status: ClassVar[int] = 504


class NoResponders(RetryableError):
    """Nobody is subscribed to the subject a request went to: no such service is running.

    Raised by the requester itself, never rebuilt from a reply, so a caller can tell it
    from a service that answered ``unavailable``.
    """


class NoReply(ServiceTimeout):
    """A request got no answer in time (raised by the requester, never rebuilt from a reply,
    so a caller can tell it from a service that answered ``timeout`` of its own)."""


class ConfigError(KtrdrError):
    """A setting is unknown, malformed or missing; the process cannot start."""

    code: ClassVar[str] = "config"
    status: ClassVar[int] = 500


_BY_CODE: dict[str, type[KtrdrError]] = {
    cls.code: cls
    for cls in (
        KtrdrError,
        RetryableError,
        PermanentError,
        InvalidRequest,
        NotFound,
        UnknownSymbol,
        DatasetDamaged,
        StorageFull,
        IbUnavailable,
        PacingViolation,
        ServiceTimeout,
        ConfigError,
    )
}


def error_from_code(code: str, message: str, details: dict[str, Any] | None = None) -> KtrdrError:
    """Rebuild the error a service reported, from its wire code.

    Unknown codes (from a newer service) become a plain ``KtrdrError`` that
    keeps the code, so nothing is lost.
    """
    cls = _BY_CODE.get(code, KtrdrError)
    err = cls(message, details=details)
    if cls is KtrdrError and code != KtrdrError.code:
        err.code = code  # type: ignore[misc]
    return err
