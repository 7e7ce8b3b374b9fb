"""In-memory adapters of the job handling's ports (``ports.py``), for fast tests.

``in_memory()`` returns ``TrainingJobs`` on an ``EventRecorder``, a ``MemoryStore``
(serving Arrow pages as the data-store does, or answering an error) and ``MemoryModels``;
a test delivers commands as ``ktrdr_shared.testing.queue.MemoryCommand`` through
``deliver`` (the real ``PullConsumer.dispatch``) and reads what was published, stored and
how each delivery was settled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar, cast

import msgspec
import pyarrow as pa
import torch
from ktrdr_shared import streams, subjects
from ktrdr_shared.consumer import PullConsumer
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import ModelInfo, QueryBars, StartTraining
from ktrdr_shared.messages.base import Event, event_type
from ktrdr_shared.testing.queue import MemoryCommand
from ktrdr_shared.types import symbol_key, to_unix_nanos, utc_now
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from ktrdr_trainer.artifacts import Artifact
from ktrdr_trainer.data import Bars
from ktrdr_trainer.jobs import TrainingJobs
from ktrdr_trainer.sources import StoreBars
from ktrdr_trainer.testing import bars_table

E = TypeVar("E", bound=Event)


@dataclass
class EventRecorder:
    """The event log: every published event in order; ``on_publish`` sees each as it lands."""

    events: list[Event] = field(default_factory=list)
    on_publish: Callable[[Event], None] = lambda _: None

    async def publish(self, event: Event) -> None:
        """Record ``event``, then tell ``on_publish``."""
        self.events.append(event)
        self.on_publish(event)

    def types(self) -> list[str]:
        """Return each event's type (``accepted``, ``progress``, ...) in order."""
        return [event_type(e) for e in self.events]

    def of(self, kind: type[E]) -> list[E]:
        """Return the events of one class, in order."""
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class MemoryStore:
    """The data-store's ``ktrdr.store.query``: Arrow pages of ``page_rows`` bars with a cursor."""

    bars: dict[str, Bars] = field(default_factory=dict)  # by symbol key
    page_rows: int = 100_000
    error: Exception | None = None  # raised by every query while set
    queries: list[QueryBars] = field(default_factory=list)

    def put(self, bars: Bars) -> None:
        """Store one symbol's bars (the timeframe is not checked)."""
        self.bars[symbol_key(bars.symbol)] = bars

    async def query(self, request: QueryBars) -> bytes:
        """Answer one ``QueryBars`` with an Arrow IPC page, as the data-store does.

        Raises:
            Exception: ``error``, while it is set; ``NotFound`` for a symbol never stored.
        """
        self.queries.append(request)
        if self.error is not None:
            raise self.error
        stored = self.bars.get(symbol_key(request.symbol))
        if stored is None:
            raise NotFound(f"nothing is stored for {request.symbol} {request.timeframe.value}")
        table = bars_table(stored)
        ts = stored.ts
        keep = (ts >= (to_unix_nanos(request.start) if request.start else ts.min())) & (
            ts < (to_unix_nanos(request.end) if request.end else ts.max() + 1)
        )
        table = table.filter(pa.array(keep))
        offset = int(request.cursor or 0)
        page = table.slice(offset, self.page_rows)
        more = offset + self.page_rows < len(table)
        cursor = {b"next_cursor": str(offset + self.page_rows).encode()} if more else {}
        page = page.replace_schema_metadata(cursor)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, page.schema) as writer:
            writer.write_table(page)
        return bytes(sink.getvalue().to_pybytes())


@dataclass
class MemoryModels:
    """The model store: each saved artifact, by model id."""

    artifacts: dict[str, Artifact] = field(default_factory=dict)

    async def save(self, artifact: Artifact) -> int:
        """Keep ``artifact``; return its size in bytes."""
        self.artifacts[artifact.model_id] = artifact
        return sum(len(data) for data in artifact.objects().values())

    async def list(self) -> list[ModelInfo]:
        """Return every saved model's listing entry, newest first."""
        infos = [msgspec.json.decode(a.info, type=ModelInfo) for a in self.artifacts.values()]
        return sorted(infos, key=lambda m: m.created, reverse=True)


@dataclass
class InMemory:
    """``TrainingJobs`` on in-memory adapters, and the adapters, for a test to drive and read."""

    jobs: TrainingJobs
    events: EventRecorder
    store: MemoryStore
    models: MemoryModels

    async def deliver(self, msg: MemoryCommand) -> MemoryCommand:
        """Hand one delivery to the job handling as the command consumer does; return it."""
        consumer = PullConsumer(
            js=cast(JetStreamContext, None),  # dispatch settles the message; it needs no JetStream
            spec=streams.TRAIN_COMMANDS,
            handler=self.jobs.handle_start,
            on_permanent=self.jobs.on_rejected,
        )
        await consumer.dispatch(cast(Msg, msg))
        return msg


def command(spec: StartTraining | bytes, stream_seq: int = 1) -> MemoryCommand:
    """Return a ``StartTraining`` (or raw bytes published by hand) as its first delivery."""
    if isinstance(spec, bytes):
        return MemoryCommand(spec, subjects.CMD_TRAIN_START, stream_seq=stream_seq)
    return MemoryCommand.of(spec, subjects.CMD_TRAIN_START, stream_seq=stream_seq)


def in_memory(
    *bars: Bars,
    device: torch.device | None = None,
    clock: Callable[[], datetime] = utc_now,
    keep_alive_s: float = 60.0,
) -> InMemory:
    """Return ``TrainingJobs`` on in-memory adapters, ``bars`` in its store (CPU by default)."""
    events, store, models = EventRecorder(), MemoryStore(), MemoryModels()
    for b in bars:
        store.put(b)
    jobs = TrainingJobs(
        events=events,
        bars=StoreBars(store.query),
        models=models,
        device=device or torch.device("cpu"),
        keep_alive_s=keep_alive_s,
        clock=clock,
    )
    return InMemory(jobs, events, store, models)
