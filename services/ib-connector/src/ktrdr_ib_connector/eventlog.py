"""The event log on JetStream: the real adapter of ``ports.EventLog``."""

from __future__ import annotations

from dataclasses import dataclass

import nats.errors
from ktrdr_shared import subjects
from ktrdr_shared.errors import ServiceTimeout
from ktrdr_shared.messages import JobKind
from ktrdr_shared.messages.base import Event
from ktrdr_shared.runtime import last_job_event, publish_event
from nats.js import JetStreamContext


@dataclass(frozen=True)
class JetStreamLog:
    """A load job's events and bar batches, appended to and read from JetStream."""

    js: JetStreamContext

    async def append(self, event: Event, msg_id: str | None = None) -> None:
        """Append a load job's event (under the data-load kind)."""
        await publish_event(self.js, event, msg_id, kind=JobKind.DATA_LOAD)

    async def append_batch(self, subject: str, payload: bytes, headers: dict[str, str]) -> None:
        """Append a bar batch; returns once JetStream has stored it."""
        await self.js.publish(subject, payload, headers=headers)

    async def has_event(self, job_id: str, event: str) -> bool:
        """Return whether the job's ``event`` is in the log (one direct read, no fold).

        Raises:
            ServiceTimeout: the event log did not answer; the command is retried.
        """
        try:
            return await last_job_event(self.js, JobKind.DATA_LOAD, job_id, event) is not None
        except (nats.errors.Error, TimeoutError) as e:
            subject = subjects.job_event(JobKind.DATA_LOAD, job_id, event)
            raise ServiceTimeout(f"could not read {subject} from the event log: {e!r}") from e
