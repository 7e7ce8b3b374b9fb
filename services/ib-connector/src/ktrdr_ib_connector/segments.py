"""One ``FetchBars`` segment: chunks -> paced requests -> one ``BarBatch`` per chunk -> event.

Chunks run concurrently (the pacing gate decides how many are open at once
and when each may go); each batch is published to JetStream as soon as its
chunk is in, with a ``Nats-Msg-Id`` derived from its content, so a segment
retried after a disconnect republishes nothing twice inside the dedup window
(and the store's merge is idempotent beyond it).

A cancelled job cancels the task running its segment, and with it every
chunk: a chunk not sent yet is never sent, one waiting at the gate leaves it
without spending a slot, one in flight is cancelled at IB (``fetcher``), and
bars arriving for it afterwards are dropped, not published. A batch already on
its way to JetStream is let finish, so ``SegmentRun`` says exactly what the
segment published and how many requests it sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ib_async import Contract
from ktrdr_shared import bar_checks, codec, subjects
from ktrdr_shared.messages import BarBatch, FetchBars, SegmentFailed, SegmentFetched

from ktrdr_ib_connector.chunking import Chunk, is_hard_paced, plan_chunks
from ktrdr_ib_connector.fetcher import ChunkFailed, Columns, Fetcher, Owner, RequestTally

BatchSink = Callable[[str, bytes, dict[str, str]], Awaitable[None]]


@dataclass
class SegmentRun:
    """What one segment has done so far; its progress reports and its final event read it.

    ``tally.sent`` starts from what earlier attempts of the same segment sent (an
    attempt cut off by a lost connection is run again), so the final count is every
    request IB saw for the segment.
    """

    command: FetchBars
    tally: RequestTally = field(default_factory=RequestTally)
    chunks: int = 0
    chunks_done: int = 0
    bars: int = 0

    @property
    def owner(self) -> Owner:
        """Return whose requests the segment's are, for the gate and the tally."""
        c = self.command
        return Owner(job=c.job_id, priority=c.priority, tally=self.tally)

    def fetched(self) -> SegmentFetched:
        """Return the event of a segment whose every chunk was published."""
        c = self.command
        return SegmentFetched(
            job_id=c.job_id,
            segment_id=c.segment_id,
            chunks=self.chunks,
            bars=self.bars,
            ib_requests=self.tally.sent,
        )

    def failed(
        self, code: str, message: str, *, retryable: bool = False, ib_code: int | None = None
    ) -> SegmentFailed:
        """Return the event of a segment that stopped, with what it did before."""
        c = self.command
        return SegmentFailed(
            job_id=c.job_id,
            segment_id=c.segment_id,
            code=code,
            message=message,
            retryable=retryable,
            ib_code=ib_code,
            chunks_done=self.chunks_done,
            bars=self.bars,
            ib_requests=self.tally.sent,
        )


class InvalidBars(Exception):
    """IB answered a chunk with bars that fail ``bar_checks``; the chunk is not published."""

    def __init__(self, chunk: Chunk, problem: bar_checks.BarProblem) -> None:
        super().__init__(
            f"IB answered chunk [{chunk.start}, {chunk.end}) with bars that fail "
            f"{problem.check}: {problem.message}"
        )
        self.problem = problem


def encode_batch(
    command: FetchBars, chunk: Chunk, index: int, count: int, columns: Columns
) -> tuple[bytes, dict[str, str]]:
    """Return a chunk's ``BarBatch`` as msgpack with its headers (content-derived msg id).

    Raises:
        InvalidBars: the bars fail ``bar_checks.check_batch`` (checked here, at the door).
    """
    batch = BarBatch(
        symbol=command.symbol,
        timeframe=command.timeframe,
        what_to_show=command.what_to_show,
        job_id=command.job_id,
        segment_id=command.segment_id,
        chunk_index=index,
        chunk_count=count,
        start=chunk.start,
        end=chunk.end,
        ts=columns.ts,
        open=columns.open,
        high=columns.high,
        low=columns.low,
        close=columns.close,
        volume=columns.volume,
        wap=columns.wap,
        count=columns.count,
    )
    problem = bar_checks.check_batch(batch, now_ns=time.time_ns())
    if problem is not None:
        raise InvalidBars(chunk, problem)
    payload = codec.encode(batch, content_type=codec.MSGPACK)
    msg_id = hashlib.sha256(payload).hexdigest()[:40]
    return payload, {codec.CONTENT_TYPE: codec.MSGPACK, "Nats-Msg-Id": msg_id}


async def run_segment(
    run: SegmentRun,
    pieces: list[tuple[Contract, int, int]],
    fetcher: Fetcher,
    publish_batch: BatchSink,
) -> SegmentFetched | SegmentFailed:
    """Fetch and publish every chunk of a segment; return the event that reports it.

    ``pieces`` split the segment by contract (``[start, end)`` in ns): one piece, or a
    future's range cut at its rolls, each piece from the contract that was the front month.

    Raises:
        IbUnavailable: the connection dropped; the caller naks the command.
    """
    command = run.command
    chunks = [
        (contract, chunk)
        for contract, start, end in pieces
        for chunk in plan_chunks(command.timeframe, start, end)
    ]
    run.chunks = len(chunks)
    hard = is_hard_paced(command.timeframe)
    subject = subjects.bars(command.symbol, command.timeframe)

    async def one(index: int, contract: Contract, chunk: Chunk) -> None:
        columns = await fetcher.fetch(
            contract, chunk, command.what_to_show, command.use_rth, hard, run.owner
        )
        payload, headers = encode_batch(command, chunk, index, len(chunks), columns)
        cancelled = await _publish_whole(publish_batch(subject, payload, headers))
        run.chunks_done += 1
        run.bars += len(columns)
        if cancelled:
            raise asyncio.CancelledError

    tasks = [asyncio.create_task(one(i, contract, c)) for i, (contract, c) in enumerate(chunks)]
    try:
        await asyncio.gather(*tasks)
    except ChunkFailed as e:
        failure = e.failure
        return run.failed(
            failure.kind.value,
            failure.message,
            retryable=failure.retryable,
            ib_code=failure.ib_code,
        )
    except InvalidBars as e:  # asking again would get the same bars: permanent
        return run.failed(bar_checks.CODE, f"{command.symbol} {command.timeframe}: {e}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return run.fetched()


async def _publish_whole(publish: Awaitable[None]) -> bool:
    """Run ``publish`` to its end even when cancelled meanwhile; return whether it was.

    A batch JetStream may already have stored is counted, not guessed at.
    """
    task = asyncio.ensure_future(publish)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()  # the publish's own failure, if it failed
    return cancelled
