"""The data-store's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from ktrdr_shared.config import Secret, Settings
from msgspec import Meta


class DataStoreSettings(Settings, frozen=True, kw_only=True):
    """Settings of the data-store (NATS settings come from ``Settings``)."""

    data_dir: str = "./data"
    # Where the Parquet year files live: empty for ``data_dir``, or ``s3://<bucket>/<prefix>``
    # on S3-compatible storage (SeaweedFS, MinIO, AWS S3; ``ktrdr_shared.store.remote``). The
    # answered ledger, the quarantine and the books stay in ``data_dir``.
    store_url: str = ""
    s3_endpoint: str = ""  # http(s)://host:port of SeaweedFS or MinIO; empty for AWS S3
    s3_access_key: str = ""
    s3_secret_key: Secret | None = None
    s3_region: str = "us-east-1"
    # How long planning a load waits for the ib-connector (symbol lookup, IB's clock,
    # head timestamp) before the job fails with "no ib-connector answered".
    load_plan_timeout_s: float = 300.0
    # A load whose segments were all reported but whose bars stop becoming durable for
    # this long completes with those segments listed as not stored.
    load_stall_timeout_s: float = 300.0
    # At most one progress event per job this often (a change of reason goes out at once).
    load_progress_interval_s: float = 1.0
    # Segments of one load sent to the connector and not yet reported, at most: the rest
    # wait, so other jobs' segments interleave with a long load's in the work queue.
    load_segments_in_flight: Annotated[int, Meta(ge=1, le=1000)] = 8
    # A segment longer than this many IB requests is cut into pieces (at the connector's own
    # request boundaries: the same requests), about two per ib-connector serving, so a pool
    # of connectors fetches one long load together (``spread``).
    load_piece_max_requests: Annotated[int, Meta(ge=1, le=10_000)] = 16
    # After a cancel, how long a load waits for the connector to report the segments it was
    # running (what they did goes into the cancelled event) before it closes anyway.
    load_cancel_wait_s: Annotated[float, Meta(ge=0)] = 10.0
    # Every this often, a tail load for each dataset whose market traded since its last
    # bar (0 turns the gap filler off).
    gap_fill_interval_s: float = 900.0
    # A bar batch whose write fails is retried with a delay doubling from this up to the
    # max, and quarantined (write_failed) after this many deliveries; a full disk is retried
    # every max delay, never quarantined.
    ingest_retry_delay_s: Annotated[float, Meta(gt=0)] = 2.0
    ingest_retry_max_delay_s: Annotated[float, Meta(gt=0)] = 30.0
    ingest_write_attempts: Annotated[int, Meta(ge=1)] = 5
    # The quarantine keeps rejected batches this long and this many payload bytes at most
    # (the oldest go first, each removal logged).
    quarantine_max_bytes: Annotated[int, Meta(ge=0)] = 1 << 30
    quarantine_max_age_days: Annotated[float, Meta(gt=0)] = 30.0
