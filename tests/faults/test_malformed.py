"""Malformed payloads on every ktrdr subject: each service answers or records an error, serves on.

Garbage bytes, the wrong JSON shape, wrong types and a payload near the server's size limit go
to every command subject, the bars stream, the job events the services follow, and every
request/reply endpoint, with the whole stack running as processes. Requests must be answered
with an error reply (not silence), commands that carry a job id must end in a failure event
naming the problem, bad bar batches must be reported as ``batch_rejected``; afterwards every
service still answers and a real load still completes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import ERROR_CODE_HEADER, KtrdrClient, new_job_id
from ktrdr_shared.messages import ErrorReply, JobCompleted, JobFailed, JobKind, SegmentFailed
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import Stack
from nats.aio.client import Client as NATS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SERVICES = ("ib-connector", "data-store", "trainer", "api")
REQUEST_SUBJECTS = [
    subjects.IB_STATUS, subjects.IB_VALIDATE, subjects.IB_HEAD_TIMESTAMP, subjects.STORE_QUERY,
    subjects.STORE_COVERAGE, subjects.STORE_DATASETS, subjects.TRAIN_STATUS, subjects.TRAIN_MODELS,
]  # fmt: skip
NO_FIELDS = {
    subjects.IB_STATUS,
    subjects.STORE_DATASETS,
    subjects.TRAIN_STATUS,
    subjects.TRAIN_MODELS,
}
COMMAND_SUBJECTS = [subjects.CMD_DATA_LOAD, subjects.CMD_IB_FETCH, subjects.CMD_TRAIN_START]


def bad_payloads(max_payload: int) -> dict[str, bytes]:
    return {
        "garbage": b"\x00\xff\xfe not json {{{",
        "wrong_shape": b"[1, 2, 3]",
        "wrong_types": json.dumps(
            {"symbol": 5, "timeframe": [], "start": "yesterday", "limit": "many", "symbols": "AAPL"}
        ).encode(),
        "huge": json.dumps({"symbol": "A" * (max_payload - 200)}).encode(),
    }


@pytest.fixture
async def stack(nats_server: NatsServer, nc: NATS, tmp_path: Path) -> AsyncIterator[Stack]:
    running = Stack(nats_server.url, tmp_path, services=SERVICES)
    try:
        await running.up(nc, timeout_s=90)
        yield running
    finally:
        running.down()


async def test_every_subject_survives_bad_payloads(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    payloads = bad_payloads(nc.max_payload)

    # request/reply: every bad payload gets an error reply naming the problem, never silence
    for subject in REQUEST_SUBJECTS:
        for name, payload in payloads.items():
            reply = await nc.request(subject, payload, timeout=10)
            if subject in NO_FIELDS and name in ("wrong_types", "huge"):
                # an object with unknown fields is a valid field-less request (wire messages
                # ignore unknown fields so old services survive new clients): it is answered
                assert not (reply.headers and ERROR_CODE_HEADER in reply.headers), (subject, name)
                continue
            assert reply.headers and reply.headers.get(ERROR_CODE_HEADER) == "400", (subject, name)
            error = codec.decode(reply.data, ErrorReply)
            assert error.code == "invalid_request" and error.message, (subject, name)

    # commands: a bad command with a job id ends that job with a failure naming the field
    failing = {}
    for subject in COMMAND_SUBJECTS:
        for payload in payloads.values():
            await js.publish(subject, payload)
        job_id = new_job_id()
        wrong = {
            "job_id": job_id,
            "segment_id": "s1",
            "symbol": "AAPL",
            "symbols": ["AAPL"],
            "timeframe": "2h",
        }
        await js.publish(subject, json.dumps(wrong).encode())
        failing[subject] = job_id
    for subject, job_id in failing.items():
        event = await wait_for_job_event(js, job_id, {"failed", "segment_failed"}, timeout_s=60)
        assert isinstance(event, JobFailed | SegmentFailed), (subject, event)
        assert "timeframe" in event.message, (subject, event.message)

    # bar batches: each bad one is terminated and reported, ingest goes on
    rejected = await nc.subscribe("ktrdr.evt.store.batch_rejected")
    for payload in payloads.values():
        await js.publish(subjects.bars("AAPL", "1m"), payload)
    for _ in payloads:
        await rejected.next_msg(timeout=30)

    # events the services follow: cancel requests and job events, malformed
    for payload in payloads.values():
        for kind in JobKind:
            await js.publish(subjects.job_event(kind, new_job_id(), "cancel_requested"), payload)
            await js.publish(subjects.job_event(kind, new_job_id(), "accepted"), payload)

    # everyone still serves: pings, the API, and a real load end to end
    await stack.wait_ready(nc, SERVICES, timeout_s=30)
    for child in stack.children.values():
        assert child.running, child.log_tail()
    june = dt.datetime(2024, 6, 3, tzinfo=dt.UTC)
    job_id = await KtrdrClient(nc).load_data("AAPL", "1d", start=june)
    done = await wait_for_job_event(js, job_id, {"completed", "failed"}, timeout_s=60)
    assert isinstance(done, JobCompleted), done
    # and the gateway reports the whole system healthy: NATS up, every service up, IB connected
    async with httpx.AsyncClient(timeout=10) as http:
        health = await http.get(f"{stack.api_url}/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok", body
    assert body["nats"]["status"] == "up"
    assert {s["name"]: s["status"] for s in body["services"]} == {
        "ib-connector": "up",
        "data-store": "up",
        "trainer": "up",
    }, body["services"]
