"""Encode and decode wire messages: JSON by default, msgpack when the header says so.

Every decoder honours ``Content-Type: application/msgpack`` and falls back to
JSON without it, so ``nats pub``/``nats req`` work by hand. A malformed or
wrong-shaped payload raises one error type, ``MessageDecodeError``, naming the
subject, the field and the problem (with the allowed values for an enum).
"""

from __future__ import annotations

import enum
import functools
import re
import typing
from collections.abc import Mapping
from typing import Any, NamedTuple, TypeVar

import msgspec

from ktrdr_shared.errors import MessageDecodeError

T = TypeVar("T")

CONTENT_TYPE = "Content-Type"
JSON = "application/json"
MSGPACK = "application/msgpack"

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
# msgspec's words for a timestamp without an offset (``UtcDatetime`` is ``Meta(tz=True)``).
_NAIVE = "Expected `datetime` with a timezone component"
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def encode(message: Any, *, content_type: str = JSON) -> bytes:
    """Return ``message`` encoded as JSON (default) or msgpack."""
    if content_type == MSGPACK:
        return _msgpack_encoder.encode(message)
    return _json_encoder.encode(message)


def headers_for(content_type: str) -> dict[str, str] | None:
    """Return the headers that announce ``content_type`` (none for plain JSON)."""
    return {CONTENT_TYPE: MSGPACK} if content_type == MSGPACK else None


def content_type_of(headers: Mapping[str, str] | None) -> str:
    """Return the payload's content type from its headers; JSON when absent."""
    if not headers:
        return JSON
    value = headers.get(CONTENT_TYPE) or headers.get(CONTENT_TYPE.lower()) or JSON
    return MSGPACK if value.split(";")[0].strip().lower() == MSGPACK else JSON


@functools.cache
def _json_decoder(message_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(message_type)


@functools.cache
def _msgpack_decoder(message_type: Any) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(message_type)


@typing.overload
def decode(
    data: bytes,
    message_type: type[T],
    *,
    subject: str = "",
    headers: Mapping[str, str] | None = None,
) -> T: ...


@typing.overload
def decode(
    data: bytes,
    message_type: Any,
    *,
    subject: str = "",
    headers: Mapping[str, str] | None = None,
) -> Any: ...


def decode(
    data: bytes,
    message_type: Any,
    *,
    subject: str = "",
    headers: Mapping[str, str] | None = None,
) -> Any:
    """Decode ``data`` into ``message_type``, by the content type its headers name.

    An empty payload decodes as ``{}``, so ``nats req ktrdr.ib.status ''``
    works for requests whose fields all have defaults.

    Raises:
        MessageDecodeError: the payload is malformed or has the wrong shape;
            the error names the subject, the field and the problem.
    """
    msgpack = content_type_of(headers) == MSGPACK
    if not data or data.isspace():
        data = b"\x80" if msgpack else b"{}"
    try:
        if msgpack:
            return _msgpack_decoder(message_type).decode(data)
        return _json_decoder(message_type).decode(data)
    except msgspec.ValidationError as e:
        raise _describe(e, message_type, subject, data, msgpack=msgpack) from e
    except msgspec.DecodeError as e:
        kind = "msgpack" if msgpack else "JSON"
        raise MessageDecodeError(
            subject=subject,
            field=None,
            problem=f"payload is not valid {kind}: {e}",
            expected=_type_name(message_type),
        ) from e


def naive_timestamp(value: object) -> str:
    """Return the problem of a timestamp without an offset, naming it and how to fix it."""
    return f"{value} has no timezone; add Z (UTC) or an offset such as +02:00"


class ValidationText(NamedTuple):
    """msgspec's validation message split into what is wrong and where.

    Attributes:
        problem: what is wrong (``Expected `int`, got `str```).
        path: where, as a dotted path (``epochs``, ``items[2].ts``, ``[0]``); "" for the
            value as a whole.
    """

    problem: str
    path: str


def split_validation(message: str) -> ValidationText:
    """Split msgspec's ``Expected `int`, got `str` - at `$.epochs``` into problem and path.

    The one reader of msgspec's error text: the codec, the settings and the api's 400s
    all name the field through it.
    """
    match = _PATH.search(message)
    if match is None:
        return ValidationText(message, "")
    return ValidationText(message[: match.start()], match.group("path").lstrip("."))


def explain_naive(message: str, data: bytes, *, msgpack: bool = False) -> str:
    """Return msgspec's validation ``message`` with a naive timestamp's problem made plain.

    ``Expected `datetime` with a timezone component - at `$.start``` becomes
    ``2024-06-24T00:00:00 has no timezone; add Z (UTC) or an offset such as +02:00 - at
    `$.start``` (the value read back from ``data``); any other message is returned as is.
    """
    if not message.startswith(_NAIVE):
        return message
    value = _value_at(data, split_validation(message).path, msgpack=msgpack)
    shown = value if isinstance(value, str) else "the timestamp"
    return naive_timestamp(shown) + message[len(_NAIVE) :]


def _value_at(data: bytes, path: str, *, msgpack: bool) -> object:
    """Return the value at ``path`` (``start``, ``items[2].ts``) in raw ``data``."""
    try:
        value: object = msgspec.msgpack.decode(data) if msgpack else msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    for name, index in _PATH_PART.findall(path):
        if name and isinstance(value, dict):
            value = value.get(name)
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def _describe(
    error: msgspec.ValidationError,
    message_type: Any,
    subject: str,
    data: bytes = b"",
    *,
    msgpack: bool = False,
) -> MessageDecodeError:
    """Turn msgspec's message into subject + field + problem (+ allowed values)."""
    problem, path = split_validation(explain_naive(str(error), data, msgpack=msgpack))
    allowed = _allowed_values(message_type, path)
    if allowed and problem.startswith(("Invalid enum value", "Invalid value")):
        problem = f"{problem}; use one of {' '.join(allowed)}"
    return MessageDecodeError(
        subject=subject, field=path or None, problem=problem, expected=_type_name(message_type)
    )


def _allowed_values(message_type: Any, path: str) -> list[str]:
    """Return the values allowed at a top-level enum field or a union's tag field."""
    if not path or "." in path or "[" in path:
        return []
    tags = [
        member.__struct_config__.tag
        for member in typing.get_args(message_type)
        if hasattr(member, "__struct_config__") and member.__struct_config__.tag_field == path
    ]
    if tags:
        return [str(tag) for tag in tags]
    hints = _field_types(message_type)
    for candidate in typing.get_args(hints.get(path)) or (hints.get(path),):
        if isinstance(candidate, type) and issubclass(candidate, enum.Enum):
            return [str(member.value) for member in candidate]
    return []


@functools.cache
def _field_types(message_type: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(message_type)
    except (TypeError, NameError):
        return {}


def _type_name(message_type: Any) -> str:
    members = typing.get_args(message_type)
    if members:
        return " | ".join(getattr(m, "__name__", str(m)) for m in members)
    return getattr(message_type, "__name__", str(message_type))
