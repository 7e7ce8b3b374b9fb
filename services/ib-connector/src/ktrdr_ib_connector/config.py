"""The ib-connector's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from typing import Annotated

from ktrdr_shared.config import Settings
from msgspec import Meta


class IbConnectorSettings(Settings, frozen=True, kw_only=True):
    """Settings of the ib-connector (NATS settings come from ``Settings``).

    Attributes:
        ib_host: the gateway's host.
        ib_port: 4002 paper / 4001 live gateway, 7497 / 7496 TWS.
        ib_client_id: the first client id to use; the next is tried on a conflict.
        ib_request_timeout_s: how long one historical request may take before it is
            cancelled and retried.
        ib_connect_timeout_s: how long one connect attempt may take.
        ib_soft_concurrency: open requests at once for bars of 1 minute or more (IB
            throttles those softly; bars of 30 s or less follow IB's hard rules).
        ib_time_scale: multiplies IB's pacing windows and retry delays; 1 for a real
            gateway, smaller only against a simulator running compressed time.
        ib_retry_delay_s: how long a segment waits in the queue while IB is unreachable.
        ib_segments_in_flight: segments (``FetchBars`` commands) taken off the queue and
            run at once; the pacing gate shares IB's budget between their jobs, so a
            segment waiting for IB's 10-minute window does not hold back another job's.
        ib_gateway_id: the gateway's name in the lease bucket (``ktrdr_gateways``): connectors
            with the same one share one lease, so only one of them talks to that gateway at
            a time. Empty (the default): ``<ib_host>_<ib_port>``; set it when two hosts reach
            one gateway under different names.
    """

    ib_host: str = "127.0.0.1"
    ib_port: int = 4002
    ib_client_id: Annotated[int, Meta(ge=0)] = 1
    ib_request_timeout_s: Annotated[float, Meta(gt=0)] = 60.0
    ib_connect_timeout_s: Annotated[float, Meta(gt=0)] = 5.0
    ib_soft_concurrency: Annotated[int, Meta(ge=1, le=50)] = 4
    ib_time_scale: Annotated[float, Meta(gt=0, le=1)] = 1.0
    ib_retry_delay_s: Annotated[float, Meta(gt=0)] = 5.0
    ib_segments_in_flight: Annotated[int, Meta(ge=1, le=1000)] = 32
    ib_gateway_id: Annotated[str, Meta(max_length=200)] = ""
