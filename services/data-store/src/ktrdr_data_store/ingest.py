"""Durable ingest: bar batches from JetStream into the store, acked only once durable.

Messages are decoded as they are fetched and held until a bound is reached: nothing left in
the stream behind the last message fetched (so live bars are written at once), ``max_rows``
bars in hand, or the oldest held for ``max_delay_s``. Then the bars of each (symbol,
timeframe) are merged with one write, made durable, and only then are their messages acked;
up to ``writers`` datasets are written at once, each to its own files. Holding across fetches
is what makes a backlog cheap: a year file is rewritten once per round, not once per fetch.
Delivery is at least once; the merge is idempotent, so the effect is exactly once. A batch
that can never be stored (malformed, wrong shape, or bars that fail ``bar_checks``: not
finite, out of order, off the grid, in the future, on another dataset's subject) is kept whole
in the quarantine, then terminated and reported as ``batch_rejected`` (with its quarantine id)
before it is written (the bars of a round are checked together, per dataset, with
``bar_checks.check_many``), so it never reaches a file and is never dropped; the loop keeps
going. When the quarantine cannot be written, the message is nakked with a delay instead of
terminated.

Only bars answering a segment this data-store dispatched are merged (``segments.SegmentBook``):
a batch naming no such segment, or a window outside it, is rejected as ``unknown_segment``, so
nobody can publish "IB answered 1980-2024" or create a dataset by hand. Until the load runner
has replayed the job log, batches wait (nak with a short delay).

A write that fails is retried with a delay doubling from ``retry_delay_s`` (at most
``retry_delay_max_s``); a message whose ``write_attempts``-th write fails too is
quarantined (``write_failed``, or ``dataset_damaged`` when a file of its dataset is unreadable).
Each failure is one log line; a traceback is logged once per dataset and kind of error. A full
disk (``storage_full``) is never a reason to quarantine: the bars wait on the bus, retried at
the longest delay, and the load runner is told (``on_storage``) so loads wait instead of
stalling, then go on once a write succeeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import nats.errors
import numpy as np
import pyarrow as pa
from ktrdr_shared import bar_checks, codec, streams
from ktrdr_shared.consumer import fetch_batches
from ktrdr_shared.errors import DatasetDamaged, MessageDecodeError
from ktrdr_shared.messages import BarBatch, BarsStored, BatchRejected
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import Timeframe, from_unix_nanos, symbol_key
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.segments import UNKNOWN_SEGMENT, SegmentBook
from ktrdr_data_store.storage import is_unavailable, unavailable
from ktrdr_data_store.store import BarStore, table_from_arrays

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Held:
    """One decoded message: its header and its bars as numpy columns (a third of the memory
    of the lists they were decoded into)."""

    msg: Msg
    symbol: str
    job_id: str | None
    header: bar_checks.BatchHeader
    arrays: dict[str, np.ndarray]
    unknown_segment: str | None = None  # why it answers no dispatched segment, if it does not

    @property
    def rows(self) -> int:
        return len(self.arrays["ts"])

    @property
    def answered(self) -> tuple[int, int]:
        return self.header.start, self.header.end


@dataclass
class _Hand:
    """The messages decoded and not yet written: how many bars, and since when."""

    items: list[_Held] = field(default_factory=list)
    rows: int = 0
    since: float = 0.0

    def add(self, items: list[_Held]) -> None:
        if items and not self.items:
            self.since = time.monotonic()
        self.items += items
        self.rows += sum(item.rows for item in items)

    def wait_s(self, max_delay_s: float) -> float | None:
        """Return how long the oldest may still wait (None when nothing is held)."""
        if not self.items:
            return None
        return max(0.0, self.since + max_delay_s - time.monotonic())

    def take(self) -> list[_Held]:
        items, self.items, self.rows = self.items, [], 0
        return items


@dataclass
class Ingestor:
    """Consume ``KTRDR_BARS`` into a ``BarStore`` and an answered-ranges ledger.

    Attributes:
        js: the JetStream context.
        store: where bars are merged.
        ledger: where answered ranges are recorded.
        quarantine: where a rejected message is kept, whole, with its reason.
        batch: messages one fetch asks for.
        fetch_timeout_s: expiry of one fetch (also how soon a stop is noticed).
        retry_delay_s: nak delay after a message's first failed write, doubling with each
            further delivery up to ``retry_delay_max_s``.
        retry_delay_max_s: the longest nak delay (also the retry interval on a full disk).
        write_attempts: deliveries of a message whose writes fail before it is quarantined.
        declare: declare the bar consumer when missing (False: only the NATS admin may).
        max_rows: bars held before they are written; a backlog is written in rounds this big.
        max_delay_s: the longest the oldest bar in hand waits for more before it is written
            (only while a backlog is being read: a drained stream is written at once).
        writers: datasets written at once, each in its own thread (they are different files).
        on_durable: told (in-process) of each dataset's answered windows once they are
            durable, so load jobs learn it without reading the ledger file.
        validate: check every batch with ``bar_checks`` before it is written; a batch that
            fails is rejected (``invalid_bars``). Off only for the ingest benchmark.
        segments: the segments dispatched, which a batch must answer (None: any batch is
            merged; only for tests and benchmarks of the ingest itself).
        on_storage: told the ``storage_full`` problem when a write finds the disk full, and
            None when a write succeeds again.
    """

    js: JetStreamContext
    store: BarStore
    ledger: AnsweredLedger
    quarantine: Quarantine
    batch: int = 500
    fetch_timeout_s: float = 0.25
    retry_delay_s: float = 2.0
    retry_delay_max_s: float = 30.0
    write_attempts: int = 5
    declare: bool = True
    max_rows: int = 1_000_000
    max_delay_s: float = 2.0
    writers: int = 4
    on_durable: Callable[[str, Timeframe, list[tuple[int, int]]], None] | None = None
    validate: bool = True
    segments: SegmentBook | None = None
    on_storage: Callable[[str | None], None] | None = None
    _traced: set[tuple[str, Timeframe, str]] = field(default_factory=set, init=False, repr=False)
    _full: bool = field(default=False, init=False, repr=False)
    # failed writes per message (by stream sequence) in this process; a restart starts afresh
    _failures: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    async def run(self, stopping: asyncio.Event) -> None:
        """Ingest until ``stopping`` is set; the bars in hand are written first.

        The next fetch runs while a round is written, so the network and the disk overlap.
        """
        # No fetch heartbeats: nats-py sends a no-wait pull without ``expires`` when messages
        # of an earlier fetch are still queued, and the server refuses a heartbeat on such a
        # pull ("heartbeat value too large"), dropping the queued messages until ack_wait.
        # With a 0.25 s expiry the heartbeat adds nothing anyway.
        fetches = fetch_batches(
            self.js,
            streams.STORE_BARS,
            stopping,
            self.batch,
            self.fetch_timeout_s,
            heartbeat_s=0,
            declare=self.declare,
        )
        hand = _Hand()
        fetching = asyncio.ensure_future(anext(fetches))
        try:
            while True:
                await asyncio.wait({fetching}, timeout=hand.wait_s(self.max_delay_s))
                if not fetching.done():  # the oldest bar has waited long enough
                    await self._write(hand.take())
                    continue
                try:
                    msgs = fetching.result()
                except StopAsyncIteration:
                    break
                fetching = asyncio.ensure_future(anext(fetches))
                hand.add(await self._decode_all(msgs))
                if (
                    _drained(msgs)
                    or hand.rows >= self.max_rows
                    or hand.wait_s(self.max_delay_s) == 0
                ):
                    await self._write(hand.take())
        finally:
            fetching.cancel()
        await self._write(hand.take())

    async def _decode_all(self, msgs: list[Msg]) -> list[_Held]:
        held = [await self._decode(msg) for msg in msgs]
        return [item for item in held if item is not None]

    async def _decode(self, msg: Msg) -> _Held | None:
        """Return a message's bars as a table, or terminate and report a batch it cannot be."""
        try:
            batch = codec.decode(msg.data, BarBatch, subject=msg.subject, headers=msg.headers)
        except MessageDecodeError as e:
            await self._reject(msg, e.code, e.message)
            return None
        arrays = bar_checks.batch_arrays(batch)  # once: the checks and the table share them
        if isinstance(arrays, bar_checks.BarProblem):  # e.g. a count past int64
            why = f"invalid BarBatch on '{msg.subject}': {arrays.message}"
            await self._reject(msg, "invalid_request", why, job_id=batch.job_id)
            return None
        if self.validate and (problem := bar_checks.check_subject(batch, msg.subject)):
            await self._reject(msg, bar_checks.CODE, _fails(msg, problem), job_id=batch.job_id)
            return None  # (the bars themselves are checked a round at a time: ``_checked``)
        if self.segments is not None and not self.segments.ready:
            await msg.nak(delay=1.0)  # the job log is still being replayed: ask again soon
            return None
        segment = None if self.segments is None else self.segments.problem(batch)
        return _Held(
            msg, batch.symbol, batch.job_id, bar_checks.BatchHeader.of(batch), arrays, segment
        )

    async def _reject(
        self, msg: Msg, code: str, message: str, *, job_id: str | None = None
    ) -> None:
        """Quarantine a batch that can never be stored, then terminate and report it."""
        try:
            entry_id = await asyncio.to_thread(
                self.quarantine.put,
                subject=msg.subject,
                payload=msg.data,
                code=code,
                message=message,
                headers=dict(msg.headers or {}),
                job_id=job_id,
            )
        except OSError as e:  # not kept yet: keep it on the bus instead, and try again later
            log.error("could not quarantine a rejected batch on %s: %s; will retry", msg.subject, e)
            await msg.nak(delay=self.retry_delay_s)
            return
        await msg.term()
        log.warning("rejected a bar batch (quarantine %s): %s", entry_id, message)
        await self._publish(
            BatchRejected(
                subject=msg.subject,
                code=code,
                message=message,
                job_id=job_id,
                quarantine_id=entry_id,
            )
        )

    async def _write(self, items: list[_Held]) -> None:
        """Write every dataset in ``items``, ``writers`` at a time."""
        groups: dict[tuple[str, Timeframe], list[_Held]] = defaultdict(list)
        for item in items:
            groups[(symbol_key(item.symbol), item.header.timeframe)].append(item)
        slots = asyncio.Semaphore(self.writers)

        async def store(key: str, timeframe: Timeframe, group: list[_Held]) -> None:
            async with slots:
                try:
                    group = await self._checked(group)
                    if group:
                        await self._store_group(key, timeframe, group)
                except Exception as e:  # I/O, a damaged file, or a bug: never stops ingest
                    await self._failed(key, timeframe, group, e)

        await asyncio.gather(*(store(k, tf, g) for (k, tf), g in groups.items()))

    async def _checked(self, items: list[_Held]) -> list[_Held]:
        """Reject the batches of one dataset whose bars fail ``bar_checks`` or that answer no
        dispatched segment (in that order); return the rest.

        The bars of all of them are checked at once (``check_many``): a round of good batches
        costs a few array operations over all its bars, not a few per batch.
        """
        problems: list[tuple[str, str] | None] = [None] * len(items)
        if self.validate:  # in the loop, not a thread: ~10 µs a batch, less than a thread hop
            checked = bar_checks.check_many(
                [item.header for item in items],
                [item.arrays for item in items],
                now_ns=time.time_ns(),
            )
            problems = [
                None if p is None else (bar_checks.CODE, _fails(item.msg, p))
                for item, p in zip(items, checked, strict=True)
            ]
        kept = []
        for item, problem in zip(items, problems, strict=True):
            if problem is None and item.unknown_segment is not None:
                why = f"answers no segment the data-store dispatched: {item.unknown_segment}"
                problem = (UNKNOWN_SEGMENT, f"BarBatch on '{item.msg.subject}' {why}")
            if problem is None:
                kept.append(item)
            else:
                await self._reject(item.msg, *problem, job_id=item.job_id)
        return kept

    async def _store_group(self, key: str, timeframe: Timeframe, items: list[_Held]) -> None:
        table = await asyncio.to_thread(_table_of, items)
        result = await asyncio.to_thread(self.store.merge, key, timeframe, table)
        await asyncio.to_thread(self.ledger.add, key, timeframe, [item.answered for item in items])
        if self._full:
            self._full = False
            log.info("the data directory %s has space again: ingest goes on", self._data_dir)
            if self.on_storage is not None:
                self.on_storage(None)
        if self.on_durable is not None:
            self.on_durable(key, timeframe, [item.answered for item in items])
        for item in items:
            await item.msg.ack()
            if self._failures:  # (reading a message's sequence parses its reply subject)
                self._failures.pop(_sequence(item.msg), None)
        if result.first_ns is not None and result.last_ns is not None:
            jobs = {item.job_id for item in items}
            await self._publish(
                BarsStored(
                    symbol=items[0].symbol,
                    timeframe=timeframe,
                    first=from_unix_nanos(result.first_ns),
                    last=from_unix_nanos(result.last_ns),
                    bars_written=result.new_rows,
                    job_id=jobs.pop() if len(jobs) == 1 else None,
                )
            )

    @property
    def _data_dir(self) -> str:
        return str(self.ledger.root.parent)

    async def _failed(
        self, key: str, timeframe: Timeframe, items: list[_Held], error: Exception
    ) -> None:
        """Retry a failed write later, or quarantine the messages that failed often enough."""
        if is_unavailable(error):
            assert isinstance(error, OSError)
            problem = unavailable(self._data_dir, error).message
            self._full = True
            if self.on_storage is not None:
                self.on_storage(problem)
            log.error(
                "storage_full: could not store %d %s %s messages: %s; retrying in %gs",
                len(items),
                key,
                timeframe,
                problem,
                self.retry_delay_max_s,
            )
            for item in items:
                with contextlib.suppress(nats.errors.Error):
                    await item.msg.nak(delay=self.retry_delay_max_s)
            return
        kind = type(error).__name__
        trace = (key, timeframe, kind) not in self._traced
        self._traced.add((key, timeframe, kind))
        for item in items:
            seq = _sequence(item.msg)
            self._failures[seq] = self._failures.get(seq, 0) + 1
        attempt = max(self._failures[_sequence(item.msg)] for item in items)
        delay = min(self.retry_delay_max_s, self.retry_delay_s * 2 ** max(0, attempt - 1))
        text = (error.message if isinstance(error, DatasetDamaged) else str(error)) or kind
        log.error(
            "could not store %d %s %s messages (attempt %d of %d): %s: %s; %s",
            len(items),
            key,
            timeframe,
            attempt,
            self.write_attempts,
            kind,
            text,
            "quarantining those out of attempts"
            if attempt >= self.write_attempts
            else f"retrying in {delay:g}s",
            exc_info=error if trace else None,
        )
        code = DatasetDamaged.code if isinstance(error, DatasetDamaged) else "write_failed"
        for item in items:
            tries = self._failures[_sequence(item.msg)]
            if tries >= self.write_attempts:
                self._failures.pop(_sequence(item.msg), None)
                await self._reject(
                    item.msg,
                    code,
                    f"BarBatch on '{item.msg.subject}' could "
                    f"not be stored in {tries} attempts: {kind}: {text}",
                    job_id=item.job_id,
                )
            else:
                with contextlib.suppress(nats.errors.Error):
                    await item.msg.nak(
                        delay=min(self.retry_delay_max_s, self.retry_delay_s * 2 ** (tries - 1))
                    )

    async def _publish(self, event: BarsStored | BatchRejected) -> None:
        await publish_event(self.js, event)


def _fails(msg: Msg, problem: bar_checks.BarProblem) -> str:
    return f"BarBatch on '{msg.subject}' fails {problem.check}: {problem.message}"


def _table_of(items: list[_Held]) -> pa.Table:
    """Return the bars of ``items``, in their order, as one table (one conversion for all)."""
    names = {frozenset(item.arrays) for item in items}
    if len(names) > 1:  # some with wap/count, some without: each its own table, then joined
        return pa.concat_tables([table_from_arrays(item.arrays) for item in items])
    return table_from_arrays(
        {name: np.concatenate([item.arrays[name] for item in items]) for name in names.pop()}
    )


def _sequence(msg: Msg) -> int:
    """Return the message's stream sequence (0 when it has none: not from JetStream)."""
    try:
        return int(msg.metadata.sequence.stream)
    except (nats.errors.NotJSMessageError, TypeError, ValueError):
        return 0


def _drained(msgs: list[Msg]) -> bool:
    """Return whether the consumer had nothing left behind the last message fetched."""
    try:
        return int(msgs[-1].metadata.num_pending) == 0
    except (nats.errors.NotJSMessageError, TypeError, ValueError):
        return True  # cannot tell: write now rather than wait
