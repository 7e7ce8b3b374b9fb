"""What the trainer's job handling talks to, as small protocols (ports).

``jobs.TrainingJobs`` (a ``StartTraining`` command -> a training run -> its events and
its model) is written against these. Each has a real adapter and an in-memory one
(``memory.py``), so the job handling is tested in milliseconds and one wiring test per
path runs on a real nats-server (``tests/test_service.py``).

==================  ==========================================  ==========================
port                real adapter                                in-memory adapter
==================  ==========================================  ==========================
``CommandMessage``  ``nats.aio.msg.Msg`` (``PullConsumer``)     ``MemoryCommand``
``JobEvents``       ``handlers.Trainer`` (``publish``)          ``memory.EventRecorder``
``BarsSource``      ``sources.StoreBars`` over ``query_store``  ``StoreBars`` over
                    / ``sources.ParquetBars``                   ``memory.MemoryStore``
``ModelStore``      ``repository.ModelRepository``              ``memory.MemoryModels``
==================  ==========================================  ==========================

``CommandMessage`` is ``ktrdr_shared.consumer``'s (its in-memory adapter is
``ktrdr_shared.testing.queue.MemoryCommand``): its fate (ack, nak with a delay, term) is
decided by ``PullConsumer.dispatch`` from how the handler returns or raises. Cancels come
through ``ktrdr_shared.cancel.CancelWatcher``.
"""

from __future__ import annotations

from typing import Protocol

from ktrdr_shared.consumer import CommandMessage
from ktrdr_shared.messages import ModelInfo, StartTraining
from ktrdr_shared.messages.base import Event

from ktrdr_trainer.artifacts import Artifact
from ktrdr_trainer.data import Bars

__all__ = ["BarsSource", "CommandMessage", "JobEvents", "ModelStore"]


class JobEvents(Protocol):
    """The event log, as a training job's handling appends to it (the training kind)."""

    async def publish(self, event: Event) -> None:
        """Append one of the job's events."""


class BarsSource(Protocol):
    """Where a run's bars come from: the data-store, or its files on this disk."""

    async def load(self, spec: StartTraining) -> list[Bars]:
        """Return the bars of every symbol of ``spec`` in its range, in its order.

        Raises:
            NotFound: a symbol has no bars in the range.
            RetryableError: the source is not there now; the job waits in the queue.
        """


class ModelStore(Protocol):
    """Where finished models go (``ktrdr_models``)."""

    async def save(self, artifact: Artifact) -> int:
        """Store every object of a model; return its size in bytes."""

    async def list(self) -> list[ModelInfo]:
        """Return every stored model, newest first."""
