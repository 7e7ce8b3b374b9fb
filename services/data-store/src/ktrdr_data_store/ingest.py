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
before it is held, so it never reaches a file and is never dropped; the loop keeps going. When
the quarantine cannot be written, the message is nakked with a delay instead of terminated.
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
import pyarrow as pa
from ktrdr_shared import bar_checks, codec, streams
from ktrdr_shared.consumer import fetch_batches
from ktrdr_shared.errors import MessageDecodeError
from ktrdr_shared.messages import BarBatch, BarsStored, BatchRejected
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import Timeframe, from_unix_nanos, symbol_key
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import BarStore, table_from_arrays

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Held:
    """One decoded message, its bars already a table (a third of the memory of the lists)."""

    msg: Msg
    symbol: str
    timeframe: Timeframe
    job_id: str | None
    answered: tuple[int, int]
    bars: pa.Table


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
        self.rows += sum(item.bars.num_rows for item in items)

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
        retry_delay_s: nak delay when a write fails.
        max_rows: bars held before they are written; a backlog is written in rounds this big.
        max_delay_s: the longest the oldest bar in hand waits for more before it is written
            (only while a backlog is being read: a drained stream is written at once).
        writers: datasets written at once, each in its own thread (they are different files).
        on_durable: told (in-process) of each dataset's answered windows once they are
            durable, so load jobs learn it without reading the ledger file.
        validate: check every batch with ``bar_checks.check_batch`` before it is held; a batch
            that fails is rejected (``invalid_bars``). Off only for the ingest benchmark.
    """

    js: JetStreamContext
    store: BarStore
    ledger: AnsweredLedger
    quarantine: Quarantine
    batch: int = 500
    fetch_timeout_s: float = 0.25
    retry_delay_s: float = 2.0
    max_rows: int = 1_000_000
    max_delay_s: float = 2.0
    writers: int = 4
    on_durable: Callable[[str, Timeframe, list[tuple[int, int]]], None] | None = None
    validate: bool = True

    async def run(self, stopping: asyncio.Event) -> None:
        """Ingest until ``stopping`` is set; the bars in hand are written first.

        The next fetch runs while a round is written, so the network and the disk overlap.
        """
        # No fetch heartbeats: nats-py sends a no-wait pull without ``expires`` when messages
        # of an earlier fetch are still queued, and the server refuses a heartbeat on such a
        # pull ("heartbeat value too large"), dropping the queued messages until ack_wait.
        # With a 0.25 s expiry the heartbeat adds nothing anyway.
        fetches = fetch_batches(self.js, streams.STORE_BARS, stopping, self.batch,
                                self.fetch_timeout_s, heartbeat_s=0)  # fmt: skip
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

    async def ingest(self, msgs: list[Msg]) -> None:
        """Store one micro-batch now: decode, merge per dataset, make durable, ack, announce."""
        await self._write(await self._decode_all(msgs))

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
        if self.validate:
            problem = bar_checks.check_arrays(batch, arrays, subject=msg.subject,
                                              now_ns=time.time_ns())  # fmt: skip
            if problem is not None:
                await self._reject(msg, bar_checks.CODE,
                                   f"BarBatch on '{msg.subject}' fails {problem.check}: "
                                   f"{problem.message}", job_id=batch.job_id)  # fmt: skip
                return None
        try:
            bars = table_from_arrays(arrays)
        except pa.ArrowException as e:
            await self._reject(msg, "invalid_request", f"invalid BarBatch on '{msg.subject}': {e}",
                               job_id=batch.job_id)  # fmt: skip
            return None
        return _Held(msg, batch.symbol, batch.timeframe, batch.job_id, (batch.start, batch.end),
                     bars)  # fmt: skip

    async def _reject(self, msg: Msg, code: str, message: str, *,
                      job_id: str | None = None) -> None:  # fmt: skip
        """Quarantine a batch that can never be stored, then terminate and report it."""
        try:
            entry_id = await asyncio.to_thread(
                self.quarantine.put, subject=msg.subject, payload=msg.data, code=code,
                message=message, headers=dict(msg.headers or {}), job_id=job_id,
            )  # fmt: skip
        except OSError as e:  # not kept yet: keep it on the bus instead, and try again later
            log.error("could not quarantine a rejected batch on %s: %s; will retry",
                      msg.subject, e)  # fmt: skip
            await msg.nak(delay=self.retry_delay_s)
            return
        await msg.term()
        log.warning("rejected a bar batch (quarantine %s): %s", entry_id, message)
        await self._publish(BatchRejected(subject=msg.subject, code=code, message=message,
                                          job_id=job_id, quarantine_id=entry_id))  # fmt: skip

    async def _write(self, items: list[_Held]) -> None:
        """Write every dataset in ``items``, ``writers`` at a time."""
        groups: dict[tuple[str, Timeframe], list[_Held]] = defaultdict(list)
        for item in items:
            groups[(symbol_key(item.symbol), item.timeframe)].append(item)
        slots = asyncio.Semaphore(self.writers)

        async def store(key: str, timeframe: Timeframe, group: list[_Held]) -> None:
            async with slots:
                try:
                    await self._store_group(key, timeframe, group)
                except Exception:  # a bug must not stop ingest: log it, retry the group later
                    log.exception("ingest of %d %s %s messages failed; they will be redelivered",
                                  len(group), key, timeframe)  # fmt: skip
                    for item in group:
                        with contextlib.suppress(nats.errors.Error):
                            await item.msg.nak(delay=self.retry_delay_s)

        await asyncio.gather(*(store(k, tf, g) for (k, tf), g in groups.items()))

    async def _store_group(self, key: str, timeframe: Timeframe, items: list[_Held]) -> None:
        table = pa.concat_tables([item.bars for item in items])
        try:
            result = await asyncio.to_thread(self.store.merge, key, timeframe, table)
            await asyncio.to_thread(self.ledger.add, key, timeframe,
                                    [item.answered for item in items])  # fmt: skip
        except OSError as e:  # disk full, permissions: keep the messages for later
            log.error("could not store %s %s: %s; will retry", key, timeframe, e)
            for item in items:
                await item.msg.nak(delay=self.retry_delay_s)
            return
        if self.on_durable is not None:
            self.on_durable(key, timeframe, [item.answered for item in items])
        for item in items:
            await item.msg.ack()
        if result.first_ns is not None and result.last_ns is not None:
            jobs = {item.job_id for item in items}
            await self._publish(BarsStored(
                symbol=items[0].symbol, timeframe=timeframe,
                first=from_unix_nanos(result.first_ns), last=from_unix_nanos(result.last_ns),
                bars_written=result.new_rows, job_id=jobs.pop() if len(jobs) == 1 else None,
            ))  # fmt: skip

    async def _publish(self, event: BarsStored | BatchRejected) -> None:
        await publish_event(self.js, event)


def _drained(msgs: list[Msg]) -> bool:
    """Return whether the consumer had nothing left behind the last message fetched."""
    try:
        return int(msgs[-1].metadata.num_pending) == 0
    except (nats.errors.NotJSMessageError, TypeError, ValueError):
        return True  # cannot tell: write now rather than wait
