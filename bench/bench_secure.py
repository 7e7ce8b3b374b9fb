"""What secure mode costs: TLS with client certificates and per-user permissions.

Two nats-servers in the same run, same machine: the open development server
(``nats.conf``'s shape: JetStream, no users) and ``infra/nats/nats-secure.conf``
(users with least privilege, TLS with ``verify: true``). Each figure is the
secure server's, its baseline the open server's, ratio = secure / open:

* ``page_round_trip``: the api user asks ``ktrdr.store.query`` and the
  data-store user answers with a 256 KiB page (a bars page's size class);
  round trips per second.
* ``bar_publish``: the connector user publishes 16 KiB bar batches to
  ``KTRDR_BARS`` and waits for each JetStream ack; batches per second.
* ``start_check``: what a service does at start: declaring (open) against
  verifying (secure, read-only); milliseconds.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from ktrdr_shared import streams, subjects
from ktrdr_shared.config import Settings
from ktrdr_shared.runtime import connect
from ktrdr_shared.testing.auth import TestUsers
from ktrdr_shared.testing.nats_server import NatsServer
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

SECURE_CONF = Path(__file__).resolve().parents[1] / "infra/nats/nats-secure.conf"
PAGE = b"p" * 256 * 1024
BATCH = b"b" * 16 * 1024


async def _as(settings: Settings, name: str) -> NATS:
    async def report(e: Exception) -> None:
        print(f"# {name}: {e}")

    return await connect(
        settings, name=name, max_reconnect_attempts=0, allow_reconnect=False, error_cb=report
    )


async def _round_trips(api: NATS, store: NATS, seconds: float) -> float:
    async def answer(msg: Msg) -> None:
        await msg.respond(PAGE)

    sub = await store.subscribe(subjects.STORE_QUERY, cb=answer)
    await store.flush()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        await api.request(subjects.STORE_QUERY, b"{}", timeout=10)
        done += 1
    await sub.unsubscribe()
    return done / (time.perf_counter() - started)


async def _publishes(connector: NATS, seconds: float) -> float:
    js = connector.jetstream()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        await js.publish(subjects.bars("AAPL", "1m"), BATCH)
        done += 1
    return done / (time.perf_counter() - started)


async def _measure(secure: bool, seconds: float) -> dict[str, float]:
    users = TestUsers()
    with tempfile.TemporaryDirectory(prefix="ktrdr-bench-secure-") as tmp:
        server = NatsServer(
            store_dir=Path(tmp) / "js",
            config_file=SECURE_CONF if secure else None,
            env=users.server_env() if secure else None,
        )
        server.start()
        try:

            def settings(user: str) -> Settings:
                return (
                    users.settings(user, server.url) if secure else Settings(nats_url=(server.url,))
                )

            admin = await _as(settings("admin"), "bench-admin")
            start_s = time.perf_counter()
            if secure:
                await streams.ensure_all(admin.jetstream())  # the admin's step, not timed
                start_s = time.perf_counter()
                await streams.prepare(
                    admin.jetstream(),
                    *streams.CONSUMERS,
                    buckets=True,
                    declare=False,
                    service="bench",
                )
            else:
                await streams.prepare(
                    admin.jetstream(),
                    *streams.CONSUMERS,
                    buckets=True,
                    declare=True,
                    service="bench",
                )
            start_ms = (time.perf_counter() - start_s) * 1000
            api, store = (
                await _as(settings("api"), "b-api"),
                await _as(settings("data-store"), "b-ds"),
            )
            connector = await _as(settings("ib-connector"), "b-ib")
            trips = await _round_trips(api, store, seconds)
            published = await _publishes(connector, seconds)
            for nc in (api, store, connector, admin):
                await nc.close()
        finally:
            server.stop()
    return {"page_round_trip": trips, "bar_publish": published, "start_check": start_ms}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure the open server, then the secure one, in the same run."""
    seconds = 1.0 if quick else 4.0
    open_ = asyncio.run(_measure(False, seconds))
    secure = asyncio.run(_measure(True, seconds))
    results: list[dict[str, Any]] = []
    for name, unit in (
        ("page_round_trip", "round trips/s"),
        ("bar_publish", "acked batches/s"),
        ("start_check", "ms"),
    ):
        value, baseline = secure[name], open_[name]
        results.append(
            {
                "name": f"secure.{name}",
                "unit": unit,
                "value": round(value, 2),
                "baseline": round(baseline, 2),
                "ratio": round(value / baseline, 3),
                "baseline_name": "the open server (no users, no TLS), same run",
                "quick": quick,
            }
        )
    return results
