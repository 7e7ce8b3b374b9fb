"""The one pacing gate every IB historical request passes through (clock injected).

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

Many segments wait at the gate at once, so it is a scheduler, not a queue:
whenever something changes (a request arrives, one is answered, a waiter is
cancelled, the timer fires) it grants, in fair order, every waiter that is
legal now and has an open slot, then sleeps until the first instant another
could go. A waiter the rules hold back does not hold back the ones behind it:
while a 1-second-bar backfill waits ten minutes for the window, a 1-hour load
of another symbol goes at once. One exception: the first hard waiter that the
10-minute window holds back keeps the window's next places, so that a
``BID_ASK`` request (weight 2) is not starved by weight-1 requests taking each
single place the window frees. A task cancelled while it waits leaves without
spending a slot.

Fairness (``scheduling.py``): strict priority classes (lower first; the
data-store sends tail loads as 1, backfills as 5), then round-robin between the
jobs of a class (the job served least recently goes first), then arrival order
within a job. Round-robin rather than weights: each job gets one request per
turn whatever its size, so a short load never waits behind a long one of its
class, and there are no weights to tune; urgency is what the classes are for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from ktrdr_ib_connector.scheduling import Clock, FairQueue, Sleeper, WakeUp


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
    """One hard-rule request: when it counts from, its weight, and whether IB has yet to
    answer it (``open``: the gateway may stamp it any time until then)."""

    __slots__ = ("at", "open", "weight")

    def __init__(self, at: float, weight: int) -> None:
        self.at, self.weight, self.open = at, weight, False


@dataclass
class _History:
    """Hard-rule requests, kept only as long as a rule can see them (oldest first)."""

    sent: list[_Sent] = field(default_factory=list)
    by_key: dict[tuple[str, str, str], list[_Sent]] = field(default_factory=dict)
    identical: dict[HistoricalRequest, _Sent] = field(default_factory=dict)


class SentRecord(msgspec.Struct, frozen=True, array_like=True):
    """One hard request a gate remembers: how long ago (s), its weight and burst key."""

    age_s: float
    weight: int
    key: tuple[str, str, str]


class IdenticalRecord(msgspec.Struct, frozen=True, array_like=True):
    """One request inside the identical-request window: how long ago (s), and what it was."""

    age_s: float
    request: HistoricalRequest


class GateHistory(msgspec.Struct, frozen=True, kw_only=True):
    """What a gate knows of IB's windows, for the connector that takes its gateway over.

    The active connector writes it into its gateway lease at every renewal; a standby that
    takes the gateway over seeds its own gate with it (``PacingGate.seed``), so the requests
    the dead connector made still count in IB's windows.
    """

    sent: list[SentRecord] = msgspec.field(default_factory=list)
    identical: list[IdenticalRecord] = msgspec.field(default_factory=list)


class PacingGate:
    """Schedule requests as early as IB's rules allow.

    Use ``async with gate.slot(request, job=..., priority=...):`` around each
    request: entering waits for the gate to grant it (legal now, an open slot,
    its turn) and records the send; leaving marks it answered (freeing an open
    slot). ``earliest`` and ``record`` are the pure core the property tests
    check against a brute-force model of the rules.
    """

    def __init__(
        self,
        rules: PacingRules | None = None,
        clock: Clock | None = None,
        sleep: Sleeper | None = None,
    ) -> None:
        self.rules = rules or PacingRules()
        self._clock = clock or time.monotonic
        self._sleep = sleep or asyncio.sleep
        self._history = _History()
        self._opens: dict[tuple[int, tuple[str, str, str]], tuple[float, float]] = {}
        self._queue: FairQueue[_Waiter] = FairQueue()
        self._wake_up = WakeUp(self._clock, self._sleep, self._schedule)
        self._pass_pending = False
        self._open = 0
        self._open_soft = 0
        self._in_transit = 0  # hard grants whose task has not resumed to send yet
        self.soft_delay_s = 0.0
        self._last_soft_sent = float("-inf")
        self._quiet_until = float("-inf")  # no hard request before (a takeover's unknowns)
        # Awaited after a hard request is granted (and recorded) and before it is sent: the
        # gateway lease writes the history there, so a successor knows every request sent.
        self.before_hard_send: Callable[[], Awaitable[None]] | None = None
        self.requests_sent = 0

    # -- the pure core -------------------------------------------------------------

    def earliest(self, request: HistoricalRequest, now: float) -> float:
        """Return the first instant >= ``now`` at which ``request`` keeps every rule."""
        if not request.hard:  # spaced from the last soft request, not from now
            return max(now, self._last_soft_sent + self.soft_delay_s)
        return max(
            now, self._quiet_until, self._identical_opens(request), *self._shared_opens(request)
        )

    def _identical_opens(self, request: HistoricalRequest) -> float:
        """Return when the identical-request rule lets ``request`` go."""
        last = self._history.identical.get(request)
        if last is None:
            return float("-inf")
        return last.at + self.rules.scaled(self.rules.identical_window_s) + self.rules.margin_s

    def _shared_opens(self, request: HistoricalRequest) -> tuple[float, float]:
        """Return when the 10-minute window, then the contract's burst, have room.

        Every request of the same weight and burst key shares the answer, kept
        until the history changes: a scheduler pass over a thousand waiters
        works it out once per contract, not once per waiter.
        """
        key = (request.weight, request.burst_key)
        if key not in self._opens:
            r, h = self.rules, self._history
            room, same = request.weight, h.by_key.get(request.burst_key, [])
            long = _window_opens(h.sent, r.scaled(r.window_s), r.window_max - room)
            burst = _window_opens(same, r.scaled(r.burst_window_s), r.burst_max - room)
            self._opens[key] = (long + r.margin_s, burst + r.margin_s)
        return self._opens[key]

    def record(self, request: HistoricalRequest, at: float) -> _Sent | None:
        """Remember that ``request`` was sent at ``at`` (forget what no rule can see).

        Returns the entry to ``settle`` once IB has answered (None for soft requests).
        """
        self.requests_sent += 1
        if not request.hard:
            self._last_soft_sent = max(self._last_soft_sent, at)
            return None
        r, h = self.rules, self._history
        self._opens.clear()
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
        self._opens.clear()
        self._resort()

    def _resort(self) -> None:
        h = self._history
        h.sent.sort(key=_at)
        for entries in h.by_key.values():
            entries.sort(key=_at)

    def _forget(self, before: float) -> None:
        h = self._history
        h.sent = [e for e in h.sent if e.open or e.at >= before]
        stale = [k for k, q in h.by_key.items() if not q or (not q[-1].open and q[-1].at < before)]
        for key in stale:
            del h.by_key[key]
        for req in [q for q, e in h.identical.items() if e.at < before]:
            del h.identical[req]

    # -- handing a gateway over -------------------------------------------------------

    def history(self, now: float | None = None) -> GateHistory:
        """Return the hard requests IB's rules can still see, aged from ``now``."""
        now = self._clock() if now is None else now
        h = self._history
        keys = {id(e): key for key, entries in h.by_key.items() for e in entries}
        return GateHistory(
            sent=[SentRecord(now - e.at, e.weight, keys.get(id(e), ("", "", ""))) for e in h.sent],
            identical=[IdenticalRecord(now - e.at, r) for r, e in h.identical.items()],
        )

    def seed(self, history: GateHistory, *, older_by_s: float, quiet_s: float, unseen: int) -> None:
        """Count a predecessor's requests as this gate's own (a gateway taken over).

        Args:
            history: what the predecessor last wrote, its ages as of then.
            older_by_s: how long ago (real seconds) it was written.
            quiet_s: send no hard request for this long: the predecessor may have sent
                requests after it last wrote (identical ones would break the 15-s rule).
            unseen: requests to count as sent ``older_by_s`` ago for those unknown ones
                (the 10-minute window).
        """
        now, h = self._clock(), self._history
        for record in history.sent:
            entry = _Sent(now - older_by_s - record.age_s, record.weight)
            h.sent.append(entry)
            h.by_key.setdefault(record.key, []).append(entry)
        for _ in range(unseen):
            h.sent.append(_Sent(now - max(0.0, older_by_s - 1.0), 1))
        for i in history.identical:
            h.identical[i.request] = _Sent(now - older_by_s - i.age_s, i.request.weight)
        h.sent.sort(key=_at)
        for entries in h.by_key.values():
            entries.sort(key=_at)
        self._quiet_until = max(self._quiet_until, now + quiet_s)
        self._opens.clear()
        self._reschedule_if_running()

    def _reschedule_if_running(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._rethink()

    # -- the async gate --------------------------------------------------------------

    def slot(self, request: HistoricalRequest, *, job: str = "", priority: int = 5) -> _Slot:
        """Return a context manager that holds a legal, open slot for ``request``.

        Args:
            request: what will be sent.
            job: whose request it is; jobs of one priority class take turns.
            priority: scheduling class, lower first (tail loads 1, backfills 5).
        """
        return _Slot(self, request, job, priority)

    def waiting(self, job: str | None = None) -> int:
        """Return how many requests wait at the gate (only ``job``'s when given)."""
        return len(self._queue) if job is None else len(self._queue.of_job(job))

    def next_send_at(self, job: str) -> float | None:
        """Return the clock instant at which ``job``'s next waiting request may go.

        IB's rules only: other jobs ahead in fair order, or no open slot, can
        make it later. None when ``job`` has nothing waiting.
        """
        now = self._clock()
        times = [self.earliest(w.request, now) for w in self._queue.of_job(job)]
        return min((t for t in times if t != math.inf), default=None)  # inf: until an answer

    async def _acquire(self, request: HistoricalRequest, job: str, priority: int) -> _Sent | None:
        waiter = _Waiter(request, asyncio.get_running_loop().create_future())
        self._queue.push(waiter, job, priority)
        self._reschedule()
        try:
            entry = await waiter.granted
        except BaseException:
            self._leave(waiter)
            raise
        if request.hard:
            if self.before_hard_send is not None:
                try:
                    await self.before_hard_send()
                except BaseException:  # not sent: counted all the same (the safe side)
                    self._sent(entry)
                    self._release(request, entry)
                    raise
            self._sent(entry)
        return entry

    def _sent(self, entry: _Sent | None) -> None:
        """Count a hard request from when its task resumed to send it, then grant the next.

        A granted task runs only when the event loop gets to it, which on a busy host can
        be a while; were the next hard request granted meanwhile, the two could reach IB
        closer together than the rules allow. So one hard request at a time is between its
        grant and its send, and every decision sees the real send time of all before it.
        """
        self._in_transit -= 1
        if entry is not None:
            self.settle(entry, self._clock())
        self._reschedule()

    def _leave(self, waiter: _Waiter) -> None:
        """Take a cancelled waiter out; one granted just before its cancel releases."""
        if waiter in self._queue:
            self._queue.remove(waiter)
            self._reschedule()
        elif waiter.granted.done() and not waiter.granted.cancelled():
            if waiter.request.hard:
                self._in_transit -= 1
            self._release(waiter.request, waiter.granted.result())

    def _reschedule(self) -> None:
        """Run the scheduler soon: once for however many changes come before it runs."""
        if not self._pass_pending:
            self._pass_pending = True
            asyncio.get_running_loop().call_soon(self._schedule)

    def _schedule(self) -> None:
        """Grant, in fair order, every waiter that may go now; wake up for the rest."""
        self._pass_pending = False
        now, wake, held_until = self._clock(), math.inf, -math.inf
        for waiter in self._queue.in_order():
            request = waiter.request
            if waiter.granted.done():  # cancelled, its task not yet resumed to leave
                continue
            if not self._has_open_slot(request.hard):
                if self._open >= self.rules.max_open:
                    break
                continue
            if request.hard and held_until > now:
                wake = min(wake, held_until)
                continue
            if request.hard and self._in_transit:
                continue  # the one in transit reschedules once it is sent
            at = self.earliest(request, now)
            if at <= now:
                self._grant(waiter, now)
                continue
            wake = min(wake, at)
            if request.hard:  # the first the window holds back keeps its next places
                held_until = self._shared_opens(request)[0]
        if self._queue:
            self._wake_up.arm(wake)
        else:
            self._wake_up.cancel()

    def _has_open_slot(self, hard: bool) -> bool:
        r = self.rules
        return self._open < r.max_open and (hard or self._open_soft < r.soft_max_open)

    def _grant(self, waiter: _Waiter, now: float) -> None:
        entry = self.record(waiter.request, now)
        if entry is not None:
            entry.open = True  # the gateway stamps it on arrival: any time until it answers
        self._open += 1
        if waiter.request.hard:
            self._in_transit += 1
        else:
            self._open_soft += 1
        self._queue.granted(waiter)
        waiter.granted.set_result(entry)

    def _release(self, request: HistoricalRequest, entry: _Sent | None) -> None:
        if entry is not None:
            entry.open = False
            self._opens.clear()
            self.settle(entry, self._clock())
            self._resort()
        self._open -= 1
        if not request.hard:
            self._open_soft -= 1
        self._reschedule()

    @property
    def waited_s(self) -> float:
        """Return how long the gate has slept while requests waited for IB's rules."""
        return self._wake_up.slept_s

    def slow_down(self, factor: float = 2.0, floor_s: float = 0.5, cap_s: float = 30.0) -> None:
        """Grow the soft delay for large bars (IB answered slowly or complained)."""
        base = max(self.soft_delay_s * factor, self.rules.scaled(floor_s))
        self.soft_delay_s = min(base, self.rules.scaled(cap_s))
        self._rethink()

    def speed_up(self) -> None:
        """Shrink the soft delay after a prompt answer."""
        self.soft_delay_s = self.soft_delay_s / 2 if self.soft_delay_s > 1e-3 else 0.0
        self._rethink()

    def _rethink(self) -> None:
        if self._queue:  # the soft delay moved: a waiter's instant may have too
            self._reschedule()

    def state(self, now: float | None = None) -> dict[str, float]:
        """Return counters for ``ktrdr.ib.status``.

        ``window_s`` is the 10-minute window as this gate runs it (scaled), and
        ``next_free_in_s`` how long until it has room for one more request: 0 while it has
        room, else until enough of its oldest requests age out (the margin and the other
        rules aside).
        """
        now = self._clock() if now is None else now
        window = self.rules.scaled(self.rules.window_s)
        sent = self._history.sent
        in_window = sum(e.weight for e in sent if e.open or e.at > now - window)
        opens = _window_opens(sent, window, self.rules.window_max - 1)
        return {
            "open_requests": float(self._open),
            "hard_requests_in_window": float(in_window),
            "window_max": float(self.rules.window_max),
            "window_s": window,
            "next_free_in_s": max(0.0, opens - now),
            "soft_delay_s": self.soft_delay_s,
            "requests_sent": float(self.requests_sent),
            "waited_s": self.waited_s,
            "waiting_requests": float(len(self._queue)),
        }


class _Waiter:
    """One request waiting at the gate; ``granted`` resolves to its history entry."""

    __slots__ = ("granted", "request")

    def __init__(self, request: HistoricalRequest, granted: asyncio.Future[_Sent | None]) -> None:
        self.request, self.granted = request, granted


class _Slot:
    def __init__(
        self, gate: PacingGate, request: HistoricalRequest, job: str, priority: int
    ) -> None:
        self.gate, self.request, self.job, self.priority = gate, request, job, priority
        self.entry: _Sent | None = None

    async def __aenter__(self) -> None:
        self.entry = await self.gate._acquire(self.request, self.job, self.priority)

    async def __aexit__(self, *exc: object) -> None:
        self.gate._release(self.request, self.entry)


def _at(entry: _Sent) -> tuple[bool, float]:
    return (entry.open, entry.at)  # unanswered ones last: they count as the newest


def _window_opens(sent: list[_Sent], window: float, room: int) -> float:
    """Return the first instant at which the weight sent within ``window`` is <= ``room``.

    A request sent at ``t`` is inside the window at instant ``x`` while
    ``x - window < t``. Walking from the newest entry back, once the weight
    exceeds ``room`` the entry that broke it must leave the window first. One IB has
    not answered yet (``open``) opens no window: the gateway stamps a request when it
    reads it, which a busy gateway may do late, so it is counted from its answer (the
    scheduler runs again then).
    """
    if room < 0:
        raise ValueError("a single request outweighs the whole window")
    total = 0
    for entry in reversed(sent):
        total += entry.weight
        if total > room:
            return math.inf if entry.open else entry.at + window
    return float("-inf")


__all__ = [
    "GateHistory",
    "HistoricalRequest",
    "IdenticalRecord",
    "PacingGate",
    "PacingRules",
    "SentRecord",
]
