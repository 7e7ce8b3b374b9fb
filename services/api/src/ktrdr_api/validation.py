"""Strict input: what Litestar's lenient conversion lets through, refused here.

Litestar converts request data leniently (``"end": 0`` becomes 1970-01-01,
``?start=0.5`` a datetime, ``"epochs": "20"`` an int). The REST contract says
timestamps are RFC 3339 strings with an offset and numbers are numbers, so
every body is decoded once more, strictly, from its raw bytes, and every
timestamp in a query is parsed from its raw text. A failure is a 400 naming
the field, like every other validation error.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request

from ktrdr_api.errors import ApiError, describe_decode_error, invalid

T = TypeVar("T")
EXAMPLE_TIMESTAMP = "2024-01-02T14:30:00Z"


async def strict_body(request: Request[Any, Any, Any], body_type: type[T]) -> T | None:
    """Decode the request body into ``body_type`` with no type coercion (None when empty).

    Raises:
        ApiError: 400 naming the field that is of the wrong type or breaks a constraint.
    """
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.ValidationError as e:
        raise describe_decode_error(request, str(e)) from e
    except msgspec.DecodeError as e:
        raise ApiError(400, "invalid_request", f"the body is not valid JSON: {e}") from e


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
        raise invalid(name, "query", f"{raw!r} is not an RFC 3339 timestamp; write it like "
                      f"{EXAMPLE_TIMESTAMP}") from e  # fmt: skip
    if moment.tzinfo is None:
        raise invalid(name, "query", f"timestamp {raw} has no offset; give it one, e.g. "
                      f"{EXAMPLE_TIMESTAMP}")  # fmt: skip
    return moment.astimezone(UTC)


def query_range(request: Request[Any, Any, Any]) -> tuple[datetime | None, datetime | None]:
    """Return the ``start``/``end`` query parameters, checked to form a range.

    Raises:
        ApiError: 400 naming the field that is malformed, naive, or out of order.
    """
    first, last = query_timestamp(request, "start"), query_timestamp(request, "end")
    if first is not None and last is not None and not first < last:
        raise invalid("end", "query", f"'end' ({last.isoformat()}) must be after 'start' "
                      f"({first.isoformat()})")  # fmt: skip
    return first, last
