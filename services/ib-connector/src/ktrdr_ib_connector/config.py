"""The ib-connector's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from ktrdr_shared.config import Settings


class IbConnectorSettings(Settings, frozen=True, kw_only=True):
    """Settings of the ib-connector (NATS settings come from ``Settings``)."""

    ib_host: str = "127.0.0.1"
    ib_port: int = 4002
    ib_client_id: int = 1
