"""The api's settings, from ``KTRDR_*`` environment variables."""

from __future__ import annotations

from ktrdr_shared.config import Secret, Settings


class ApiSettings(Settings, frozen=True, kw_only=True):
    """Settings of the api (NATS settings come from ``Settings``)."""

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_key: Secret | None = None
