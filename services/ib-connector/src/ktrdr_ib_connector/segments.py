"""One ``FetchBars`` segment: chunks -> paced requests -> one ``BarBatch`` per chunk -> event.

Chunks run concurrently (the pacing gate decides how many are open at once
and when each may go); each batch is published to JetStream as soon as its
chunk is in, with a ``Nats-Msg-Id`` derived from its content, so a segment
retried after a disconnect republishes nothing twice inside the dedup window
(and the store's merge is idempotent beyond it).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable

from ib_async import Contract
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import BarBatch, FetchBars, SegmentFailed, SegmentFetched
from ktrdr_shared.types import to_unix_nanos

from ktrdr_ib_connector.chunking import Chunk, is_hard_paced, plan_chunks
from ktrdr_ib_connector.fetcher import ChunkFailed, Columns, Fetcher

BatchSink = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


class SegmentCancelled(Exception):
    """The segment's job was cancelled while it ran."""


def encode_batch(command: FetchBars, chunk: Chunk, index: int, count: int,
                 columns: Columns) -> tuple[bytes, dict[str, str]]:  # fmt: skip
    """Return a chunk's ``BarBatch`` as msgpack with its headers (content-derived msg id)."""
    batch = BarBatch(
        symbol=command.symbol, timeframe=command.timeframe, what_to_show=command.what_to_show,
        job_id=command.job_id, segment_id=command.segment_id, chunk_index=index,
        chunk_count=count, start=chunk.start, end=chunk.end, ts=columns.ts, open=columns.open,
        high=columns.high, low=columns.low, close=columns.close, volume=columns.volume,
        wap=columns.wap, count=columns.count,
    )  # fmt: skip
    payload = codec.encode(batch, content_type=codec.MSGPACK)
    msg_id = hashlib.sha256(payload).hexdigest()[:40]
    return payload, {codec.CONTENT_TYPE: codec.MSGPACK, "Nats-Msg-Id": msg_id}


async def run_segment(command: FetchBars, contract: Contract, fetcher: Fetcher,
                      publish_batch: BatchSink,
                      cancelled: Callable[[], bool]) -> SegmentFetched | SegmentFailed:  # fmt: skip
    """Fetch and publish every chunk of a segment; return the event that reports it.

    Raises:
        IbUnavailable: the connection dropped; the caller naks the command.
        SegmentCancelled: the job was cancelled.
    """
    start, end = to_unix_nanos(command.start), to_unix_nanos(command.end)
    chunks = plan_chunks(command.timeframe, start, end)
    hard = is_hard_paced(command.timeframe)
    subject = subjects.bars(command.symbol, command.timeframe)
    totals = {"bars": 0, "requests": 0}

    async def one(index: int, chunk: Chunk) -> None:
        if cancelled():
            raise SegmentCancelled(command.job_id)
        columns, requests = await fetcher.fetch(contract, chunk, command.what_to_show,
                                                command.use_rth, hard)  # fmt: skip
        payload, headers = encode_batch(command, chunk, index, len(chunks), columns)
        await publish_batch(subject, payload, headers)
        totals["bars"] += len(columns)
        totals["requests"] += requests

    tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(chunks)]
    try:
        await asyncio.gather(*tasks)
    except ChunkFailed as e:
        return _failed(
            command,
            e.failure.failure.value,
            e.failure.message,
            e.failure.retryable,
            e.failure.ib_code,
        )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return SegmentFetched(job_id=command.job_id, segment_id=command.segment_id,
                          chunks=len(chunks), bars=totals["bars"],
                          ib_requests=totals["requests"])  # fmt: skip


def _failed(command: FetchBars, code: str, message: str, retryable: bool,
            ib_code: int | None) -> SegmentFailed:  # fmt: skip
    return SegmentFailed(job_id=command.job_id, segment_id=command.segment_id, code=code,
                         message=message, retryable=retryable, ib_code=ib_code)  # fmt: skip
