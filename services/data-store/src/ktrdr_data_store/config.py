"""The data-store's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from ktrdr_shared.config import Settings


class DataStoreSettings(Settings, frozen=True, kw_only=True):
    """Settings of the data-store (NATS settings come from ``Settings``)."""

    data_dir: str = "./data"
