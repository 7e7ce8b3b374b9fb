"""Shapes shared by several families: error bodies, time ranges, empty requests."""

from __future__ import annotations

from typing import Any

import msgspec

from ktrdr_shared.messages.base import Message, check_range
from ktrdr_shared.types import UtcDatetime


class ErrorReply(Message, frozen=True, kw_only=True):
    """The JSON body of a failed request's reply (with the micro error headers).

    Attributes:
        code: stable string (``invalid_request``, ``unknown_symbol``, ``not_found``, ...).
        message: what was wrong and what to do.
        details: the inputs that caused it.
    """

    code: str
    message: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class TimeRange(Message, frozen=True, kw_only=True):
    """A half-open UTC range ``[start, end)``."""

    start: UtcDatetime
    end: UtcDatetime

    def __post_init__(self) -> None:
        check_range(self.start, self.end)


class StatusRequest(Message, frozen=True, kw_only=True):
    """An empty request (``nats req ktrdr.ib.status ''`` decodes to this)."""
