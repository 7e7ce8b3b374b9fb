"""An in-memory work-queue delivery: a command as its handler sees it, recording its fate.

``MemoryCommand`` is a ``ktrdr_shared.consumer.CommandMessage`` with JetStream's metadata
(delivery count, stream sequence, publish time), so ``deliveries`` and
``derived_job_id`` work on it, and ``PullConsumer.dispatch`` settles it as it settles a
real message: a fast test drives a service's command handler through the real dispatch
and reads ``settled`` (``ack``, ``nak 1.0``, ``term``, ``in_progress``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg

from ktrdr_shared import codec, streams

PUBLISHED = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


@dataclass
class MemoryCommand:
    """One delivery of a command; ``redelivered()`` is the next delivery of the same one."""

    data: bytes
    subject: str
    headers: dict[str, str] | None = None
    delivered: int = 1
    stream_seq: int = 1
    published: datetime = PUBLISHED
    settled: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, command: msgspec.Struct, subject: str, stream_seq: int = 1) -> MemoryCommand:
        """Return ``command`` as its first delivery off ``subject``."""
        return cls(codec.encode(command), subject, stream_seq=stream_seq)

    def redelivered(self) -> MemoryCommand:
        """Return the next delivery of this command (nothing settled yet)."""
        return dataclasses.replace(self, delivered=self.delivered + 1, settled=[])

    @property
    def metadata(self) -> Msg.Metadata:
        """Return JetStream's metadata of this delivery."""
        return Msg.Metadata(
            sequence=Msg.Metadata.SequencePair(consumer=self.delivered, stream=self.stream_seq),
            num_pending=0,
            num_delivered=self.delivered,
            timestamp=self.published,
            stream=streams.COMMANDS.name or "",
            consumer="memory",
        )

    @property
    def outcome(self) -> str | None:
        """Return how the delivery was settled last (``in_progress`` marks do not count)."""
        return next((s for s in reversed(self.settled) if s != "in_progress"), None)

    async def ack(self) -> None:
        """Record an ack."""
        self.settled.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        """Record a nak with its delay (``nak`` alone without one)."""
        self.settled.append("nak" if delay is None else f"nak {delay:g}")

    async def in_progress(self) -> None:
        """Record a keep-alive mark."""
        self.settled.append("in_progress")

    async def term(self) -> None:
        """Record a term."""
        self.settled.append("term")
