"""IB's historical-data pacing rules, counted from the gateway's side (spec 5.2).

A request breaks the rules when it is
1. identical to one made less than 15 s ago;
2. the sixth (or more) for the same contract, exchange and whatToShow within 2 s;
3. more than the 60th within any 10 minutes.
BID_ASK counts as two requests. Only admitted requests are remembered, so a client that backs
off after a violation is not punished again for the request that was refused.

The ledger is pure: it reads time from the clock it is given, and every window is multiplied by
``time_scale``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from enum import Enum

IDENTICAL_WINDOW_S = 15.0
BURST_WINDOW_S = 2.0
BURST_LIMIT = 5
LONG_WINDOW_S = 600.0
LONG_LIMIT = 60


class PacingRule(Enum):
    """Which rule a request broke."""

    IDENTICAL = "identical request within 15 s"
    BURST = "6+ requests for one contract/exchange/whatToShow within 2 s"
    LONG_WINDOW = "more than 60 requests within 10 minutes"


@dataclass(frozen=True)
class PacedRequest:
    """What pacing needs to know about a request.

    Attributes:
        identity: Every parameter of the request; equal identities are "identical requests".
        series: (contract, exchange, whatToShow), the key of the 2-second rule.
        weight: How many requests it counts as (2 for BID_ASK).
    """

    identity: Hashable
    series: Hashable
    weight: int = 1

    @classmethod
    def of(
        cls, identity: tuple[Hashable, ...], series: tuple[Hashable, ...], what_to_show: str
    ) -> PacedRequest:
        """Build a request, weighting BID_ASK as two."""
        return cls(identity, series, 2 if what_to_show == "BID_ASK" else 1)


@dataclass(frozen=True)
class _Entry:
    at: float
    request: PacedRequest


class PacingLedger:
    """The sliding windows of admitted requests."""

    def __init__(self, clock: Callable[[], float], time_scale: float = 1.0) -> None:
        self._clock = clock
        self._identical_s = IDENTICAL_WINDOW_S * time_scale
        self._burst_s = BURST_WINDOW_S * time_scale
        self._long_s = LONG_WINDOW_S * time_scale
        self._entries: deque[_Entry] = deque()

    def _prune(self, now: float) -> None:
        horizon = max(self._long_s, self._identical_s)
        while self._entries and now - self._entries[0].at >= horizon:
            self._entries.popleft()

    def check(self, request: PacedRequest) -> PacingRule | None:
        """Return the rule ``request`` would break if it were made now, or None."""
        now = self._clock()
        self._prune(now)
        burst = long = 0
        for entry in self._entries:
            age = now - entry.at
            if age < self._identical_s and entry.request.identity == request.identity:
                return PacingRule.IDENTICAL
            if age < self._burst_s and entry.request.series == request.series:
                burst += entry.request.weight
            if age < self._long_s:
                long += entry.request.weight
        if burst + request.weight > BURST_LIMIT:
            return PacingRule.BURST
        if long + request.weight > LONG_LIMIT:
            return PacingRule.LONG_WINDOW
        return None

    def record(self, request: PacedRequest) -> None:
        """Remember an admitted request."""
        self._entries.append(_Entry(self._clock(), request))

    def admit(self, request: PacedRequest) -> PacingRule | None:
        """Record ``request`` if it breaks no rule; otherwise return the rule it breaks."""
        broken = self.check(request)
        if broken is None:
            self.record(request)
        return broken

    def in_window(self) -> int:
        """Return the weight of the requests inside the 10-minute window now."""
        now = self._clock()
        self._prune(now)
        return sum(e.request.weight for e in self._entries if now - e.at < self._long_s)
