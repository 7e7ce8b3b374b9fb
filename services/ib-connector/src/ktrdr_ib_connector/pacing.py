"""The one pacing gate every IB historical request passes through (pure, clock injected).

IB's historical-data rules (``tws-simulator.md`` §5.1-5.2):

* no **identical** request within 15 s;
* fewer than **6** requests for one contract + exchange + whatToShow within 2 s;
* at most **60** requests in any 10-minute window;
* ``BID_ASK`` counts as **two** requests;
* at most **50** open (unanswered) requests.

The first three are hard rules for bars of 30 s or less and for head-timestamp
requests; IB lifted them for 1-minute bars and larger but still throttles
those softly, so for them the gate applies a configurable concurrency limit
and an adaptive back-off that grows when IB answers slowly or complains.

The gate schedules each request **as early as the rules allow**: it computes,
for each rule, the first instant at which sending would keep every sliding
window within its limit, and takes the latest of those instants. Every
constraint only relaxes as time passes, so that instant is exact, not a
fixed sleep.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

Clock = Callable[[], float]
Sleeper = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class PacingRules:
    """IB's limits, all windows multiplied by ``time_scale`` (tests compress time).

    Attributes:
        identical_window_s: no identical request within this window.
        burst_window_s: window of the per-contract burst rule.
        burst_max: most requests per contract/exchange/whatToShow in the burst window.
        window_s: the long sliding window.
        window_max: most requests in the long window.
        max_open: most unanswered requests at once (all bar sizes).
        soft_max_open: most unanswered requests at once for bars >= 1 min.
        margin_s: safety added to every wait, in real seconds (not scaled): the
            gateway stamps a request when it arrives, so the gap between two
            arrivals can be shorter than between their sends by the jitter of
            the trip; this margin absorbs it.
        time_scale: factor applied to every window (not to the margin).
    """

    identical_window_s: float = 15.0
    burst_window_s: float = 2.0
    burst_max: int = 5
    window_s: float = 600.0
    window_max: int = 60
    max_open: int = 50
    soft_max_open: int = 4
    margin_s: float = 0.1
    time_scale: float = 1.0

    def scaled(self, seconds: float) -> float:
        """Return ``seconds`` in this gate's (possibly compressed) time."""
        return seconds * self.time_scale


@dataclass(frozen=True)
class HistoricalRequest:
    """What pacing needs to know about one request.

    Attributes:
        contract: the contract key (e.g. ``AAPL/STK/USD`` or a conId).
        exchange: the exchange asked.
        what_to_show: IB's whatToShow (``BID_ASK`` weighs 2).
        bar_size: IB bar size text (``"30 secs"``); ``""`` for head timestamps.
        duration: IB duration text (``"1800 S"``).
        end: the end date-time text sent to IB.
        use_rth: regular trading hours only.
        hard: whether the hard rules apply (bars <= 30 s, head timestamps).
    """

    contract: str
    exchange: str
    what_to_show: str
    bar_size: str
    duration: str
    end: str
    use_rth: bool = False
    hard: bool = True

    @property
    def weight(self) -> int:
        """Return how many requests IB counts this one as."""
        return 2 if self.what_to_show == "BID_ASK" else 1

    @property
    def burst_key(self) -> tuple[str, str, str]:
        """Return the key of the per-contract burst rule."""
        return (self.contract, self.exchange, self.what_to_show)


class _Sent:
    """One hard-rule request: when it counts from, and its weight."""

    __slots__ = ("at", "weight")

    def __init__(self, at: float, weight: int) -> None:
        self.at, self.weight = at, weight


@dataclass
class _History:
    """Hard-rule requests, kept only as long as a rule can see them (oldest first)."""

    sent: list[_Sent] = field(default_factory=list)
    by_key: dict[tuple[str, str, str], list[_Sent]] = field(default_factory=dict)
    identical: dict[HistoricalRequest, _Sent] = field(default_factory=dict)


class PacingGate:
    """Schedule requests as early as IB's rules allow.

    Use ``async with gate.slot(request):`` around each request: entering waits
    for the earliest legal instant and records the send; leaving marks it
    answered (freeing an open slot). ``earliest`` and ``record`` are the pure
    core the property tests check against a brute-force model of the rules.
    """

    def __init__(self, rules: PacingRules | None = None, clock: Clock | None = None,
                 sleep: Sleeper | None = None) -> None:  # fmt: skip
        self.rules = rules or PacingRules()
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self._history = _History()
        self._order = asyncio.Lock()
        self._open = 0
        self._open_soft = 0
        self._freed = asyncio.Condition()
        self.soft_delay_s = 0.0
        self._last_soft_sent = float("-inf")
        self.requests_sent = 0
        self.waited_s = 0.0

    # -- the pure core -------------------------------------------------------------

    def earliest(self, request: HistoricalRequest, now: float) -> float:
        """Return the first instant >= ``now`` at which ``request`` keeps every rule."""
        if not request.hard:  # spaced from the last soft request, not from now
            return max(now, self._last_soft_sent + self.soft_delay_s)
        r, h = self.rules, self._history
        margin = r.margin_s
        at = now
        last_identical = h.identical.get(request)
        if last_identical is not None:
            at = max(at, last_identical.at + r.scaled(r.identical_window_s) + margin)
        at = max(at, _window_opens(h.sent, r.scaled(r.window_s), r.window_max - request.weight)
                 + margin)  # fmt: skip
        burst = h.by_key.get(request.burst_key, [])
        at = max(at, _window_opens(burst, r.scaled(r.burst_window_s),
                                   r.burst_max - request.weight) + margin)  # fmt: skip
        return at

    def record(self, request: HistoricalRequest, at: float) -> _Sent | None:
        """Remember that ``request`` was sent at ``at`` (forget what no rule can see).

        Returns the entry to ``settle`` once IB has answered (None for soft requests).
        """
        self.requests_sent += 1
        if not request.hard:
            self._last_soft_sent = max(self._last_soft_sent, at)
            return None
        r, h = self.rules, self._history
        entry = _Sent(at, request.weight)
        h.sent.append(entry)
        h.by_key.setdefault(request.burst_key, []).append(entry)
        h.identical[request] = entry
        self._forget(at - max(r.scaled(r.window_s), r.scaled(r.identical_window_s)) - 1.0)
        return entry

    def settle(self, entry: _Sent, answered_at: float) -> None:
        """Count a request from when its answer arrived.

        The gateway stamps a request when it receives it, which can be any time
        between our send and its answer (a busy host can hold it for a while).
        Counting finished requests from the answer is the safe upper bound.
        """
        if answered_at <= entry.at:
            return
        entry.at = answered_at
        h = self._history
        h.sent.sort(key=_at)
        for entries in h.by_key.values():
            entries.sort(key=_at)

    def _forget(self, before: float) -> None:
        h = self._history
        h.sent = [e for e in h.sent if e.at >= before]
        for key in [k for k, q in h.by_key.items() if not q or q[-1].at < before]:
            del h.by_key[key]
        for req in [q for q, e in h.identical.items() if e.at < before]:
            del h.identical[req]

    # -- the async gate --------------------------------------------------------------

    def slot(self, request: HistoricalRequest) -> _Slot:
        """Return a context manager that holds a legal, open slot for ``request``."""
        return _Slot(self, request)

    async def _acquire(self, request: HistoricalRequest) -> _Sent | None:
        async with self._order:  # FIFO: requests leave the gate in the order they came
            await self._wait_for_open_slot(request.hard)
            while True:
                now = self._clock()
                at = self.earliest(request, now)
                if at <= now:
                    break
                self.waited_s += at - now
                await self._sleep(at - now)
            entry = self.record(request, self._clock())
            self._open += 1
            if not request.hard:
                self._open_soft += 1
            return entry

    async def _wait_for_open_slot(self, hard: bool) -> None:
        async with self._freed:
            await self._freed.wait_for(
                lambda: (
                    self._open < self.rules.max_open
                    and (hard or self._open_soft < self.rules.soft_max_open)
                )
            )

    async def _release(self, request: HistoricalRequest, entry: _Sent | None) -> None:
        if entry is not None:
            self.settle(entry, self._clock())
        async with self._freed:
            self._open -= 1
            if not request.hard:
                self._open_soft -= 1
            self._freed.notify_all()

    def slow_down(self, factor: float = 2.0, floor_s: float = 0.5, cap_s: float = 30.0) -> None:
        """Grow the soft delay for large bars (IB answered slowly or complained)."""
        base = max(self.soft_delay_s * factor, self.rules.scaled(floor_s))
        self.soft_delay_s = min(base, self.rules.scaled(cap_s))

    def speed_up(self) -> None:
        """Shrink the soft delay after a prompt answer."""
        self.soft_delay_s = self.soft_delay_s / 2 if self.soft_delay_s > 1e-3 else 0.0

    def state(self, now: float | None = None) -> dict[str, float]:
        """Return counters for ``ktrdr.ib.status``."""
        now = self._clock() if now is None else now
        window = self.rules.scaled(self.rules.window_s)
        in_window = sum(e.weight for e in self._history.sent if e.at > now - window)
        return {"open_requests": float(self._open), "hard_requests_in_window": float(in_window),
                "window_max": float(self.rules.window_max), "soft_delay_s": self.soft_delay_s,
                "requests_sent": float(self.requests_sent), "waited_s": self.waited_s}  # fmt: skip


class _Slot:
    def __init__(self, gate: PacingGate, request: HistoricalRequest) -> None:
        self.gate, self.request = gate, request
        self.entry: _Sent | None = None

    async def __aenter__(self) -> None:
        self.entry = await self.gate._acquire(self.request)

    async def __aexit__(self, *exc: object) -> None:
        await self.gate._release(self.request, self.entry)


def _at(entry: _Sent) -> float:
    return entry.at


def _window_opens(sent: list[_Sent], window: float, room: int) -> float:
    """Return the first instant at which the weight sent within ``window`` is <= ``room``.

    A request sent at ``t`` is inside the window at instant ``x`` while
    ``x - window < t``. Walking from the newest entry back, once the weight
    exceeds ``room`` the entry that broke it must leave the window first.
    """
    if room < 0:
        raise ValueError("a single request outweighs the whole window")
    total = 0
    for entry in reversed(sent):
        total += entry.weight
        if total > room:
            return entry.at + window
    return float("-inf")


__all__ = ["HistoricalRequest", "PacingGate", "PacingRules"]
