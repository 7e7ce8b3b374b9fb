"""What NATS reports out of band, as errors that name the server, the user and the subject."""

from __future__ import annotations

import asyncio

import nats.errors
import pytest
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import ConfigError
from ktrdr_shared.nats_errors import (
    ConnectionErrors,
    NatsConnectError,
    NatsRefused,
    PermissionDenied,
    Violation,
    parse_violation,
)
from ktrdr_shared.runtime import connect
from ktrdr_shared.testing.nats_server import free_port


@pytest.mark.parametrize(("text", "expected"), [
    ('nats: permissions violation for publish to "ktrdr.cmd.data.load"',
     Violation("publish", "ktrdr.cmd.data.load")),
    ("nats: 'Permissions Violation for Subscription to \"_INBOX.api.x.*\"'",
     Violation("subscribe", "_INBOX.api.x.*")),
    ("nats: 'Authorization Violation'", None),
    ("nats: timeout", None),
])  # fmt: skip
@pytest.mark.unit
def test_parse_violation(text: str, expected: Violation | None) -> None:
    assert parse_violation(nats.errors.Error(text)) == expected


@pytest.mark.unit
async def test_a_violation_fails_only_the_calls_it_concerns() -> None:
    errors = ConnectionErrors("api", "api", "_INBOX.api", forward=_ignore)
    with errors.watching("ktrdr.cmd.data.load") as load, errors.watching("ktrdr.store.query") as q:
        await errors.on_error(
            nats.errors.Error('nats: permissions violation for publish to "ktrdr.cmd.data.load"')
        )
        assert load.done()
        assert not q.done()
        assert str(load.result()) == (
            "permission denied: NATS user 'api' may not publish to ktrdr.cmd.data.load"
        )
        # Replies come to the inbox: refusing it fails every call waiting for a reply.
        await errors.on_error(
            nats.errors.Error('nats: permissions violation for subscription to "_inbox.api.abc.*"')
        )
        assert isinstance(q.result(), PermissionDenied)
        assert "_INBOX.api.>" in str(q.result())


@pytest.mark.unit
def test_a_refusal_is_a_configuration_error_and_a_nats_error() -> None:
    errors = ConnectionErrors("probe", None, "_INBOX")
    errors.last = nats.errors.Error("nats: 'Authorization Violation'")
    refused = errors.connect_error(["tls://127.0.0.1:4222"], nats.errors.NoServersError())
    assert isinstance(refused, NatsRefused)
    assert isinstance(refused, ConfigError)  # a service exits 2 with this one line
    assert isinstance(refused, nats.errors.Error)  # callers that catch NATS errors still do
    assert str(refused).startswith(
        "NATS at tls://127.0.0.1:4222 refused a connection with no user: Authorization Violation"
    )


@pytest.mark.integration
async def test_an_unreachable_server_is_named_with_the_reason() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    settings = Settings(nats_url=(url,))
    async with asyncio.timeout(10):
        with pytest.raises(NatsConnectError) as failed:
            await connect(
                settings,
                name="probe",
                max_reconnect_attempts=1,
                reconnect_time_wait=0.05,
                connect_timeout=1,
            )
    assert not isinstance(failed.value, NatsRefused)  # may start working: not a setting
    message = str(failed.value)
    assert message.startswith(f"cannot connect to NATS at {url} as no user: ")
    assert "no servers available" not in message  # nats-py's words, which say nothing


async def _ignore(_: Exception) -> None:
    return None
