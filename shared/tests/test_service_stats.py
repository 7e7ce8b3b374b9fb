"""``$SRV.STATS`` counts the error replies of a ServiceApp's endpoints (nats.micro counts only
handlers that raise; ours answer every failure with an error reply)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ktrdr_shared import subjects
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import UnknownSymbol
from ktrdr_shared.messages import ValidateSymbol
from ktrdr_shared.runtime import ServiceApp
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration

SERVICE = "stats-probe"


async def endpoint_stats(nc: NATS) -> dict[str, dict[str, Any]]:
    """Return the service's ``$SRV.STATS`` answer, per endpoint name."""
    reply = await nc.request(subjects.micro(subjects.STATS, SERVICE), b"", timeout=2)
    return {e["name"]: e for e in json.loads(reply.data)["endpoints"]}


async def test_stats_count_every_error_reply(nc: NATS, nats_url: str) -> None:
    app = ServiceApp(
        name=SERVICE,
        version="0.0.1",
        description="test",
        settings=Settings.from_env({"KTRDR_NATS_URL": nats_url}),
    )

    @app.endpoint("validate", "ktrdr.test.validate", ValidateSymbol)
    async def validate(request: ValidateSymbol) -> dict[str, bool]:
        if request.symbol == "OOPS":
            raise ZeroDivisionError("a bug")
        if request.symbol != "AAPL":
            raise UnknownSymbol(f"IB knows no {request.symbol}")
        return {"valid": True}

    await app.start()
    try:
        before = (await endpoint_stats(nc))["validate"]
        assert (before["num_requests"], before["num_errors"]) == (0, 0)
        await nc.request("ktrdr.test.validate", b'{"symbol": "AAPL"}', timeout=2)
        await nc.request("ktrdr.test.validate", b'{"symbol": "XYZZY"}', timeout=2)
        after_unknown = (await endpoint_stats(nc))["validate"]
        assert (after_unknown["num_requests"], after_unknown["num_errors"]) == (2, 1)
        assert after_unknown["last_error"] == "404 unknown_symbol: IB knows no XYZZY"
        await nc.request("ktrdr.test.validate", b"{not json", timeout=2)
        await nc.request("ktrdr.test.validate", b'{"symbol": "OOPS"}', timeout=2)
        after = (await endpoint_stats(nc))["validate"]
        assert (after["num_requests"], after["num_errors"]) == (4, 3)
        assert after["last_error"].startswith("500 internal: internal error in validate")
    finally:
        await app.stop()
