"""The trainer's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from ktrdr_shared.config import Settings


class TrainerSettings(Settings, frozen=True, kw_only=True):
    """Settings of the trainer (NATS settings come from ``Settings``)."""

    # Where the trainer writes scratch files (reports) before they go to the object store.
    data_dir: str = "./data"
