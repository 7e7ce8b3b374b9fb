"""The data-store's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from ktrdr_shared.config import Settings


class DataStoreSettings(Settings, frozen=True, kw_only=True):
    """Settings of the data-store (NATS settings come from ``Settings``)."""

    data_dir: str = "./data"
    # How long planning a load waits for the ib-connector (symbol lookup, IB's clock,
    # head timestamp) before the job fails with "no ib-connector answered".
    load_plan_timeout_s: float = 300.0
    # A load whose segments were all reported but whose bars stop becoming durable for
    # this long completes with those segments listed as not stored.
    load_stall_timeout_s: float = 300.0
    # At most one progress event per job this often.
    load_progress_interval_s: float = 1.0
    # Every this often, a tail load for each dataset whose market traded since its last
    # bar (0 turns the gap filler off).
    gap_fill_interval_s: float = 900.0
