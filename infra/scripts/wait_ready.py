"""Wait until NATS and ktrdr services answer ``$SRV.PING.<service>``.

    python infra/scripts/wait_ready.py [--timeout 60] [service ...]

With no service named it waits for the four: ib-connector, data-store,
trainer, api. NATS location and credentials come from the usual ``KTRDR_*``
settings (``KTRDR_NATS_URL``, ``KTRDR_NATS_USER`` + ``KTRDR_NATS_PASSWORD[_FILE]``,
``KTRDR_NATS_TLS_CA|CERT|KEY``),
so the same script is ``just up``'s readiness check (as admin) and a
container's health check (as the service itself, which may ping only itself).
Exits 0 when all answer, 1 naming those that did not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from ktrdr_shared.config import Settings
from ktrdr_shared.nats_errors import NatsRefused
from ktrdr_shared.runtime import connect

SERVICES = ("ib-connector", "data-store", "trainer", "api")
RETRY_S = 0.2  # between pings of a service that is still starting


@dataclass(frozen=True)
class Readiness:
    """What a readiness check found: the services that answered and those that did not."""

    nats_ok: bool
    answered: dict[str, dict[str, Any]]
    missing: dict[str, str]

    @property
    def ok(self) -> bool:
        """Return True when NATS and every service answered."""
        return self.nats_ok and not self.missing


async def connect_until(settings: Settings, deadline: float, gone: Callable[[], str | None]) -> Any:
    """Connect to NATS, retrying until ``deadline`` (loop time) or until ``gone`` says why not.

    Raises:
        TimeoutError: NATS did not accept a connection in time.
        RuntimeError: ``gone`` reported that the server process ended, or NATS refused
            the user (the message names the server, the user and the server's reason).
    """
    loop = asyncio.get_running_loop()

    async def quiet(_: Exception) -> None:  # the failed attempts of a server still starting
        return None

    # One quick attempt per call (nats-py retries a refused first connect forever
    # unless max_reconnect_attempts > 0), so that ``gone`` is asked between attempts.
    options: dict[str, Any] = {
        "allow_reconnect": False,
        "max_reconnect_attempts": 1,
        "reconnect_time_wait": RETRY_S,
        "connect_timeout": 1,
        "error_cb": quiet,
    }
    last: Exception | None = None
    while loop.time() < deadline:
        reason = gone()
        if reason:
            raise RuntimeError(reason)
        try:
            return await connect(settings, name="ktrdr-wait-ready", **options)
        except NatsRefused as e:
            raise RuntimeError(str(e)) from e
        except (nats.errors.Error, OSError, TimeoutError) as e:  # not up yet
            last = e
            await asyncio.sleep(RETRY_S)
    raise TimeoutError(f"NATS at {', '.join(settings.nats_url)} did not answer: {last}")


async def ping_until(
    nc: Any, service: str, deadline: float, gone: Callable[[str], str | None]
) -> dict[str, Any]:
    """Return the service's ``$SRV.PING`` answer, retrying until ``deadline``.

    Raises:
        TimeoutError: no instance answered in time.
        RuntimeError: ``gone`` reported that the service's process ended.
    """
    loop = asyncio.get_running_loop()
    while True:
        reason = gone(service)
        if reason:
            raise RuntimeError(reason)
        try:
            reply = await nc.request(f"$SRV.PING.{service}", b"", timeout=0.5)
            return dict(json.loads(reply.data))
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            if loop.time() >= deadline:
                raise TimeoutError(f"{service} did not answer $SRV.PING.{service}") from None
            await asyncio.sleep(RETRY_S)


async def wait_ready(
    settings: Settings,
    services: Sequence[str],
    timeout_s: float,
    gone: Callable[[str], str | None] = lambda _: None,
) -> Readiness:
    """Wait for NATS, then for each service; never raise for a service that is down.

    Args:
        settings: NATS location and credentials.
        services: micro service names to ping.
        timeout_s: the whole wait, NATS included.
        gone: given a process name (``nats`` or a service), return why it is not
            running (it exited), or None while it may still come up.
    """
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        nc = await connect_until(settings, deadline, lambda: gone("nats"))
    except (TimeoutError, RuntimeError) as e:
        return Readiness(False, {}, {"nats": str(e)})
    answered: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    try:
        results = await asyncio.gather(
            *(ping_until(nc, s, deadline, gone) for s in services), return_exceptions=True
        )
        for service, result in zip(services, results, strict=True):
            if isinstance(result, dict):
                answered[service] = result
            else:
                missing[service] = str(result)
    finally:
        await nc.close()
    return Readiness(True, answered, missing)


def nats_settings() -> Settings:
    """Return the NATS settings of this environment, ignoring other services' variables."""
    return Settings.from_env({k: v for k, v in os.environ.items() if k.startswith("KTRDR_NATS_")})


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, wait, print one line per service; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds in all")
    args = parser.parse_args(argv)
    result = asyncio.run(wait_ready(nats_settings(), args.services, args.timeout))
    for service in result.answered:
        print(f"{service}: up")
    for name, why in result.missing.items():
        print(f"{name}: NOT UP ({why})", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
