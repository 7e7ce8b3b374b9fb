"""Thin handlers: decode, call one core function, publish or reply.

Segments run side by side (the consumer's ``concurrency``); each runs in its own
task, registered under its job with the cancel watcher (``ktrdr_shared.cancel``),
so ``cancel_requested`` cancels a job's segments at once (``segments.py`` says
what a cancel does to their chunks). A connector started after a cancel has no
memory of it: before a segment starts, the event log says whether its job was
cancelled or has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import nats.errors
from ib_async import Contract, ContractDetails
from ktrdr_shared import codec
from ktrdr_shared.cancel import CancelWatcher, remember
from ktrdr_shared.consumer import CommandMessage, keep_alive, salvage_fields, salvage_job_id
from ktrdr_shared.errors import (
    IbUnavailable,
    InvalidRequest,
    KtrdrError,
    UnknownSymbol,
)
from ktrdr_shared.messages import (
    FetchBars,
    HeadTimestamp,
    HeadTimestampRequest,
    IbStatus,
    SegmentFailed,
    SegmentFetched,
    StatusRequest,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.types import InstrumentType, default_what_to_show, symbol_key, to_unix_nanos
from nats.js.kv import KeyValue

from ktrdr_ib_connector.boundary import Details, Empty, Failed
from ktrdr_ib_connector.contracts import ContractResolver, symbol_info
from ktrdr_ib_connector.fetcher import Fetcher
from ktrdr_ib_connector.ports import EventLog, IbLink
from ktrdr_ib_connector.progress import ProgressReporter
from ktrdr_ib_connector.segments import SegmentRun, run_segment

log = logging.getLogger(__name__)

T = TypeVar("T")

# Events after which a job's segments must not run: asked to stop, or already over.
ENDING_EVENTS = {
    "cancel_requested": "was cancelled",
    "cancelled": "was cancelled",
    "completed": "has completed",
    "failed": "has failed",
}


@dataclass
class Connector:
    """Everything the handlers share: IB (its link and, through the fetcher, its data) and
    the event log (``ports``: JetStream in the service, in-memory adapters in tests)."""

    connection: IbLink
    fetcher: Fetcher
    events: EventLog
    symbols: KeyValue | None = None
    keep_alive_s: float = 20.0
    # How long a request needing IB waits for it (a connect in progress) before it is refused.
    ib_wait_s: float = 3.0
    resolver: ContractResolver = field(init=False)
    progress: ProgressReporter = field(init=False)
    # jobs stopped (why, in ENDING_EVENTS' words) and the tasks running their segments
    cancels: CancelWatcher = field(default_factory=CancelWatcher)
    # (job, segment) -> requests sent by attempts that IB's loss sent back to the queue
    carried_requests: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self.resolver = ContractResolver(
            self._details,
            clock=self.connection.ib_now,
            served=lambda: self.connection.state.simulator_symbols,
        )
        self.progress = ProgressReporter(
            self.publish_event, self.fetcher.gate, self.connection.ready.is_set
        )

    async def _details(self, query: Contract) -> list[ContractDetails]:
        answer = await self.fetcher.boundary.contract_details(query)
        if isinstance(answer, Details):
            return answer.details
        if isinstance(answer, Empty):  # 200: no such contract
            return []
        if isinstance(answer, Failed):
            failure = answer.failure
            raise IbUnavailable(
                f"IB error {failure.ib_code} looking up {query.symbol}: {failure.message}"
            )
        raise IbUnavailable(f"looking up {query.symbol}: {answer.failure.message}")

    async def _needs_ib(self) -> None:
        """Refuse a request that needs IB while IB is not there (503 with the reason, not a
        timeout): it waits ``ib_wait_s`` at most, well inside a caller's timeout.

        Raises:
            IbUnavailable: not ready, saying why.
        """
        if not await self.connection.wait_ready(self.ib_wait_s):
            raise IbUnavailable(
                f"IB is not available: {self.connection.problem}; "
                "the connector reconnects on its own, ask again later"
            )

    async def publish_event(self, event: Event) -> None:
        """Append a load job's segment event to the event log (under the data-load kind)."""
        await self.events.append(event)

    async def publish_batch(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Append a bar batch; returns once JetStream has stored it."""
        await self.events.append_batch(subject, payload, headers)

    # -- commands ---------------------------------------------------------------------

    async def handle_fetch(self, msg: CommandMessage) -> None:
        """Run one ``FetchBars`` segment and report it; a failed segment is not retried forever.

        Raises:
            IbUnavailable: IB is not there; the command goes back to the queue.
        """
        command = codec.decode(msg.data, FetchBars, subject=msg.subject, headers=msg.headers)
        key = (command.job_id, command.segment_id)
        run = SegmentRun(command)
        run.tally.sent = self.carried_requests.pop(key, 0)
        work = asyncio.create_task(self._fetch_segment(run, msg))
        lost = False
        try:
            with self.cancels.running(command.job_id, lambda _: work.cancel()):
                outcome = await work
        except asyncio.CancelledError:
            if _being_cancelled():
                raise  # the service is stopping: the consumer gives the command back
            outcome = run.failed("cancelled", "the job was cancelled")
        except IbUnavailable:
            remember(self.carried_requests, key, run.tally.sent)
            lost = run.chunks > 0  # it had started: say why it stopped
            raise
        finally:
            await self.progress.finish(run, lost=lost)
        await self.publish_event(outcome)

    async def _fetch_segment(
        self, run: SegmentRun, msg: CommandMessage
    ) -> SegmentFetched | SegmentFailed:
        command = run.command
        ended = await self.job_ended(command.job_id)
        if ended is not None:
            return run.failed("cancelled", f"the job {ended}")
        if not self.connection.ready.is_set():
            raise IbUnavailable("not connected to IB; the segment stays queued", delay_s=2.0)
        try:  # a future's range over a roll: each piece from its front month
            spans = await self.resolver.spans(
                command.symbol,
                command.instrument_type,
                command.contract,
                command.start,
                command.end,
            )
        except UnknownSymbol as e:
            return run.failed(e.code, e.message, ib_code=200)
        except InvalidRequest as e:  # ambiguous, or no contract covers the range
            return run.failed(e.code, e.message)
        pieces = [
            (d.contract, to_unix_nanos(a), to_unix_nanos(b))
            for a, b, d in spans
            if d.contract is not None
        ]
        beat = await keep_alive(msg, self.keep_alive_s)
        self.progress.track(run)
        try:
            return await run_segment(run, pieces, self.fetcher, self.publish_batch)
        finally:
            beat.cancel()

    async def job_ended(self, job_id: str) -> str | None:
        """Return why the job must not run on, in words ('was cancelled'; None while it may).

        Raises:
            ServiceTimeout: the event log did not answer; the command is retried.
        """
        known = self.cancels.reason(job_id)
        if known is not None:
            return known
        found = await asyncio.gather(*(self.events.has_event(job_id, e) for e in ENDING_EVENTS))
        ended = next((e for e, yes in zip(ENDING_EVENTS, found, strict=True) if yes), None)
        if ended is None:
            return None
        self.cancels.remember(job_id, ENDING_EVENTS[ended])
        return ENDING_EVENTS[ended]

    async def on_rejected(self, msg: CommandMessage, error: KtrdrError) -> None:
        """Report a command that can never succeed (malformed, or failing every time)."""
        ids = _salvage_ids(msg.data)
        if ids is None:
            log.warning("rejected %s with no job to report to: %s", msg.subject, error.message)
            return
        job_id, segment_id = ids
        await self.publish_event(
            SegmentFailed(
                job_id=job_id, segment_id=segment_id, code=error.code, message=error.message
            )
        )

    # -- requests ---------------------------------------------------------------------

    async def status(self, _: StatusRequest) -> IbStatus:
        """Answer ``ktrdr.ib.status`` with the real state of the connection."""
        s, o = self.connection.state, self.connection.options
        connected = self.connection.ready.is_set()
        return IbStatus(
            connected=connected,
            host=o.host,
            port=o.port,
            client_id=s.client_id,
            server_version=s.server_version,
            since=s.since if connected else None,
            requests_made=self.fetcher.requests_made,
            pacing=self.fetcher.gate.state(),
            last_error=_now_wrong(self.connection),
            server_time=await self.fetcher.boundary.server_time() if connected else None,
            link_ok=s.link_ok,
            farms=dict(s.farms.states),
            link_lost_since=s.link_lost_since,
            farms_since=dict(s.farms.since),
        )

    async def validate(self, request: ValidateSymbol) -> SymbolInfo:
        """Answer ``ktrdr.ib.validate`` (KV cache first, then IB)."""
        key = f"{symbol_key(request.symbol)}.{request.instrument_type or 'ANY'}"
        if request.contract is not None:  # a spec names its own contract: its own entry
            spec = msgspec.json.encode(request.contract)
            key += "." + hashlib.sha256(spec).hexdigest()[:16]
        cached = await self._kv_get(key, SymbolInfo)
        if cached is not None:
            return cached
        await self._needs_ib()
        details = await self.resolver.resolve(
            request.symbol, request.instrument_type, request.contract
        )
        info = symbol_info(request.symbol, details)
        await self._kv_put(key, info)
        return info

    async def head_timestamp(self, request: HeadTimestampRequest) -> HeadTimestamp:
        """Answer ``ktrdr.ib.head_timestamp``: the earliest bar IB has for the symbol.

        A head timestamp rarely changes and IB refuses an identical request within
        15 s, so an answer is kept in the ``ktrdr_symbols`` bucket (its TTL, 7 days)
        under the contract's id, whatToShow and hours; errors are never kept.
        """
        await self._needs_ib()
        details = await self.resolver.resolve(
            request.symbol, request.instrument_type, request.contract
        )
        contract = details.contract
        assert contract is not None
        what = request.what_to_show or default_what_to_show(InstrumentType(contract.secType))
        hours = "rth" if request.use_rth else "all"
        key = f"head.{contract.conId}.{what}.{hours}"
        cached = await self._kv_get(key, HeadTimestamp)
        if cached is not None:
            return HeadTimestamp(
                symbol=request.symbol, what_to_show=what, head_timestamp=cached.head_timestamp
            )
        head = await self.fetcher.head_timestamp(contract, what, request.use_rth)
        answer = HeadTimestamp(symbol=request.symbol, what_to_show=what, head_timestamp=head)
        await self._kv_put(key, answer)
        return answer

    async def _kv_get(self, key: str, message_type: type[T]) -> T | None:
        if self.symbols is None:
            return None
        try:
            entry = await self.symbols.get(key)
        except (nats.errors.Error, KeyError):
            return None
        if entry is None or entry.value is None:
            return None
        return codec.decode(entry.value, message_type)

    async def _kv_put(self, key: str, value: SymbolInfo | HeadTimestamp) -> None:
        """Keep an answer in the cache; a cache that cannot be written only costs a request."""
        if self.symbols is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.symbols.put(key, codec.encode(value))


def _now_wrong(connection: IbLink) -> str | None:
    """Return what is wrong with IB now, in words (None when nothing is)."""
    s = connection.state
    problems = [] if connection.ready.is_set() else [connection.problem]
    problems += [f"data farm {name} is broken" for name in s.farms.broken()]
    return "; ".join(problems) or None


def _being_cancelled() -> bool:
    """Return whether the running task itself was asked to stop (not something it awaited)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _salvage_ids(data: bytes) -> tuple[str, str] | None:
    """Return (job_id, segment_id) from a payload that did not decode, if it carries them."""
    job, raw = salvage_job_id(data), salvage_fields(data)
    segment = (raw or {}).get("segment_id") or "unknown"
    valid_segment = isinstance(segment, str) and segment.replace("-", "").replace("_", "").isalnum()
    return (job, segment) if job is not None and valid_segment else None
