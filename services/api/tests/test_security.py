"""The API key: the gateway refuses to start off loopback without one; with one, every route
but /health requires it (X-API-Key or a bearer token). Also ``python -m ktrdr_api`` under its
production server (granian): it serves, enforces the key and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from ktrdr_api.config import ApiSettings, check_exposure, is_loopback, key_bits
from ktrdr_api.security import FREE_FAILURES, FailedKeyThrottle
from ktrdr_api.testing import api_settings, serve_api
from ktrdr_shared.errors import ConfigError
from ktrdr_shared.testing.nats_server import free_port

KEY = "Xq7dV2mPz9LkR4tWc8NbY3hJf6GsA1uE5oKiT0vBnQw"  # 43 url-safe characters: ~256 bits


@pytest.mark.unit
@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("gateway.example", False)],
)  # fmt: skip
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.unit
def test_off_loopback_without_a_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"KTRDR_API_HOST=0\.0\.0\.0 is reachable from other"):
        check_exposure(ApiSettings.from_env({"KTRDR_API_HOST": "0.0.0.0"}))
    check_exposure(ApiSettings.from_env({"KTRDR_API_HOST": "0.0.0.0", "KTRDR_API_KEY": KEY}))
    check_exposure(ApiSettings.from_env({}))  # loopback needs no key
    with pytest.raises(ConfigError, match="KTRDR_API_KEY is empty"):
        check_exposure(ApiSettings.from_env({"KTRDR_API_KEY": ""}))


@pytest.fixture
async def exposed(nats_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway configured for 0.0.0.0 with a key (served here on loopback only)."""
    settings = api_settings(nats_url, KTRDR_API_HOST="0.0.0.0", KTRDR_API_KEY=KEY)
    async with serve_api(settings) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


@pytest.mark.integration
async def test_off_loopback_every_route_but_health_requires_the_key(
    exposed: httpx.AsyncClient,
) -> None:
    refused = await exposed.get("/api/v1/jobs")
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "X-API-Key" in refused.json()["detail"]
    wrong = await exposed.get("/api/v1/jobs", headers={"X-API-Key": "guess"})
    assert wrong.status_code == 401
    assert "does not match" in wrong.json()["detail"]
    assert (await exposed.post("/api/v1/data/load", json={})).status_code == 401
    assert (await exposed.get("/schema/openapi.json")).status_code == 401

    assert (await exposed.get("/health")).status_code == 200
    by_header = await exposed.get("/api/v1/jobs", headers={"X-API-Key": KEY})
    assert by_header.status_code == 200
    by_bearer = await exposed.get("/api/v1/jobs", headers={"Authorization": f"Bearer {KEY}"})
    assert by_bearer.status_code == 200
    schema = (await exposed.get("/schema/openapi.json", headers={"X-API-Key": KEY})).json()
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"
    assert {"apiKey": []} in schema["security"]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("key", "refused"),
    [("s3cret-key", True), ("x", True), ("a" * 27, True), (KEY[:21], True), (KEY[:22], False),
     ("0123456789abcdef0123456789abcdef", False), (KEY, False)],
)  # fmt: skip
def test_off_loopback_a_weak_key_is_refused(key: str, refused: bool) -> None:
    settings = ApiSettings.from_env({"KTRDR_API_HOST": "0.0.0.0", "KTRDR_API_KEY": key})
    if refused:
        with pytest.raises(ConfigError, match=r"KTRDR_API_KEY is too weak .*at least 128 bits"):
            check_exposure(settings)
    else:
        check_exposure(settings)
    check_exposure(ApiSettings.from_env({"KTRDR_API_KEY": key}))  # loopback: any key will do
    assert (key_bits(key) < 128) is refused


@pytest.mark.unit
def test_wrong_keys_lock_a_client_out_for_exponentially_longer() -> None:
    now = [0.0]
    throttle = FailedKeyThrottle(clock=lambda: now[0])
    for _ in range(FREE_FAILURES):
        throttle.failed("10.0.0.9")
        assert throttle.retry_after_s("10.0.0.9") == 0
    lockouts = []
    for _ in range(5):
        throttle.failed("10.0.0.9")
        lockouts.append(throttle.retry_after_s("10.0.0.9"))
    assert lockouts == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert throttle.retry_after_s("10.0.0.10") == 0  # per client
    for _ in range(20):
        throttle.failed("10.0.0.9")
    assert throttle.retry_after_s("10.0.0.9") == 60.0
    throttle.succeeded("10.0.0.9")
    assert throttle.retry_after_s("10.0.0.9") == 0


@pytest.mark.integration
async def test_a_burst_of_wrong_keys_is_slowed_with_429(exposed: httpx.AsyncClient) -> None:
    statuses = [
        (await exposed.get("/api/v1/jobs", headers={"X-API-Key": f"guess-{i}"}))
        for i in range(FREE_FAILURES + 3)
    ]
    assert [r.status_code for r in statuses[: FREE_FAILURES + 1]] == [401] * (FREE_FAILURES + 1)
    locked = statuses[-1]
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) >= 1
    assert locked.json()["code"] == "too_many_failures"
    # the right key is no way around a lockout
    assert (await exposed.get("/api/v1/jobs", headers={"X-API-Key": KEY})).status_code == 429


@pytest.mark.integration
async def test_health_without_the_key_shows_the_status_alone(exposed: httpx.AsyncClient) -> None:
    bare = await exposed.get("/health")
    assert bare.status_code == 200
    assert set(bare.json()) == {"status"}
    assert bare.json()["status"] in ("ok", "degraded")
    wrong = await exposed.get("/health", headers={"X-API-Key": "guess"})
    assert set(wrong.json()) == {"status"}
    full = (await exposed.get("/health", headers={"X-API-Key": KEY})).json()
    assert {"status", "version", "nats", "services"} <= set(full)
    assert full["nats"]["server"]


def _env(nats_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    return env | {"KTRDR_NATS_URL": nats_url, "KTRDR_LOG_LEVEL": "WARNING", **extra}


@pytest.mark.integration
async def test_python_m_ktrdr_api_refuses_off_loopback_without_a_key(nats_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api",
        env=_env(nats_url, KTRDR_API_HOST="0.0.0.0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert err.decode().strip().splitlines() == [
        "api: configuration error: KTRDR_API_HOST=0.0.0.0 is reachable from other machines: set "
        "KTRDR_API_KEY (or KTRDR_API_KEY_FILE) so that every route but /health requires it, or "
        "bind 127.0.0.1"
    ]


@pytest.mark.integration
async def test_python_m_ktrdr_api_exits_naming_undeclared_streams_where_it_may_only_verify(
    nats_url: str,
) -> None:
    """Where NATS has users the api may not declare; before any worker starts it says so."""
    env = _env(
        nats_url,
        KTRDR_NATS_DECLARE="false",
        KTRDR_NATS_DECLARE_WAIT_S="0.3",
        KTRDR_API_PORT=str(free_port()),
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    last = err.decode().strip().splitlines()[-1]
    assert last.startswith(
        "api: configuration error: JetStream is not as declared: stream KTRDR_COMMANDS is missing"
    )
    assert last.endswith("Fix: python -m ktrdr_shared.declare (as the NATS admin; `just declare`)")
    assert "Traceback" not in err.decode()


@pytest.mark.integration
@pytest.mark.e2e
async def test_python_m_ktrdr_api_serves_under_granian_and_stops_on_sigterm(
    nats_url: str,
) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api",
        env=_env(nats_url, KTRDR_API_PORT=str(port), KTRDR_API_KEY=KEY),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            assert set((await _when_up(http)).keys()) == {"status"}  # without the key
            health = (await http.get("/health", headers={"X-API-Key": KEY})).json()
            assert health["nats"]["status"] == "up"
            assert (await http.get("/api/v1/jobs")).status_code == 401
            ok = await http.get("/api/v1/jobs", headers={"Authorization": f"Bearer {KEY}"})
            assert ok.status_code == 200 and ok.json() == {"jobs": []}
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == 0, output.decode()
        assert b"Traceback" not in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _when_up(http: httpx.AsyncClient) -> dict[str, object]:
    async with asyncio.timeout(60):
        while True:
            try:
                response = await http.get("/health")
                if response.status_code == 200:
                    return dict(response.json())
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
