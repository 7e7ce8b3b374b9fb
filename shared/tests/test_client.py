"""The client SDK against a real nats-server: commands, requests, errors, job events."""

from __future__ import annotations

import asyncio

import pytest
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import ERROR_CODE_HEADER, ERROR_HEADER, KtrdrClient, request_raw
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import (
    NoReply,
    NoResponders,
    NotFound,
    RetryableError,
    ServiceTimeout,
    UnknownSymbol,
)
from ktrdr_shared.messages import (
    JobAccepted,
    JobCompleted,
    JobKind,
    JobProgress,
    LoadData,
    LoadResult,
    SymbolInfo,
    ValidateSymbol,
)
from ktrdr_shared.runtime import ServiceApp, publish_event
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration


async def test_load_data_publishes_a_deduplicated_command(nc: NATS, js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    client = KtrdrClient(nc)
    job_id = await client.load_data("aapl", "1h", mode="backfill")
    assert len(job_id) == 32
    sub = await js.pull_subscribe(subjects.CMD_DATA_LOAD, durable="peek", stream="KTRDR_COMMANDS")
    [msg] = await sub.fetch(1, timeout=2)
    command = codec.decode(msg.data, LoadData)
    assert command.job_id == job_id
    assert command.symbol == "AAPL"
    assert command.mode == "backfill"
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == job_id


async def test_request_rebuilds_the_services_error(nc: NATS, nats_url: str) -> None:
    app = ServiceApp(
        name="fake-ib",
        version="0.0.1",
        description="test",
        settings=Settings.from_env({"KTRDR_NATS_URL": nats_url}),
    )

    @app.endpoint("validate", subjects.IB_VALIDATE, ValidateSymbol)
    async def validate(request: ValidateSymbol) -> SymbolInfo:
        if request.symbol != "AAPL":
            raise UnknownSymbol(f"IB knows no {request.symbol}", details={"ib_code": 200})
        return SymbolInfo(
            symbol="AAPL",
            instrument_type="STK",
            exchange="SMART",  # type: ignore[arg-type]
            currency="USD",
            time_zone="US/Eastern",
        )

    await app.start()
    client = KtrdrClient(nc, timeout_s=2)
    try:
        info = await client.request(subjects.IB_VALIDATE, ValidateSymbol(symbol="AAPL"), SymbolInfo)
        assert info.exchange == "SMART"
        with pytest.raises(UnknownSymbol, match="IB knows no XYZZY") as caught:
            await client.request(subjects.IB_VALIDATE, ValidateSymbol(symbol="XYZZY"), SymbolInfo)
        assert caught.value.details == {"ib_code": 200}
    finally:
        await app.stop()


async def test_no_responders_and_timeouts_are_retryable(nc: NATS) -> None:
    client = KtrdrClient(nc, timeout_s=0.3)
    with pytest.raises(NoResponders, match=r"no service is answering ktrdr\.ib\.status"):
        await client.request(subjects.IB_STATUS, {}, SymbolInfo)
    silent = await nc.subscribe("ktrdr.silent")  # subscribed, never answers
    with pytest.raises(NoReply) as caught:
        await client.request("ktrdr.silent", {}, SymbolInfo)
    assert isinstance(caught.value, ServiceTimeout) and caught.value.retryable
    assert issubclass(NoResponders, RetryableError)
    await silent.unsubscribe()


async def test_request_raw_answers_bytes_and_reads_a_bare_error_reply(nc: NATS) -> None:
    async def answer(msg: Msg) -> None:
        if msg.data == b"missing":  # a micro error reply without an ErrorReply body
            headers = {ERROR_CODE_HEADER: "404", ERROR_HEADER: "no such thing"}
            await nc.publish(msg.reply, b"", headers=headers)
        else:
            await msg.respond(b"\x00raw " + msg.data)

    sub = await nc.subscribe("ktrdr.test.raw", cb=answer)
    client = KtrdrClient(nc, timeout_s=2)
    reply = await client.request_raw("ktrdr.test.raw", b"bytes")
    assert reply.data == b"\x00raw bytes"
    encoded = await request_raw(nc, "ktrdr.test.raw", {"a": 1}, timeout_s=2)
    assert encoded.data == b'\x00raw {"a":1}'
    with pytest.raises(NotFound, match="no such thing"):
        await client.request_raw("ktrdr.test.raw", b"missing")
    await sub.unsubscribe()


async def test_job_events_replays_history_then_follows_to_the_end(
    nc: NATS, js: JetStreamContext
) -> None:
    await streams.ensure_streams(js)
    client = KtrdrClient(nc)
    job = "feedfacefeedfacefeedfacefeedface"
    accepted = JobAccepted(job_id=job, kind=JobKind.DATA_LOAD)
    await publish_event(js, accepted)

    seen: list[str] = []
    past_history = asyncio.Event()

    async def follow() -> None:
        async for event in client.job_events(job):
            seen.append(type(event).__name__)
            past_history.set()

    follower = asyncio.create_task(follow())
    await asyncio.wait_for(past_history.wait(), timeout=10)  # what follows arrives live
    assert seen == ["JobAccepted"]
    later = [
        JobProgress(job_id=job, done=1, total=2, unit="segments"),
        JobCompleted(
            job_id=job,
            result=LoadResult(
                fetched_bars=1,
                cached_before=0,
                gaps_analyzed=1,
                segments_fetched=1,
                ib_requests_made=1,
            ),
        ),
    ]
    for event in later:
        await publish_event(js, event, kind=JobKind.DATA_LOAD)
    await asyncio.wait_for(follower, timeout=10)
    assert seen == ["JobAccepted", "JobProgress", "JobCompleted"]

    history = [type(e).__name__ async for e in client.job_events(job, follow=False)]
    assert history == seen
