"""In-memory adapters of the connector's ports (``ports.py``): its orchestration without servers.

``in_memory()`` builds a ``handlers.Connector`` whose IB is a table (``ScriptedIb``), whose
event log is a list (``EventRecorder``) and whose clock only moves when something waits
(``VirtualClock``). A test hands it commands (``ktrdr_shared.testing.queue.MemoryCommand``)
and reads what it decided: the events and batches it appended, the requests IB got and
when, the delays it chose to wait, all in milliseconds of real time. The pacing gate, the
retry policy, the chunking and the contract resolver are the real ones.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

from ib_async import BarData, Contract, ContractDetails
from ktrdr_shared import job_log, subjects
from ktrdr_shared.errors import ServiceTimeout
from ktrdr_shared.messages import FetchBars, JobKind
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow, default_what_to_show

from ktrdr_ib_connector.boundary import (
    Bars,
    Details,
    DetailsAnswer,
    Empty,
    Head,
    HeadAnswer,
    HistoricalAnswer,
    LinkLost,
    Owner,
    head_request,
    paced,
)
from ktrdr_ib_connector.chunking import BAR_SIZE
from ktrdr_ib_connector.client import ConnectionOptions, ConnectionState
from ktrdr_ib_connector.errors import RetryPolicy
from ktrdr_ib_connector.fetcher import Fetcher
from ktrdr_ib_connector.handlers import Connector
from ktrdr_ib_connector.lease import Taken, Unreachable
from ktrdr_ib_connector.pacing import HistoricalRequest, PacingGate, PacingRules

E = TypeVar("E", bound=Event)
MSG_ID = "Nats-Msg-Id"
NO_SUCH_CONTRACT = "No security definition has been found for the request"
_BAR_SECONDS = {size: tf.seconds for tf, size in BAR_SIZE.items()}


class VirtualClock:
    """A monotonic clock that moves only when something sleeps on it; it keeps every delay.

    Pass ``now`` and ``sleep`` to the pacing gate and the fetcher: a wait IB's rules
    decide (600 s for the 10-minute window) is then a number to assert on, not time spent.
    One sleeper at a time moves it (the gate keeps one timer; a retry waits alone).
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.time = start
        self.slept: list[float] = []
        self._running = asyncio.Event()
        self._running.set()

    def now(self) -> float:
        """Return the clock's time."""
        return self.time

    async def sleep(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` (recorded), then let other tasks run.

        While the clock is paused, a sleep is recorded and waits for ``resume``.
        """
        self.slept.append(seconds)
        await self._running.wait()
        self.time += max(0.0, seconds)
        await asyncio.sleep(0)

    def pause(self) -> None:
        """Hold every sleep from now on where it is (a wait that has not ended yet)."""
        self._running.clear()

    def resume(self) -> None:
        """Let the held sleeps end."""
        self._running.set()


@dataclass
class Stall:
    """A scripted answer that never comes: the request stays in flight until cancelled."""

    reached: asyncio.Event = field(default_factory=asyncio.Event)


Scripted = HistoricalAnswer | Stall


@dataclass
class Asked:
    """One historical request as IB got it: when (the gate's clock) and what became of it."""

    symbol: str
    end: str
    job: str
    at: float
    outcome: str = "in_flight"


class ScriptedIb:
    """IB from tables (``ports.IbPort``): scripted answers per request end, contracts per symbol.

    ``script[end]`` (the request's ``endDateTime`` text, ``Chunk.end_text``) lists the
    answers to requests with that end, in order: ``Bars``, ``Empty``, ``Failed``,
    ``TimedOut``, ``LinkLost`` or a ``Stall``. Any other request is answered with one bar
    opening one bar before its end. Requests pass ``gate`` like the real boundary's (with
    its clock), except a ``LinkLost`` without ``reissue``, which stands for "not connected:
    nothing sent".
    """

    def __init__(
        self,
        gate: PacingGate,
        contracts: dict[str, list[ContractDetails]],
        clock: Callable[[], float] = time.monotonic,
        server_now: datetime = datetime(2024, 6, 28, 22, tzinfo=UTC),
    ) -> None:
        self.gate = gate
        self.contracts = contracts
        self.clock = clock
        self.server_now = server_now
        self.script: dict[str, list[Scripted]] = {}
        self.heads: dict[str, datetime] = {}
        self.asked: list[Asked] = []
        self.looked_up: list[str] = []  # contract-details queries, "<secType> <symbol>"
        self.requests_made = 0

    def answer(self, end: str, *answers: Scripted) -> None:
        """Answer the next requests ending at ``end`` with ``answers``, in order."""
        self.script.setdefault(end, []).extend(answers)

    async def historical(
        self, contract: Contract, key: HistoricalRequest, owner: Owner
    ) -> HistoricalAnswer:
        """Answer one chunk's request from the script (after the gate lets it go)."""
        scripted = self.script.get(key.end, [])
        answer = scripted.pop(0) if scripted else Bars([_bar_before(key)])
        if isinstance(answer, LinkLost) and not answer.reissue:
            return answer
        async with paced(self.gate, key, owner):
            asked = Asked(contract.symbol, key.end, owner.job, self.clock())
            self.asked.append(asked)
            self.requests_made += 1
            owner.tally.sent += 1
            if isinstance(answer, Stall):
                await _stall(answer, asked)
            asked.outcome = type(answer).__name__
            return answer

    async def head_timestamp(
        self, contract: Contract, what_to_show: str, use_rth: bool
    ) -> HeadAnswer:
        """Answer from ``heads`` (by symbol), through the gate."""
        async with self.gate.slot(head_request(contract, what_to_show, use_rth)):
            self.requests_made += 1
        head = self.heads.get(contract.symbol)
        return Empty("no head timestamp") if head is None else Head(head)

    async def contract_details(self, query: Contract) -> DetailsAnswer:
        """Answer from ``contracts``: the symbol's entries of the queried type."""
        self.looked_up.append(f"{query.secType} {query.symbol}")
        found = [
            d
            for d in self.contracts.get(query.symbol, [])
            if d.contract is not None and d.contract.secType == query.secType
        ]
        return Details(found) if found else Empty(NO_SUCH_CONTRACT, 200)

    async def server_time(self) -> datetime | None:
        """Return the scripted IB clock."""
        return self.server_now


async def _stall(stall: Stall, asked: Asked) -> NoReturn:
    """Wait for an answer that never comes; a cancel is the request cancelled at IB."""
    stall.reached.set()
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        asked.outcome = "cancelled"
        raise
    raise AssertionError("a stalled request was answered")


def segment_command(
    symbol: str,
    timeframe: Timeframe,
    start: datetime,
    end: datetime,
    *,
    kind: InstrumentType = InstrumentType.STK,
    what: WhatToShow | None = None,
    job_id: str | None = None,
) -> FetchBars:
    """Return a one-segment ``FetchBars`` (a fresh job unless ``job_id``; ``what``: the
    instrument type's default whatToShow unless given)."""
    return FetchBars(
        job_id=job_id or uuid.uuid4().hex,
        segment_id="s1",
        symbol=symbol,
        timeframe=timeframe,
        start=start,
        end=end,
        instrument_type=kind,
        what_to_show=what or default_what_to_show(kind),
    )


def stock(symbol: str, con_id: int) -> ContractDetails:
    """Return IB's details of a US stock on SMART (a ``ScriptedIb`` contract entry)."""
    return ContractDetails(
        contract=Contract(
            secType="STK",
            symbol=symbol,
            conId=con_id,
            exchange="SMART",
            primaryExchange="NASDAQ",
            currency="USD",
        ),
        timeZoneId="US/Eastern",
    )


def _bar_before(key: HistoricalRequest) -> BarData:
    """Return a valid bar opening one bar before the request's end."""
    end = datetime.strptime(key.end, "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    opens = end - timedelta(seconds=_BAR_SECONDS[key.bar_size])
    return BarData(opens, 10.0, 11.0, 9.0, 10.5, 100.0, 10.2, 7)  # date, OHLC, volume, wap, n


@dataclass
class MemoryLink:
    """IB's link, ready unless told otherwise (``ports.IbLink``)."""

    ready: asyncio.Event = field(default_factory=asyncio.Event)
    options: ConnectionOptions = field(default_factory=ConnectionOptions)
    state: ConnectionState = field(default_factory=lambda: ConnectionState(connected=True))
    now: datetime = datetime(2024, 6, 28, 22, tzinfo=UTC)

    def __post_init__(self) -> None:
        self.ready.set()

    @property
    def problem(self) -> str:
        """Return why IB is not ready (empty when it is)."""
        return "" if self.ready.is_set() else self.state.last_error or "connecting to IB"

    async def wait_ready(self, timeout_s: float | None = None) -> bool:
        """Return whether IB is ready (no waiting: nothing here connects)."""
        return self.ready.is_set()

    def ib_now(self) -> datetime:
        """Return IB's clock."""
        return self.now


class EventRecorder:
    """The event log as lists (``ports.EventLog``), deduplicated by message id as JetStream is
    (inside its duplicate window).

    ``unreadable`` makes every read fail as a log that does not answer would.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []  # (subject, event)
        self.batches: list[tuple[str, bytes, dict[str, str]]] = []
        self.duplicates = 0
        self.unreadable = False
        self._ids: set[str] = set()
        self._changed = asyncio.Event()

    async def append(self, event: Event, msg_id: str | None = None) -> None:
        """Record a job event (dropped when its id was seen: ``msg_id``, else the event's own,
        ``job_log.event_msg_id``, as ``runtime.publish_event`` sends it)."""
        if self._seen(msg_id or job_log.event_msg_id(event)):
            return
        self.events.append((subjects.event_subject(event, kind=JobKind.DATA_LOAD), event))
        self._changed.set()

    async def append_batch(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Record a bar batch (dropped when its ``Nats-Msg-Id`` was seen)."""
        if self._seen(headers.get(MSG_ID)):
            return
        self.batches.append((subject, payload, headers))
        self._changed.set()

    async def has_event(self, job_id: str, event: str) -> bool:
        """Return whether the job's ``event`` was recorded."""
        if self.unreadable:
            raise ServiceTimeout("the event log does not answer")
        subject = subjects.job_event(JobKind.DATA_LOAD, job_id, event)
        return any(s == subject for s, _ in self.events)

    def of_type(self, kind: type[E]) -> list[E]:
        """Return the recorded events of one type, oldest first."""
        return [e for _, e in self.events if isinstance(e, kind)]

    async def wait_for(self, done: Callable[[], bool]) -> None:
        """Return once ``done()`` holds, re-checking after each append (no polling)."""
        while not done():
            self._changed.clear()
            await self._changed.wait()

    def _seen(self, msg_id: str | None) -> bool:
        if msg_id is None:
            return False
        if msg_id in self._ids:
            self.duplicates += 1
            return True
        self._ids.add(msg_id)
        return False


@dataclass
class MemoryLeaseKV:
    """``lease.LeaseKV`` in memory: entries lapse ``ttl_s`` after their last write (on
    ``clock``), as the KV bucket's do; ``down`` makes every call ``Unreachable``."""

    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    down: bool = False
    entries: dict[str, tuple[bytes, int, float]] = field(default_factory=dict)
    _revision: int = 0

    async def create(self, key: str, value: bytes) -> int:
        """Write ``key`` if absent (or lapsed)."""
        if await self.get(key) is not None:
            raise Taken(f"{key} exists")
        return self._write(key, value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        """Write ``key`` if its revision is ``last``."""
        found = await self.get(key)
        if found is None or found[1] != last:
            raise Taken(f"{key} is not at revision {last}")
        return self._write(key, value)

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """Return the live entry of ``key``."""
        self._check()
        entry = self.entries.get(key)
        if entry is None or self.clock() - entry[2] >= self.ttl_s:
            return None
        return entry[0], entry[1]

    async def delete(self, key: str, last: int) -> None:
        """Delete ``key`` if still at ``last``."""
        found = await self.get(key)
        if found is None or found[1] != last:
            raise Taken(f"{key} is not at revision {last}")
        del self.entries[key]

    def _write(self, key: str, value: bytes) -> int:
        self._revision += 1
        self.entries[key] = (value, self._revision, self.clock())
        return self._revision

    def _check(self) -> None:
        if self.down:
            raise Unreachable("nats: no servers available")


@dataclass
class InMemory:
    """A connector on in-memory adapters, and the adapters, for a test to drive and read."""

    connector: Connector
    ib: ScriptedIb
    events: EventRecorder
    link: MemoryLink
    clock: VirtualClock


def in_memory(
    contracts: dict[str, list[ContractDetails]] | None = None,
    *,
    rules: PacingRules | None = None,
    policy: RetryPolicy | None = None,
) -> InMemory:
    """Return a connector whose IB, event log, link and clock are in memory.

    Without ``contracts`` IB knows AAPL and MSFT (stocks). The pacing gate has IB's real
    rules (or ``rules``) on the virtual clock; the retry policy is ``RetryPolicy()``.
    """
    clock = VirtualClock()
    gate = PacingGate(rules, clock=clock.now, sleep=clock.sleep)
    known = contracts or {"AAPL": [stock("AAPL", 265598)], "MSFT": [stock("MSFT", 272093)]}
    ib = ScriptedIb(gate, known, clock=clock.now)
    fetcher = Fetcher(ib, gate, policy or RetryPolicy(), sleep=clock.sleep)
    link, events = MemoryLink(), EventRecorder()
    connector = Connector(connection=link, fetcher=fetcher, events=events)
    return InMemory(connector, ib, events, link, clock)


__all__ = [
    "Asked",
    "EventRecorder",
    "InMemory",
    "MemoryLeaseKV",
    "MemoryLink",
    "ScriptedIb",
    "Stall",
    "VirtualClock",
    "in_memory",
    "segment_command",
    "stock",
]
