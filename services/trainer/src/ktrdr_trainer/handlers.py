"""The trainer's NATS side: the real adapters of the job handling's ports, and two requests.

``jobs.TrainingJobs`` handles each ``StartTraining`` (``app.py`` feeds it the command
consumer and the cancel requests). ``Trainer`` gives it the event log (``publish``), the
bars (``query_store`` pages of ``ktrdr.store.query``, or the store's files on this disk)
and the model store, and answers ``ktrdr.train.status`` and ``ktrdr.train.models``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from ktrdr_shared import subjects
from ktrdr_shared.client import request_raw
from ktrdr_shared.errors import NoReply, NoResponders, RetryableError, ServiceTimeout
from ktrdr_shared.messages import (
    JobKind,
    ModelList,
    QueryBars,
    StatusRequest,
    TrainerStatus,
)
from ktrdr_shared.messages.base import Event
from ktrdr_shared.runtime import publish_event
from ktrdr_shared.store.remote import open_bucket
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_trainer.config import TrainerSettings
from ktrdr_trainer.data import QueryFn
from ktrdr_trainer.jobs import TrainingJobs
from ktrdr_trainer.ports import BarsSource
from ktrdr_trainer.repository import ModelRepository
from ktrdr_trainer.sources import BucketBars, ParquetBars, StoreBars
from ktrdr_trainer.training import describe_device


@dataclass
class Trainer:
    """NATS, the model store and this host's device, and the job handling built on them."""

    nc: NATS
    js: JetStreamContext
    settings: TrainerSettings
    models: ModelRepository
    device: torch.device
    keep_alive_s: float = 60.0
    jobs: TrainingJobs = field(init=False)

    def __post_init__(self) -> None:
        self.jobs = TrainingJobs(
            events=self,
            bars=bars_source(self.settings, self.query_store),
            models=self.models,
            device=self.device,
            max_training_bytes=self.settings.trainer_max_training_bytes,
            keep_alive_s=self.keep_alive_s,
        )

    # -- requests ---------------------------------------------------------------------

    async def status(self, _: StatusRequest) -> TrainerStatus:
        """Answer ``ktrdr.train.status``: this host's device, busy or idle, the current job."""
        return TrainerStatus(
            device=describe_device(self.device),
            busy=self.jobs.current_job is not None,
            job_id=self.jobs.current_job,
        )

    async def list_models(self, _: StatusRequest) -> ModelList:
        """Answer ``ktrdr.train.models`` with every stored model, newest first."""
        return ModelList(models=await self.models.list())

    # -- the event log and the data-store: the ports' NATS adapters -------------------

    async def publish(self, event: Event) -> None:
        """Append a training job's event to the event log (under the training kind)."""
        await publish_event(self.js, event, kind=JobKind.TRAINING)

    async def query_store(self, request: QueryBars) -> bytes:
        """Send one ``QueryBars`` to the data-store; return the Arrow reply's bytes."""
        timeout = self.settings.trainer_query_timeout_s
        try:
            reply = await request_raw(self.nc, subjects.STORE_QUERY, request, timeout_s=timeout)
        except NoResponders as e:
            raise RetryableError(
                "the data-store is not answering ktrdr.store.query; the job waits in the queue",
                delay_s=5.0,
            ) from e
        except NoReply as e:
            raise ServiceTimeout(
                f"the data-store did not answer a page within {timeout}s",
                details={"symbol": request.symbol},
            ) from e
        return bytes(reply.data)


def bars_source(settings: TrainerSettings, query: QueryFn) -> BarsSource:
    """Return where the trainer reads bars: the bucket, the store's directory, or pages."""
    if settings.store_url:
        secret = settings.s3_secret_key.reveal() if settings.s3_secret_key else ""
        bucket = open_bucket(
            settings.store_url,
            endpoint=settings.s3_endpoint,
            access_key=settings.s3_access_key,
            secret_key=secret,
            region=settings.s3_region,
        )
        return BucketBars(bucket)
    if settings.trainer_store_dir:
        return ParquetBars(settings.trainer_store_dir)
    return StoreBars(query)
