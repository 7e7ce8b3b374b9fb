"""Durable ingest: bar batches from JetStream into the store, acked only once durable.

Messages arrive in micro-batches (bounded by count and by the fetch expiry);
the batches of each (symbol, timeframe) are merged with one write, made
durable, and only then are their messages acked. Delivery is at least once;
the merge is idempotent, so the effect is exactly once. A batch that can
never be stored (malformed, wrong shape) is terminated and reported as
``batch_rejected``; the loop keeps going.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass

import nats.errors
from ktrdr_shared import codec, streams
from ktrdr_shared.consumer import fetch_batches
from ktrdr_shared.errors import MessageDecodeError
from ktrdr_shared.messages import BarBatch, BarsStored, BatchRejected
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.types import Timeframe, from_unix_nanos, symbol_key
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.store import BarStore, batches_to_table

log = logging.getLogger(__name__)


@dataclass
class Ingestor:
    """Consume ``KTRDR_BARS`` into a ``BarStore`` and an answered-ranges ledger."""

    js: JetStreamContext
    store: BarStore
    ledger: AnsweredLedger
    batch: int = 500
    fetch_timeout_s: float = 0.25
    retry_delay_s: float = 2.0

    async def run(self, stopping: asyncio.Event) -> None:
        """Ingest until ``stopping`` is set; the batch in hand is finished first."""
        async for msgs in fetch_batches(self.js, streams.STORE_BARS, stopping, self.batch,
                                        self.fetch_timeout_s):  # fmt: skip
            try:
                await self.ingest(msgs)
            except Exception:  # a bug must not stop ingest: log it, retry the batch later
                log.exception("ingest of %d messages failed; they will be redelivered", len(msgs))
                for msg in msgs:
                    with contextlib.suppress(nats.errors.Error):
                        await msg.nak(delay=self.retry_delay_s)

    async def ingest(self, msgs: list[Msg]) -> None:
        """Store one micro-batch: decode, merge per dataset, make durable, ack, announce."""
        groups: dict[tuple[str, Timeframe], list[tuple[Msg, BarBatch]]] = defaultdict(list)
        for msg in msgs:
            batch = await self._decode(msg)
            if batch is not None:
                groups[(symbol_key(batch.symbol), batch.timeframe)].append((msg, batch))
        for (key, timeframe), items in groups.items():
            await self._store_group(key, timeframe, items)

    async def _decode(self, msg: Msg) -> BarBatch | None:
        try:
            return codec.decode(msg.data, BarBatch, subject=msg.subject, headers=msg.headers)
        except MessageDecodeError as e:
            await msg.term()
            log.warning("rejected a bar batch: %s", e.message)
            await self._publish(BatchRejected(subject=msg.subject, code=e.code, message=e.message))
            return None

    async def _store_group(self, key: str, timeframe: Timeframe,
                           items: list[tuple[Msg, BarBatch]]) -> None:  # fmt: skip
        batches = [b for _, b in items]
        table = batches_to_table(batches)
        try:
            result = await asyncio.to_thread(self.store.merge, key, timeframe, table)
            await asyncio.to_thread(self.ledger.add, key, timeframe,
                                    [(b.start, b.end) for b in batches])  # fmt: skip
        except OSError as e:  # disk full, permissions: keep the messages for later
            log.error("could not store %s %s: %s; will retry", key, timeframe, e)
            for msg, _ in items:
                await msg.nak(delay=self.retry_delay_s)
            return
        for msg, _ in items:
            await msg.ack()
        if result.first_ns is not None and result.last_ns is not None:
            jobs = {b.job_id for b in batches}
            await self._publish(BarsStored(
                symbol=batches[0].symbol, timeframe=timeframe,
                first=from_unix_nanos(result.first_ns), last=from_unix_nanos(result.last_ns),
                bars_written=result.new_rows, job_id=jobs.pop() if len(jobs) == 1 else None,
            ))  # fmt: skip

    async def _publish(self, event: BarsStored | BatchRejected) -> None:
        await publish_event(self.js, event)
