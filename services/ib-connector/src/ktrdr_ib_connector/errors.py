"""Classify IB's answers by official code and text into retry-or-fail decisions (pure).

ib_async returns an empty list both for "IB has no data here" and for "the
request timed out", so the connector listens to the error events ib_async
emits for each request id and to its own timer, and asks ``classify`` what
the combination means.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class FailureKind(enum.StrEnum):
    """What kind of failure, in the words the events carry (``SegmentFailed.code``)."""

    PACING = "pacing"
    NO_DATA = "no_data"
    UNKNOWN_SYMBOL = "unknown_symbol"
    NOT_SUBSCRIBED = "not_subscribed"
    EXPIRED_CONTRACT = "expired_contract"
    FARM_DOWN = "farm_down"
    TIMEOUT = "timeout"
    IB_UNAVAILABLE = "ib_unavailable"
    TOO_MANY_OPEN = "too_many_requests"
    INVALID_REQUEST = "invalid_request"
    CANCELLED = "cancelled"
    COMPETING_SESSION = "competing_session"
    UNKNOWN = "ib_error"


@dataclass(frozen=True)
class IbFailure:
    """A failed IB request, classified: what kind of failure, and whether to ask again.

    Attributes:
        kind: what went wrong.
        retryable: whether the same request can succeed later.
        delay_s: how long to wait before that retry (unscaled seconds).
        ib_code: IB's own error code, when IB sent one.
        message: IB's text (or ours, for timeouts and lost connections).
    """

    kind: FailureKind
    retryable: bool
    delay_s: float
    ib_code: int | None
    message: str

    @property
    def is_empty_answer(self) -> bool:
        """Return True when IB answered, and the answer is "no bars here" (not an error)."""
        return self.kind is FailureKind.NO_DATA


_BY_CODE: dict[int, tuple[FailureKind, bool, float]] = {
    166: (FailureKind.EXPIRED_CONTRACT, False, 0.0),
    200: (FailureKind.UNKNOWN_SYMBOL, False, 0.0),
    321: (FailureKind.INVALID_REQUEST, False, 0.0),
    322: (FailureKind.TOO_MANY_OPEN, True, 2.0),
    354: (FailureKind.NOT_SUBSCRIBED, False, 0.0),
    366: (FailureKind.CANCELLED, False, 0.0),
    502: (FailureKind.IB_UNAVAILABLE, True, 5.0),
    504: (FailureKind.IB_UNAVAILABLE, True, 5.0),
    1100: (FailureKind.IB_UNAVAILABLE, True, 5.0),
    2105: (FailureKind.FARM_DOWN, True, 30.0),
    2107: (FailureKind.FARM_DOWN, True, 30.0),
    10089: (FailureKind.NOT_SUBSCRIBED, False, 0.0),
    10168: (FailureKind.NOT_SUBSCRIBED, False, 0.0),
    10182: (FailureKind.IB_UNAVAILABLE, True, 5.0),
    10197: (FailureKind.COMPETING_SESSION, True, 60.0),
    10314: (FailureKind.INVALID_REQUEST, False, 0.0),
}

# Code 162 carries many meanings; its text tells them apart (spec 4.5).
_BY_162_TEXT: list[tuple[str, tuple[FailureKind, bool, float]]] = [
    ("pacing violation", (FailureKind.PACING, True, 15.0)),
    ("returned no data", (FailureKind.NO_DATA, False, 0.0)),
    ("query cancelled", (FailureKind.CANCELLED, False, 0.0)),
    ("no market data permissions", (FailureKind.NOT_SUBSCRIBED, False, 0.0)),
    ("time length exceed", (FailureKind.INVALID_REQUEST, False, 0.0)),
    ("invalid step", (FailureKind.INVALID_REQUEST, False, 0.0)),
    ("different ip", (FailureKind.COMPETING_SESSION, True, 60.0)),
    ("farm", (FailureKind.FARM_DOWN, True, 30.0)),
]


# A real gateway's 162 for a kind of data the instrument does not have at all, e.g.
# "No historical market data for EUR/CASH@FXSUBPIP Last 1d" (forex TRADES: IB's
# label for TRADES is "Last"). Asking again cannot help.
_NO_SUCH_DATA = re.compile(
    r"no historical market data for (?P<what>\S+?)/(?P<kind>\w+)@(?P<where>\S+) (?P<label>\w+)",
    re.IGNORECASE,
)
_LABELS = {"last": "TRADES", "midpoint": "MIDPOINT", "bid": "BID", "ask": "ASK"}


def _no_such_data(message: str) -> str | None:
    """Return our problem text for IB's "No historical market data for ..." (else None)."""
    found = _NO_SUCH_DATA.search(message)
    if found is None:
        return None
    what, kind = found["what"], found["kind"].upper()
    label = _LABELS.get(found["label"].lower(), found["label"])
    if kind == "CASH" and label == "TRADES":
        return (
            f"no TRADES data for forex ({what}): IB has no trades for currency pairs; "
            f"use MIDPOINT (or BID, ASK). IB said: {message}"
        )
    return (
        f"IB has no {label} data for {what} ({kind} at {found['where']}); "
        f"ask for another whatToShow. IB said: {message}"
    )


def classify(code: int, message: str) -> IbFailure:
    """Return what IB error ``code`` with ``message`` means for the request that got it."""
    if code == 162:
        problem = _no_such_data(message)
        if problem is not None:
            return IbFailure(FailureKind.INVALID_REQUEST, False, 0.0, code, problem)
        lowered = message.lower()
        for needle, (kind, retryable, delay) in _BY_162_TEXT:
            if needle in lowered:
                return IbFailure(kind, retryable, delay, code, message)
        return IbFailure(FailureKind.UNKNOWN, True, 10.0, code, message)
    kind, retryable, delay = _BY_CODE.get(code, (FailureKind.UNKNOWN, True, 10.0))
    return IbFailure(kind, retryable, delay, code, message)


def timed_out(after_s: float) -> IbFailure:
    """Return the classification of a request IB never answered."""
    return IbFailure(FailureKind.TIMEOUT, True, 5.0, None, f"no answer from IB within {after_s:g}s")


def connection_lost(reason: str) -> IbFailure:
    """Return the classification of a request cut off by a lost connection."""
    return IbFailure(FailureKind.IB_UNAVAILABLE, True, 5.0, None, f"IB connection lost: {reason}")


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff for retryable failures.

    Pacing and lost connections are not the request's fault: they wait (for
    the pacing window, for the reconnect) without using up attempts.
    Everything else retryable gets ``max_attempts`` tries, waiting
    ``base_s * factor**n`` (capped) or the failure's own delay if longer.
    """

    max_attempts: int = 5
    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 60.0

    def next_delay(self, failure: IbFailure, attempt: int) -> float | None:
        """Return the delay before the next try after ``attempt`` failures, or None to give up."""
        if not failure.retryable:
            return None
        free = failure.kind in (
            FailureKind.PACING,
            FailureKind.IB_UNAVAILABLE,
            FailureKind.FARM_DOWN,
        )
        if not free and attempt >= self.max_attempts:
            return None
        backoff = min(self.cap_s, self.base_s * self.factor ** max(0, attempt - 1))
        return max(backoff, failure.delay_s)
