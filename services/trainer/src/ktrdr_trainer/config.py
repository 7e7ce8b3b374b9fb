"""The trainer's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from ktrdr_shared.config import Secret, Settings
from ktrdr_shared.training_size import MAX_TRAINING_BYTES, TrainingBytes
from msgspec import Meta


class TrainerSettings(Settings, frozen=True, kw_only=True):
    """Settings of the trainer (NATS settings come from ``Settings``).

    Attributes:
        data_dir: scratch directory (kept for the common ``KTRDR_DATA_DIR``; the
            trainer writes nothing there today: reports are built in memory).
        trainer_store_dir: the data-store's data directory when it is on this
            machine's disk: bars are then read from its Parquet files directly
            instead of paged over ``ktrdr.store.query``.
        store_url, s3_endpoint, s3_access_key, s3_secret_key, s3_region: the data-store's
            bucket (``KTRDR_STORE_URL=s3://...``, as the data-store reads them): bars are then
            read from its year objects directly. It wins over ``trainer_store_dir``.
        trainer_query_timeout_s: how long one page request to the data-store may take.
        trainer_threads: CPU threads torch may use (0: torch's default, all cores).
        trainer_max_training_bytes: the most memory a run's estimate may need (weights,
            optimiser state, one batch; see ``ktrdr_shared.training_size``); a bigger
            spec fails at once naming the field and this limit.
    """

    data_dir: str = "./data"
    trainer_store_dir: str | None = None
    store_url: str = ""
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: Secret | None = None
    s3_region: str = "us-east-1"
    trainer_query_timeout_s: Annotated[float, Meta(gt=0)] = 30.0
    trainer_threads: Annotated[int, Meta(ge=0, le=1024)] = 0
    trainer_max_training_bytes: TrainingBytes = MAX_TRAINING_BYTES
