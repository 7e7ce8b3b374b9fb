"""Strict input: what Litestar's lenient conversion lets through, refused here.

Litestar converts request data leniently (``"end": 0`` becomes 1970-01-01,
``?start=0.5`` a datetime, ``"epochs": "20"`` an int). The REST contract says
timestamps are RFC 3339 strings with an offset and numbers are numbers, so a
route's body is decoded once, strictly, from its raw bytes by ``StrictBody``
(``dto=StrictBody[LoadIn]`` in place of Litestar's conversion), and a query's
timestamps are declared as text (``QueryTimestamp``) and parsed once here. A
failure is a 400 naming the field, like every other validation error.

Timestamps travel as int64 nanoseconds, so a timestamp (or a cursor) outside
1677-09-22 .. 2262-04-11 is refused here, naming the field, rather than
failing inside a service. JSON nested deeper than Python can decode is a 400
too (``errors`` maps ``RecursionError``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from ktrdr_shared.codec import explain_naive, naive_timestamp
from litestar import Request
from litestar.dto import AbstractDTO, DTOFieldDefinition
from litestar.openapi.spec import OpenAPIFormat, OpenAPIType, Schema
from litestar.params import Parameter
from litestar.types import Empty
from litestar.typing import FieldDefinition

from ktrdr_api.errors import ApiError, describe_decode_error, invalid

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.openapi.spec import Reference

T = TypeVar("T")
EXAMPLE_TIMESTAMP = "2024-01-02T14:30:00Z"
# The span of int64 nanoseconds since the epoch, to the day inside it.
EARLIEST = datetime(1677, 9, 22, tzinfo=UTC)
LATEST = datetime(2262, 4, 11, tzinfo=UTC)
SPAN = f"{EARLIEST.date()} .. {LATEST.date()}"
INT64 = 2**63


class StrictBody(AbstractDTO[T]):
    """A route's JSON body, decoded once and strictly into its declared struct.

    ``@post(..., dto=StrictBody[LoadIn])`` with ``data: LoadIn``: the handler gets the body
    as ``decode_body`` reads it, and Litestar's lenient conversion never runs. No transfer
    model is built; OpenAPI describes the body as Litestar does without a DTO. An empty body
    is no body (an optional ``data`` keeps its default).
    """

    @classmethod
    def generate_field_definitions(
        cls, model_type: type[Any]
    ) -> Generator[DTOFieldDefinition, None, None]:
        """Return no fields: the body is decoded into ``model_type`` itself."""
        yield from ()

    @classmethod
    def detect_nested_field(cls, field_definition: FieldDefinition) -> bool:
        """Return False: nothing is transferred field by field."""
        return False

    @classmethod
    def create_for_field_definition(
        cls,
        field_definition: FieldDefinition,
        handler_id: str,
        backend_cls: Any = None,
    ) -> None:
        """Build nothing: ``decode_bytes`` decodes without Litestar's transfer models."""

    @classmethod
    def create_openapi_schema(
        cls, field_definition: FieldDefinition, handler_id: str, schema_creator: SchemaCreator
    ) -> Reference | Schema:
        """Return the body's schema as Litestar writes it for a plain ``data`` parameter."""
        return schema_creator.for_field_definition(field_definition)

    def decode_bytes(self, value: bytes) -> Any:
        """Return the body decoded strictly (``Empty`` for a blank one)."""
        if not value.strip():
            return Empty
        request: Request[Any, Any, Any] = self.asgi_connection  # type: ignore[assignment]
        return decode_body(request, value, self.model_type)


def decode_body(request: Request[Any, Any, Any], raw: bytes, body_type: type[T]) -> T:
    """Decode ``raw`` into ``body_type`` with no type coercion.

    Raises:
        ApiError: 400 naming the field that is of the wrong type or breaks a constraint.
    """
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


# OpenAPI's word for a timestamp in a query that may be left out.
_OPTIONAL_DATE_TIME = [
    Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.DATE_TIME),
    Schema(type=OpenAPIType.NULL),
]


def timestamp_query(description: str) -> Any:
    """Return the ``Parameter`` of a timestamp in a query: declared as text (Litestar hands
    it over as sent; ``query_range`` parses it once, strictly), documented as ``date-time``."""
    return Parameter(description=description, schema_extra={"one_of": _OPTIONAL_DATE_TIME})


def query_timestamp(raw: str | None, name: str) -> datetime | None:
    """Return the query parameter ``name``'s text ``raw`` as a UTC datetime (None when absent).

    Raises:
        ApiError: 400 naming ``name`` for text that is not RFC 3339 with an offset.
    """
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


def query_range(start: str | None, end: str | None) -> tuple[datetime | None, datetime | None]:
    """Return the ``start``/``end`` query parameters, parsed and checked to form a range.

    Raises:
        ApiError: 400 naming the field that is malformed, naive, or out of order.
    """
    first, last = query_timestamp(start, "start"), query_timestamp(end, "end")
    if first is not None and last is not None and not first < last:
        raise invalid(
            "end",
            "query",
            f"'end' ({last.isoformat()}) must be after 'start' ({first.isoformat()})",
        )
    return first, last
