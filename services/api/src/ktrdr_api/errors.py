"""Every failure the gateway answers, mapped to HTTP in one place.

Bodies are RFC 9457 problem details (``application/problem+json``) that say
what was wrong and what to do. Validation errors name the field (and the
allowed values of an enum); a service's own error code becomes the fitting
4xx; "nobody is serving this subject" is 503 naming the service, "too slow"
is 504 naming it; an unexpected failure is logged with its traceback and
still answers problem+json.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import types
import typing
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
from ktrdr_shared.codec import explain_naive, split_validation
from ktrdr_shared.errors import KtrdrError
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

# A service's error code (the body of a micro error reply) -> HTTP status.
STATUS_BY_CODE: dict[str, int] = {
    "invalid_request": 400,
    "not_found": 404,
    "unknown_symbol": 404,
    "dataset_damaged": 409,  # a stored file is unreadable: the detail names it and what to do
    "failed": 422,
    "pacing": 429,
    "ib_unavailable": 503,
    "unavailable": 503,
    "timeout": 504,
    "storage_full": 507,  # the data directory's disk is full: the detail names it
}
UPSTREAM_FAILURE = 502  # a service's own unexpected failure ("internal", or a code we don't know)


class FieldError(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One invalid input: where it was and what was wrong with it."""

    field: str
    source: str
    message: str
    allowed: list[str] | None = None


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem: what was wrong (``detail``) and what to do (``hint``, where the
    service said it apart, e.g. the command that loads a dataset never loaded)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    hint: str | None = None
    instance: str | None = None
    service: str | None = None
    errors: list[FieldError] | None = None
    retry_after_s: float | None = None


class ApiError(Exception):
    """A failure the gateway reports on purpose.

    Attributes:
        status: the HTTP status.
        code: a stable machine-readable code (the service's own where it came from one).
        detail: what was wrong and what to do.
        service: the service the failure came from, if any.
        errors: the invalid inputs, for a validation failure.
        retry_after_s: when trying again makes sense (sent as ``Retry-After``).
        hint: what to do, where it is said apart from the detail.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        service: str | None = None,
        errors: list[FieldError] | None = None,
        retry_after_s: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.hint = hint
        self.service = service
        self.errors = errors
        self.retry_after_s = retry_after_s


def invalid(field: str, source: str, message: str, allowed: list[str] | None = None) -> ApiError:
    """Return a 400 naming one invalid field."""
    return ApiError(
        400,
        "invalid_request",
        f"{source} field '{field}': {message}",
        errors=[FieldError(field=field, source=source, message=message, allowed=allowed)],
    )


def not_found(detail: str) -> ApiError:
    """Return a 404 for a job, model or dataset that does not exist."""
    return ApiError(404, "not_found", detail)


def service_unavailable(service: str, subject: str, hint: str) -> ApiError:
    """Return a 503: nobody serves ``subject``."""
    return ApiError(
        503,
        "service_unavailable",
        f"no {service} is running (nobody answers {subject}); {hint}",
        service=service,
        retry_after_s=5.0,
    )


def service_timeout(service: str, subject: str, timeout_s: float) -> ApiError:
    """Return a 504: the service did not answer in time."""
    return ApiError(
        504,
        "service_timeout",
        f"the {service} did not answer {subject} within {timeout_s:g} s; it may be "
        "busy or stuck: try again, and check its log if it persists",
        service=service,
        retry_after_s=5.0,
    )


def from_service(
    service: str, code: str, message: str, details: dict[str, Any] | None = None
) -> ApiError:
    """Return the HTTP form of a service's own error reply.

    A service's message says what was wrong and what to do; where ``details["hint"]`` repeats
    the second part on its own, the problem answers it as ``hint`` and the detail without it.
    """
    status = STATUS_BY_CODE.get(code, UPSTREAM_FAILURE)
    hint = (details or {}).get("hint")
    hint = hint if isinstance(hint, str) and hint else None
    if hint is not None:
        message = message.removesuffix(f"; {hint}")
    if status == UPSTREAM_FAILURE:
        message = f"the {service} failed ({code}): {message}; see its log"
    retry = 5.0 if status in (429, 503, 504) else None
    return ApiError(status, code, message, service=service, retry_after_s=retry, hint=hint)


def problem_response(request: Request[Any, Any, Any], error: ApiError) -> Response[Problem]:
    """Return ``error`` as an ``application/problem+json`` response."""
    problem = Problem(
        type=f"urn:ktrdr:problem:{error.code}",
        title=_title(error.status),
        status=error.status,
        detail=error.detail,
        code=error.code,
        hint=error.hint,
        instance=request.url.path,
        service=error.service,
        errors=error.errors,
        retry_after_s=error.retry_after_s,
    )
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_s)))
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ktrdr"'
    return Response(problem, status_code=error.status, media_type=PROBLEM_JSON, headers=headers)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ---------------------------------------------------------------- exception handlers


def handle_api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Problem]:
    """Answer an ``ApiError`` as it is."""
    return problem_response(request, exc)


def handle_ktrdr_error(request: Request[Any, Any, Any], exc: KtrdrError) -> Response[Problem]:
    """Answer a ``KtrdrError`` raised inside the gateway by its own status and code."""
    status = exc.status if 400 <= exc.status < 600 else 500
    return problem_response(request, ApiError(status, exc.code, exc.message))


def _never_fails(
    handler: Callable[[Request[Any, Any, Any], Any], Response[Problem]],
) -> Callable[[Request[Any, Any, Any], Any], Response[Problem]]:
    """Fall back to a plain problem if describing the error itself fails (never a text 500)."""

    @functools.wraps(handler)
    def safe(request: Request[Any, Any, Any], exc: Any) -> Response[Problem]:
        try:
            return handler(request, exc)
        except Exception:
            log.exception("describing %r failed", exc)
            status = getattr(exc, "status_code", 500)
            code = "invalid_request" if status < 500 else "internal"
            return problem_response(request, ApiError(status, code, _clean(str(exc))))

    return safe


@_never_fails
def handle_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Problem]:
    """Answer Litestar's validation failures naming each field and its allowed values."""
    errors = [_field_error(request, item) for item in (exc.extra or []) if isinstance(item, dict)]
    missing = _MISSING.search(exc.detail or "")
    if not errors and missing:
        source, name = missing.group(1), missing.group(2)
        errors = [FieldError(field=name, source=source, message="missing; this field is required")]
    if errors:
        detail = "; ".join(f"{e.source} field '{e.field}': {e.message}" for e in errors)
    else:
        detail = _clean(exc.detail)
    return problem_response(
        request, ApiError(400, "invalid_request", detail, errors=errors or None)
    )


@_never_fails
def handle_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Answer Litestar's own HTTP errors (unknown route, wrong method, ...) as problems."""
    status = exc.status_code
    detail = _clean(exc.detail)
    if status == 404:
        detail = f"no route {request.method} {request.url.path}; see /schema for the routes"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}; see /schema"
    code = {
        404: "not_found",
        405: "method_not_allowed",
        415: "unsupported_media_type",
        413: "too_large",
    }.get(status, "invalid_request" if status < 500 else "internal")
    response = problem_response(request, ApiError(status, code, detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """Log an unexpected failure with its traceback and answer a 500 problem that says so."""
    log.error("%s %s: unexpected error", request.method, request.url.path, exc_info=exc)
    return problem_response(
        request,
        ApiError(
            500,
            "internal",
            f"unexpected error in the gateway ({type(exc).__name__}: {exc}); "
            "this is a bug: please report it with the gateway's log",
        ),
    )


def handle_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Problem]:
    """Answer JSON nested deeper than Python decodes as a 400, not a 500."""
    return problem_response(
        request,
        ApiError(
            400,
            "invalid_request",
            "the body is nested too deeply to decode; send the documented shape",
        ),
    )


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    ApiError: handle_api_error,
    RecursionError: handle_too_deep,
    KtrdrError: handle_ktrdr_error,
    ValidationException: handle_validation,
    HTTPException: handle_http_error,
    Exception: handle_unexpected,
}


def describe_decode_error(request: Request[Any, Any, Any], message: str) -> ApiError:
    """Return the 400 of a body that failed strict decoding (msgspec's message names the path)."""
    error = _field_error(request, {"message": message, "key": "data", "source": "body"})
    return ApiError(
        400, "invalid_request", f"body field '{error.field}': {error.message}", errors=[error]
    )


# ---------------------------------------------------------------- field names and allowed values


def _received_body(request: Request[Any, Any, Any]) -> bytes:
    """Return the body Litestar has already read (b"" when it has not).

    The exception handlers are synchronous, so ``await request.body()`` is out of reach; the
    bytes Litestar cached in its connection state are read instead (only to quote a rejected
    value back, so anything unexpected there just leaves the value out).
    """
    try:
        from litestar.utils.scope.state import ScopeState

        body = ScopeState.from_scope(request.scope).body
    except (ImportError, AttributeError, KeyError, TypeError):
        return b""
    return body if isinstance(body, bytes) else b""


_NAMED_FIELD = re.compile(r"field `([^`]+)`")  # "Object missing required field `symbol`"
NO_BODY = "missing; this route takes a JSON body (see /schema)"
_MISSING = re.compile(r"Missing required (\w+) parameter '([^']+)'")


def _field_error(request: Request[Any, Any, Any], item: dict[str, Any]) -> FieldError:
    """Turn one Litestar validation item into a field error with the field's real name."""
    key = str(item.get("key") or "")
    raw_source = item.get("source") or "request"
    source = str(getattr(raw_source, "value", raw_source))
    raw = str(item.get("message", "invalid value"))
    if source == "body" and key == "data" and raw == repr("data"):  # no body was sent at all
        return FieldError(field="body", source=source, message=NO_BODY)
    if source == "body":  # a naive timestamp: name its value and the fix
        at = "" if key in ("", "data") or " - at `$" in raw else f" - at `$.{key}`"
        raw = explain_naive(raw + at, _received_body(request)).removesuffix(at)
    problem, path = split_validation(raw)
    message = _clean(problem)
    if path:  # a nested field: msgspec's path says where
        key = f"{key}.{path}" if key and key != "data" else path
    if key in ("", "data"):  # a whole-body error: the field is named inside the message
        named = _NAMED_FIELD.search(raw)
        key = named.group(1) if named else "body"
    allowed = _allowed_values(request, key, source) if "nvalid enum" in message else None
    if allowed:
        message = f"{message}; use one of {' '.join(allowed)}"
    return FieldError(field=key, source=source, message=message, allowed=allowed)


def _allowed_values(request: Request[Any, Any, Any], key: str, source: str) -> list[str] | None:
    """Return the values of the enum behind ``key`` in this route's signature, if any."""
    try:
        hints = typing.get_type_hints(request.route_handler.fn, include_extras=True)
    except Exception:  # a signature we cannot introspect: answer without the values
        return None
    path = key.split(".")
    hint = hints.get("data") if source == "body" else hints.get(path.pop(0))
    for part in path:
        hint = _field_hint(hint, re.sub(r"\[\d+\]$", "", part))
    return _enum_values(hint)


def _field_hint(hint: Any, name: str) -> Any:
    """Return the type of field ``name`` of the struct(s) inside ``hint``."""
    for candidate in _members(hint):
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            field_hint = typing.get_type_hints(candidate, include_extras=True).get(name)
            if field_hint is not None:
                return field_hint
    return None


def _members(hint: Any) -> list[Any]:
    """Return ``hint`` unwrapped from Annotated, Optional and unions."""
    if typing.get_origin(hint) is typing.Annotated:
        return _members(typing.get_args(hint)[0])
    args = typing.get_args(hint)
    if args and typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [m for a in args for m in _members(a)]
    return [hint]


def _enum_values(hint: Any) -> list[str] | None:
    for candidate in _members(hint):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return [str(member.value) for member in candidate]
    return None


def _clean(text: str) -> str:
    return text.replace("`", "'")


# ---------------------------------------------------------------- OpenAPI

_DESCRIPTIONS = {
    400: "Invalid request: the problem names the field and, for an enum, the allowed values.",
    401: "Missing or wrong API key (X-API-Key or Authorization: Bearer).",
    404: "Not found: the job, model, dataset or symbol does not exist.",
    409: "Conflict: the job has already ended.",
    422: "The service refused the request for good (it would fail however often it is tried).",
    429: "IB refused for pacing; retry after Retry-After seconds.",
    502: "The service answered with an unexpected failure of its own (see its log).",
    503: "No instance of the service is running (the problem names it), or IB is disconnected.",
    504: "The service did not answer in time (the problem names it).",
}
_EXAMPLES = {
    400: ApiError(400, "invalid_request", "body field 'timeframe': Invalid enum value '2h'; use "
                  "one of 1s 5s 15s 30s 1m 5m 15m 30m 1h 4h 1d 1w"),
    401: ApiError(401, "unauthorized", "this route requires the API key: send X-API-Key"),
    404: ApiError(404, "not_found", "no job 0123456789abcdef0123456789abcdef: it has no events"),
    409: ApiError(409, "conflict", "job 0123456789abcdef0123456789abcdef already completed"),
    422: ApiError(422, "failed", "the request cannot succeed as given"),
    429: ApiError(429, "pacing", "IB pacing violation; try again later", service="ib-connector"),
    502: ApiError(502, "internal", "the data-store failed (internal): ...; see its log",
                  service="data-store"),
    503: ApiError(503, "service_unavailable", "no ib-connector is running (nobody answers "
                  "ktrdr.ib.status); start it with `python -m ktrdr_ib_connector`",
                  service="ib-connector"),
    504: ApiError(504, "service_timeout", "the ib-connector did not answer ktrdr.ib.validate "
                  "within 5 s; it may be busy or stuck: try again", service="ib-connector"),
}  # fmt: skip


def problem_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """Return the OpenAPI documentation of the given error statuses (with examples)."""
    specs = {}
    for status in statuses:
        e = _EXAMPLES[status]
        example = {
            "type": f"urn:ktrdr:problem:{e.code}",
            "title": _title(status),
            "status": status,
            "detail": e.detail,
            "code": e.code,
        }
        if e.service:
            example["service"] = e.service
        specs[status] = ResponseSpec(
            data_container=Problem,
            description=_DESCRIPTIONS[status],
            media_type=PROBLEM_JSON,
            generate_examples=False,
            examples=[Example(summary=e.code, value=example)],
        )
    return specs
