"""Strict input: what Litestar's lenient conversion lets through, refused here.

Litestar converts request data leniently (``"end": 0`` becomes 1970-01-01,
``?start=0.5`` a datetime, ``"epochs": "20"`` an int). The REST contract says
timestamps are RFC 3339 strings with an offset and numbers are numbers, so
every body is decoded once more, strictly, from its raw bytes, and every
timestamp in a query is parsed from its raw text. A failure is a 400 naming
the field, like every other validation error.

Timestamps travel as int64 nanoseconds, so a timestamp (or a cursor) outside
1677-09-22 .. 2262-04-11 is refused here, naming the field, rather than
failing inside a service. JSON nested deeper than Python can decode is a 400
too (``errors`` maps ``RecursionError``).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from ktrdr_shared.codec import explain_naive, naive_timestamp
from litestar import Request

from ktrdr_api.errors import ApiError, describe_decode_error, invalid

T = TypeVar("T")
EXAMPLE_TIMESTAMP = "2024-01-02T14:30:00Z"
# The span of int64 nanoseconds since the epoch, to the day inside it.
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)
SPAN = f"{EARLIEST.date()} .. {LATEST.date()}"
INT64 = 2**63


async def strict_body(request: Request[Any, Any, Any], body_type: type[T]) -> T | None:
    """Decode the request body into ``body_type`` with no type coercion (None when empty).

    Raises:
        ApiError: 400 naming the field that is of the wrong type or breaks a constraint.
    """
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        body = msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as e:
        raise describe_decode_error(request, explain_naive(str(e), raw)) from e
    except msgspec.DecodeError as e:
        raise ApiError(400, "invalid_request", f"the body is not valid JSON: {e}") from e
    check_timestamps(body, "body")
    return body


def check_timestamps(value: Any, source: str, path: str = "") -> None:
    """Refuse any datetime inside ``value`` (a struct, list or dict) outside ``SPAN``.

    Raises:
        ApiError: 400 naming the field whose timestamp cannot be held in int64 nanoseconds.
    """
    if isinstance(value, datetime):
        check_span(value, path or "body", source)
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            check_timestamps(getattr(value, name), source, f"{path}.{name}".lstrip("."))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_timestamps(item, source, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            check_timestamps(item, source, f"{path}.{key}".lstrip("."))


def check_span(moment: datetime, field: str, source: str) -> None:
    """Refuse ``moment`` outside ``SPAN`` (naive values are compared as UTC).

    Raises:
        ApiError: 400 naming ``field``.
    """
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    if not EARLIEST <= aware < LATEST:
        raise invalid(
            field,
            source,
            f"{moment.isoformat()} is outside the timestamps ktrdr "
            f"stores ({SPAN}, int64 nanoseconds)",
        )


def query_cursor(cursor: str | None) -> str | None:
    """Return ``cursor`` unless it resumes outside ``SPAN``.

    A cursor that does not decode is passed on: the data-store that issues
    cursors answers it with its own 400.

    Raises:
        ApiError: 400 naming ``cursor`` for one that resumes outside ``SPAN``.
    """
    if cursor is None:
        return None
    try:
        nanos = int(base64.urlsafe_b64decode(cursor.encode("ascii")).decode("ascii"))
    except (ValueError, UnicodeError, binascii.Error):
        return cursor
    if not -INT64 < nanos < INT64:
        raise invalid(
            "cursor",
            "query",
            f"resumes outside the timestamps ktrdr stores ({SPAN}): "
            "pass back the next_cursor of the previous page",
        )
    return cursor


def query_timestamp(request: Request[Any, Any, Any], name: str) -> datetime | None:
    """Return the query parameter ``name`` as a UTC datetime (None when absent).

    Raises:
        ApiError: 400 naming ``name`` for text that is not RFC 3339 with an offset.
    """
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        moment = msgspec.convert(raw, datetime)
    except msgspec.ValidationError as e:
        raise invalid(
            name,
            "query",
            f"{raw!r} is not an RFC 3339 timestamp; write it like {EXAMPLE_TIMESTAMP}",
        ) from e
    if moment.tzinfo is None:
        raise invalid(name, "query", naive_timestamp(raw))
    check_span(moment, name, "query")
    return moment.astimezone(UTC)


def query_range(request: Request[Any, Any, Any]) -> tuple[datetime | None, datetime | None]:
    """Return the ``start``/``end`` query parameters, checked to form a range.

    Raises:
        ApiError: 400 naming the field that is malformed, naive, or out of order.
    """
    first, last = query_timestamp(request, "start"), query_timestamp(request, "end")
    if first is not None and last is not None and not first < last:
        raise invalid(
            "end",
            "query",
            f"'end' ({last.isoformat()}) must be after 'start' ({first.isoformat()})",
        )
    return first, last
