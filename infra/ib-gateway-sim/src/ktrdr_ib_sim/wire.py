"""TWS socket framing: the ``API\\0`` greeting, length-prefixed NUL-separated messages.

Every message after the greeting is a 4-byte big-endian length followed by a payload of
``field\\0field\\0...`` (spec 1.3). The handshake payload is the one exception: it carries
``v<min>..<max>[ options]`` without a trailing NUL.
"""

from __future__ import annotations

import asyncio
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

GREETING = b"API\0"
_LENGTH = struct.Struct(">I")
_VERSION_RANGE = re.compile(r"^v(\d+)(?:\.\.(\d+))?(?: (.*))?$")

WireValue = str | int | float | bool | None


class FrameError(Exception):
    """The byte stream broke the framing rules; the connection cannot be trusted any more."""


class FieldError(Exception):
    """A well-framed message had a field that could not be read as its type."""


@dataclass(frozen=True)
class ClientHello:
    """What the client announced in its handshake."""

    min_version: int
    max_version: int
    options: str


def encode_field(value: WireValue) -> str:
    """Render one field the way TWS does: ``None`` empty, bools as 0/1, the rest as text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def encode_message(fields: Iterable[WireValue]) -> bytes:
    """Frame ``fields`` as one length-prefixed message, every field NUL-terminated."""
    payload = "".join(encode_field(f) + "\0" for f in fields).encode()
    return _LENGTH.pack(len(payload)) + payload


def encode_text_fields(fields: Sequence[str]) -> bytes:
    """Frame already-rendered text fields (the fast path for large ``historicalData``)."""
    payload = ("\0".join(fields) + "\0").encode()
    return _LENGTH.pack(len(payload)) + payload


def decode_payload(payload: bytes) -> list[str]:
    """Split a message payload into its text fields (the trailing NUL yields no field)."""
    fields = payload.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


def parse_hello(payload: bytes) -> ClientHello:
    """Read the ``v<min>..<max>[ options]`` handshake payload.

    Raises:
        FrameError: The payload is not a version range.
    """
    text = payload.decode(errors="backslashreplace").rstrip("\0")
    match = _VERSION_RANGE.match(text)
    if match is None:
        raise FrameError(f"handshake payload is not 'v<min>..<max>': {text[:80]!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return ClientHello(min_version=low, max_version=high, options=match.group(3) or "")


async def read_greeting(reader: asyncio.StreamReader) -> None:
    """Consume the raw ``API\\0`` bytes that open every session.

    Raises:
        FrameError: The stream opened with anything else.
        asyncio.IncompleteReadError: The peer closed before sending four bytes.
    """
    head = await reader.readexactly(len(GREETING))
    if head != GREETING:
        raise FrameError(f"expected b'API\\x00' greeting, got {head!r}")


async def read_frame(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    """Read one length-prefixed payload.

    Raises:
        FrameError: The announced length is zero or above ``max_bytes``.
        asyncio.IncompleteReadError: The peer closed mid-message (or between messages).
    """
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length == 0 or length > max_bytes:
        raise FrameError(f"message length {length} outside 1..{max_bytes}")
    return await reader.readexactly(length)


class Fields:
    """A cursor over one message's fields with typed reads that raise ``FieldError``."""

    def __init__(self, fields: Sequence[str]) -> None:
        self._fields = fields
        self._pos = 0

    def text(self) -> str:
        """Return the next field as text; a missing trailing field reads as empty."""
        value = self._fields[self._pos] if self._pos < len(self._fields) else ""
        self._pos += 1
        return value

    def integer(self, default: int | None = None) -> int:
        """Return the next field as an int; empty gives ``default`` when one is set."""
        raw = self.text()
        if raw == "" and default is not None:
            return default
        try:
            return int(raw)
        except ValueError as e:
            raise FieldError(f"field {self._pos - 1} is not an integer: {raw!r}") from e

    def number(self, default: float = 0.0) -> float:
        """Return the next field as a float; empty gives ``default``."""
        raw = self.text()
        if raw == "":
            return default
        try:
            return float(raw)
        except ValueError as e:
            raise FieldError(f"field {self._pos - 1} is not a number: {raw!r}") from e

    def flag(self) -> bool:
        """Return the next field as a bool (``"1"``/``"0"``; empty is False)."""
        return self.integer(default=0) != 0

    def skip(self, count: int) -> None:
        """Move past ``count`` fields."""
        self._pos += count
