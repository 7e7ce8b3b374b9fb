"""Declaring JetStream objects is one step; services verify what they need and name drift.

Issue 15: a service user that may update a stream can empty the event log
(``max_msgs=1``) or graft a source onto the bar stream. Where there are users,
only the admin declares (``python -m ktrdr_shared.declare``); a service checks
at start and exits naming each difference and the command that fixes it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import pytest
from ktrdr_shared import streams
from ktrdr_shared.config import Settings
from ktrdr_shared.consumer import fetch_batches
from ktrdr_shared.declare import declare, main
from ktrdr_shared.errors import ConfigError
from nats.js import JetStreamContext
from nats.js.api import StreamSource

pytestmark = pytest.mark.integration


async def test_declared_objects_verify_clean(js: JetStreamContext) -> None:
    await streams.prepare(js, *streams.CONSUMERS, buckets=True, declare=True, service="t")
    assert await streams.verify(js, streams.CONSUMERS, buckets=True) == []
    # and verifying (what a service user does) then passes at once
    await streams.prepare(
        js, *streams.CONSUMERS, buckets=True, declare=False, service="t", wait_s=0
    )


async def test_an_emptied_event_log_limit_is_drift_that_stops_the_service(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await streams.ensure_all(js)
    await js.update_stream(streams.EVENTS.evolve(max_msgs=1))  # the attack
    looks = _count_verifications(monkeypatch)
    with pytest.raises(ConfigError) as caught:
        await streams.prepare(js, declare=False, service="api", wait_s=30)
    assert len(looks) == 1  # drift fails at the first look: it is not waited for
    message = caught.value.message
    assert "stream KTRDR_EVENTS max_msgs is 1, declared -1" in message
    assert message.startswith("api: JetStream is not as declared")
    assert "python -m ktrdr_shared.declare" in message


async def test_a_grafted_source_and_a_changed_consumer_are_named(js: JetStreamContext) -> None:
    await streams.ensure_all(js)
    await js.add_stream(name="EVIL", subjects=["evil.>"])
    await js.update_stream(streams.BARS.evolve(sources=[StreamSource(name="EVIL")]))
    await js.add_consumer(
        streams.COMMANDS.name or "", streams.TRAIN_COMMANDS.config.evolve(ack_wait=1.0)
    )
    problems = [str(p) for p in await streams.verify(js, [streams.TRAIN_COMMANDS])]
    assert any(p.startswith("stream KTRDR_BARS sources is") for p in problems), problems
    assert "consumer KTRDR_COMMANDS > trainer-commands ack_wait is 1.0, declared 300.0" in problems


async def test_a_verifying_service_waits_for_the_admin_then_starts(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    looks = _count_verifications(monkeypatch)
    waiting = asyncio.create_task(
        streams.prepare(
            js, streams.DATA_COMMANDS, buckets=True, declare=False, service="data-store", wait_s=20
        )
    )
    await asyncio.wait_for(looks.again.wait(), 10)  # it found things missing, waited, looked again
    assert not waiting.done()  # nothing declared yet: it waits instead of creating
    assert all(problems for problems in looks) and await js.streams_info() == []
    await streams.ensure_all(js)
    await asyncio.wait_for(waiting, 10)


async def test_what_is_still_missing_after_the_wait_is_named(js: JetStreamContext) -> None:
    with pytest.raises(ConfigError, match=r"stream KTRDR_COMMANDS is missing"):
        await streams.prepare(js, declare=False, service="trainer", wait_s=0.3)


async def test_the_declare_command_fixes_drift_and_check_reports_it(
    js: JetStreamContext, nats_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(nats_url=(nats_url,))
    assert await declare(settings, check=True) == 1  # nothing declared yet
    assert "differs: stream KTRDR_COMMANDS is missing" in capsys.readouterr().out
    assert await declare(settings, check=False) == 0
    await js.update_stream(streams.EVENTS.evolve(max_msgs=1))
    assert await declare(settings, check=True) == 1
    assert "differs: stream KTRDR_EVENTS max_msgs is 1, declared -1" in capsys.readouterr().out
    assert await declare(settings, check=False) == 0
    out = capsys.readouterr().out
    assert "fixing: stream KTRDR_EVENTS max_msgs is 1" in out and "(1 fixed)" in out
    assert (await js.stream_info("KTRDR_EVENTS")).config.max_msgs == -1
    assert await declare(settings, check=True) == 0


async def test_a_non_declaring_consumer_waits_for_its_durable(
    js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await streams.ensure_streams(js)
    stopping = asyncio.Event()
    lookups = _count_consumer_lookups(js, monkeypatch)
    batches = fetch_batches(
        js, streams.TRAIN_COMMANDS, stopping, fetch_timeout_s=0.5, declare=False
    )
    first = asyncio.ensure_future(anext(batches))
    await asyncio.wait_for(lookups.again.wait(), 10)  # missing, waited, asked again
    assert not first.done()
    names = [c.name for c in await js.consumers_info(streams.COMMANDS.name or "")]
    assert names == []  # it did not create the consumer it may not manage
    await streams.ensure_consumer(js, streams.TRAIN_COMMANDS)
    await js.publish("ktrdr.cmd.train.start", b"{}")
    messages = await asyncio.wait_for(first, 15)
    assert [m.subject for m in messages] == ["ktrdr.cmd.train.start"]
    stopping.set()
    await batches.aclose()


def test_a_service_exits_2_naming_the_drift(nats_url: str) -> None:
    pytest.importorskip("ktrdr_data_store", reason="runs the data-store, another package")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KTRDR_")}
    env |= {
        "KTRDR_NATS_URL": nats_url,
        "KTRDR_NATS_DECLARE": "false",
        "KTRDR_NATS_DECLARE_WAIT_S": "0.5",
        "KTRDR_DATA_DIR": "/tmp/unused",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ktrdr_data_store"],
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("data-store: configuration error: JetStream is not as declared: ")
    assert "stream KTRDR_COMMANDS is missing" in last and "ktrdr_shared.declare" in last


def test_the_declare_command_without_a_server_fails_clearly(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KTRDR_NATS_URL", "nats://127.0.0.1:1")
    assert main([]) == 1
    assert "declare: failed" in capsys.readouterr().err


class _Looks(list[object]):
    """What each call of a wrapped function returned; ``again`` is set at the second call."""

    def __init__(self) -> None:
        super().__init__()
        self.again = asyncio.Event()

    def saw(self, result: object) -> None:
        self.append(result)
        if len(self) >= 2:
            self.again.set()


def _count_verifications(monkeypatch: pytest.MonkeyPatch) -> _Looks:
    """Record the problems each ``streams.verify`` that ``prepare`` makes returns."""
    looks, verify = _Looks(), streams.verify

    async def counted(*args: Any, **kwargs: Any) -> list[streams.Problem]:
        problems = await verify(*args, **kwargs)
        looks.saw(problems)
        return problems

    monkeypatch.setattr(streams, "verify", counted)
    return looks


def _count_consumer_lookups(js: JetStreamContext, monkeypatch: pytest.MonkeyPatch) -> _Looks:
    """Record each ``consumer_info`` a non-declaring consumer asks (the error, or the info)."""
    looks, consumer_info = _Looks(), js.consumer_info

    async def counted(*args: Any, **kwargs: Any) -> Any:
        try:
            info = await consumer_info(*args, **kwargs)
        except Exception as e:
            looks.saw(e)
            raise
        looks.saw(info)
        return info

    monkeypatch.setattr(js, "consumer_info", counted)
    return looks
