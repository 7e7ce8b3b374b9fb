"""The base classes of every wire message.

Wire messages are frozen and keyword-only, and they ignore unknown fields so
that an old consumer survives a newer producer (evolution is additive).
Events are a tagged union on ``type``; the tag is also the last subject token.
"""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec.structs import force_setattr


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """A command, reply or request: one schema per subject, no tag needed by hand."""


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Something that happened. Subclasses set ``tag=`` to their event name."""


def event_type(event: Event | type[Event]) -> str:
    """Return an event's tag, which is also the last token of its subject."""
    cls = event if isinstance(event, type) else type(event)
    tag = cls.__struct_config__.tag
    if not isinstance(tag, str):
        raise TypeError(f"{cls.__name__} has no string tag")
    return tag


def upper_symbols(message: Any, *names: str) -> None:
    """Upper-case symbol fields in place (call from ``__post_init__``).

    Messages carry the symbol as the user wrote it, upper-cased, so a hand
    typed ``{"symbol": "aapl"}`` becomes ``AAPL`` instead of an error.
    """
    for name in names:
        value = getattr(message, name)
        if isinstance(value, str):
            if value != value.upper():
                force_setattr(message, name, value.upper())
        elif isinstance(value, list) and any(v != v.upper() for v in value):
            force_setattr(message, name, [v.upper() for v in value])


def check_range(start: Any, end: Any, *, start_name: str = "start", end_name: str = "end") -> None:
    """Reject a range whose start is not before its end.

    Raises:
        ValueError: naming both fields (msgspec turns it into a validation error).
    """
    if start is not None and end is not None and not start < end:
        raise ValueError(f"'{start_name}' ({start}) must be before '{end_name}' ({end})")
