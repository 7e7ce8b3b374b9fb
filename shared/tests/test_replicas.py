"""The replicas knob: KTRDR_NATS_REPLICAS reaches every stream and bucket ensure_* declares."""

from __future__ import annotations

import nats.js.errors
import pytest
from ktrdr_shared import streams
from ktrdr_shared.errors import ConfigError
from nats.js import JetStreamContext


@pytest.mark.unit
@pytest.mark.parametrize(("raw", "expected"), [(None, 1), ("1", 1), ("3", 3), (" 5 ", 5)])
def test_replicas_come_from_the_environment(raw: str | None, expected: int) -> None:
    env = {} if raw is None else {"KTRDR_NATS_REPLICAS": raw}
    assert streams.configured_replicas(env) == expected


@pytest.mark.unit
@pytest.mark.parametrize("raw", ["0", "6", "three", "-1", "2.5", ""])
def test_a_bad_replica_count_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match=r"KTRDR_NATS_REPLICAS=.*whole number from 1 to 5"):
        streams.configured_replicas({"KTRDR_NATS_REPLICAS": raw})


@pytest.mark.integration
async def test_a_single_server_declares_everything_at_one_replica(js: JetStreamContext) -> None:
    await streams.ensure_all(js)
    await streams.ensure_all(js)  # idempotent with the explicit replica count too
    for config in streams.STREAMS:
        info = await js.stream_info(config.name or "")
        assert info.config.num_replicas == 1
    for bucket in ("KV_ktrdr_symbols", "KV_ktrdr_gateways", "OBJ_ktrdr_models"):
        assert (await js.stream_info(bucket)).config.num_replicas == 1


@pytest.mark.integration
async def test_more_replicas_than_servers_is_refused_by_the_server(js: JetStreamContext) -> None:
    # One server cannot hold three copies: the declaration fails loudly instead of
    # silently keeping one, so a cluster setting on a single node is noticed at start.
    with pytest.raises(nats.js.errors.APIError, match=r"(?i)replicas"):
        await streams.ensure_streams(js, replicas=3)
