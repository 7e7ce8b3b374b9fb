"""/api/v1/jobs from the event log: status folded from a job's events, the list, cancel, and
server-sent events that replay the history, then go live, and end with the job.

The job's events are published here as the data-store would publish them (a scripted
sequence on the real event log), so every step of a job can be taken at the test's pace.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest
from ktrdr_api.cli.api_client import SseEvent, parse_sse
from ktrdr_api.testing import load_events, publish_all
from ktrdr_shared import streams, subjects
from ktrdr_shared.client import new_job_id
from ktrdr_shared.messages import (
    CancelRequested,
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobEvent,
    JobKind,
    JobProgress,
    LoadResult,
    ProgressReason,
    SegmentFailed,
    SegmentFetched,
    SegmentProgress,
    SegmentsDispatched,
)
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.testing.events import wait_for_job_event
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration


async def sse(http: httpx.AsyncClient, path: str, **headers: str) -> AsyncIterator[SseEvent]:
    """Yield the events of an SSE response until the server ends the stream."""
    async with http.stream("GET", path, headers={"Accept": "text/event-stream", **headers}) as r:
        assert r.status_code == 200, await r.aread()
        assert r.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        async for line in r.aiter_lines():
            lines.append(line)
            if line == "":
                for event in parse_sse(iter(lines)):
                    yield event
                lines = []


async def test_a_jobs_status_is_the_fold_of_its_events(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    events = load_events(job, segments=3, bars=40)
    await publish_all(js, events[:4])  # accepted, planned, one segment and its progress
    running = (await http.get(f"/api/v1/jobs/{job}")).json()
    assert running["status"] == "running"
    assert (running["segments_planned"], running["segments_fetched"]) == (3, 1)
    assert running["progress"] == {
        "done": 1.0,
        "total": 3.0,
        "unit": "segments",
        "percent": 33.3,
        "message": "",
        "reason": None,
        "since": None,
        "until": None,
        "eta": None,
        "rate": None,
        "bars": 40,
        "requests_done": 1,
        "requests_planned": None,
    }
    assert running["result"] is None

    await publish_all(js, events[4:])
    done = (await http.get(f"/api/v1/jobs/{job}")).json()
    assert done["status"] == "completed"
    assert done["kind"] == "data_load"
    assert done["result"]["fetched_bars"] == 120
    assert done["bars_fetched"] == 120 and done["ib_requests"] == 3
    assert done["execution_time_s"] == 4.0
    assert done["created"] == "2024-06-28T22:00:00Z"
    assert done["events"] == len(events)


async def test_progress_says_why_and_when_and_sse_streams_the_new_events(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    t0 = datetime(2024, 6, 28, 22, 0, tzinfo=UTC)
    note = "1s bars before 2024-01-01 are older than IB's six-month limit: not requested"
    accepted, planned = load_events(job, segments=2, bars=40)[:2]
    planned = msgspec.structs.replace(planned, notes=[note])
    live: list[JobEvent] = [
        accepted,
        planned,
        SegmentsDispatched(job_id=job, ts=t0, segment_ids=["s0", "s1"]),
        SegmentProgress(
            job_id=job,
            ts=t0,
            segment_id="s0",
            state=ProgressReason.PACING,
            chunks=4,
            chunks_done=1,
            bars=40,
            ib_requests=2,
            until=t0 + timedelta(seconds=70),
        ),
        JobProgress(
            job_id=job,
            ts=t0,
            done=20,
            total=100,
            unit="percent",
            reason=ProgressReason.PACING,
            until=t0 + timedelta(seconds=70),
            eta=t0 + timedelta(minutes=5),
            rate=0.0,
            bars=40,
            requests_done=2,
            requests_planned=8,
        ),
    ]
    await publish_all(js, live)
    running = (await http.get(f"/api/v1/jobs/{job}")).json()
    assert running["progress"] | {"message": ""} == {
        "done": 20.0,
        "total": 100.0,
        "unit": "percent",
        "percent": 20.0,
        "message": "",
        "reason": "pacing",
        "since": None,
        "until": "2024-06-28T22:01:10Z",
        "eta": "2024-06-28T22:05:00Z",
        "rate": 0.0,
        "bars": 40,
        "requests_done": 2,
        "requests_planned": 8,
    }
    assert running["notes"] == [note]
    assert (running["bars_fetched"], running["ib_requests"]) == (40, 2)
    listed = (await http.get("/api/v1/jobs")).json()["jobs"]
    assert [j["progress"]["reason"] for j in listed if j["job_id"] == job] == ["pacing"]

    result = LoadResult(
        fetched_bars=40, cached_before=7, gaps_analyzed=2, segments_fetched=1, ib_requests_made=5
    )
    ended: list[JobEvent] = [
        SegmentFetched(job_id=job, ts=t0, segment_id="s0", chunks=4, bars=100, ib_requests=4),
        SegmentFailed(
            job_id=job,
            ts=t0,
            segment_id="s1",
            code="cancelled",
            message="stopped",
            chunks_done=1,
            bars=25,
            ib_requests=1,
        ),
        JobCancelled(job_id=job, ts=t0 + timedelta(seconds=9), reason="user", result=result),
    ]
    await publish_all(js, ended)
    cancelled = (await http.get(f"/api/v1/jobs/{job}")).json()
    assert cancelled["status"] == "cancelled" and cancelled["result"]["ib_requests_made"] == 5
    assert (cancelled["bars_fetched"], cancelled["ib_requests"]) == (125, 5)
    progress = cancelled["progress"]
    assert (progress["reason"], progress["bars"], progress["requests_done"]) == ("done", 125, 5)
    assert (progress["until"], progress["eta"]) == (None, None)
    streamed = [e async for e in sse(http, f"/api/v1/jobs/{job}/events")]
    assert [e.event for e in streamed] == [event_type(e) for e in live + ended]
    assert streamed[3].data["until"] == "2024-06-28T22:01:10Z"
    assert streamed[-1].data["result"]["fetched_bars"] == 40


async def test_an_unknown_job_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/api/v1/jobs/{new_job_id()}")
    assert response.status_code == 404
    assert "the event log holds none of its events" in response.json()["detail"]


async def test_the_list_filters_by_kind_and_status(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    load, training = new_job_id(), new_job_id()
    await publish_all(js, load_events(load))
    await publish_all(
        js,
        [
            JobAccepted(
                job_id=training,
                kind=JobKind.TRAINING,
                params={"symbols": ["AAPL", "MSFT"], "timeframe": "1h"},
            ),
            EpochCompleted(
                job_id=training,
                epoch=1,
                epochs=4,
                train_loss=1.0,
                val_loss=1.0,
                val_accuracy=0.4,
                samples_per_s=1e4,
                device="cpu",
            ),
        ],
        kind=JobKind.TRAINING,
    )
    everything = (await http.get("/api/v1/jobs")).json()["jobs"]
    assert {j["job_id"]: j["status"] for j in everything} == {
        load: "completed",
        training: "running",
    }
    trainings = (await http.get("/api/v1/jobs", params={"kind": "training"})).json()["jobs"]
    assert [(j["job_id"], j["symbol"], j["progress"]["percent"]) for j in trainings] == [
        (training, "AAPL,MSFT", 25.0)
    ]
    completed = (await http.get("/api/v1/jobs", params={"status": "completed"})).json()["jobs"]
    assert [j["job_id"] for j in completed] == [load]
    assert (await http.get("/api/v1/jobs", params={"limit": 1})).json()["jobs"][0]["job_id"] in (
        load,
        training,
    )


async def test_cancel_publishes_cancel_requested_and_refuses_an_ended_job(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    await publish_all(js, load_events(job)[:2])
    response = await http.post(f"/api/v1/jobs/{job}/cancel", json={"reason": "wrong symbol"})
    assert response.status_code == 202
    assert response.json()["status"] == "cancelling"
    logged = await wait_for_job_event(js, job, {"cancel_requested"}, timeout_s=5)
    assert isinstance(logged, CancelRequested) and logged.reason == "wrong symbol"

    await publish_all(js, [JobCancelled(job_id=job, reason="wrong symbol")])
    again = await http.post(f"/api/v1/jobs/{job}/cancel")
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]
    assert (await http.post(f"/api/v1/jobs/{new_job_id()}/cancel")).status_code == 404


async def test_cancel_publishes_under_the_kind_of_the_job(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    load, training = new_job_id(), new_job_id()
    await publish_all(js, load_events(load)[:2])
    await publish_all(
        js, [JobAccepted(job_id=training, kind=JobKind.TRAINING)], kind=JobKind.TRAINING
    )
    for job, kind in ((load, JobKind.DATA_LOAD), (training, JobKind.TRAINING)):
        assert (await http.post(f"/api/v1/jobs/{job}/cancel")).status_code == 202
        logged = await wait_for_job_event(js, job, {"cancel_requested"}, timeout_s=5, kind=kind)
        assert isinstance(logged, CancelRequested)
        other = JobKind.TRAINING if kind is JobKind.DATA_LOAD else JobKind.DATA_LOAD
        with pytest.raises(TimeoutError):
            await wait_for_job_event(js, job, {"cancel_requested"}, timeout_s=0.5, kind=other)


async def test_sse_mid_job_replays_the_history_then_goes_live_and_ends_with_the_job(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    events = load_events(job, segments=2)
    await publish_all(js, events[:3])  # the client connects mid-job
    seen: list[SseEvent] = []
    stream = sse(http, f"/api/v1/jobs/{job}/events")
    async for event in stream:
        seen.append(event)
        if len(seen) == 3:  # the history, and nothing more exists yet
            await publish_all(js, events[3:])
    assert [e.event for e in seen] == [event_type(e) for e in events]
    assert seen[-1].event == "completed"  # ...and the stream ended after it
    ids = [e.id or 0 for e in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert seen[2].data["segment_id"] == "s0"
    assert seen[-1].data["result"]["fetched_bars"] == 200


async def test_sse_resumes_after_last_event_id(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    events = load_events(job, segments=1)
    await publish_all(js, events)
    first = [e async for e in sse(http, f"/api/v1/jobs/{job}/events")]
    assert len(first) == len(events)
    resumed = [
        e
        async for e in sse(
            http, f"/api/v1/jobs/{job}/events", **{"Last-Event-ID": str(first[1].id)}
        )
    ]
    assert [e.id for e in resumed] == [e.id for e in first[2:]]


async def followed_live(js: JetStreamContext, job: str) -> None:
    """Return once the gateway follows ``job`` live (its ordered push consumer exists)."""
    async with asyncio.timeout(10):
        while True:
            consumers = await js.consumers_info(streams.EVENTS.name)
            if any(
                c.config.deliver_subject and c.config.filter_subject == subjects.job_events(job)
                for c in consumers
            ):
                return
            await asyncio.sleep(0.01)


async def test_sse_waits_for_a_just_submitted_jobs_first_event(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    events = load_events(job, segments=1)

    async def publish_soon() -> None:
        await followed_live(js, job)  # the job is accepted after the client connected
        await publish_all(js, events)

    publisher = asyncio.create_task(publish_soon())
    seen = [e.event async for e in sse(http, f"/api/v1/jobs/{job}/events")]
    await publisher
    assert seen == [event_type(e) for e in events]


async def test_sse_for_a_job_that_never_starts_is_a_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/api/v1/jobs/{new_job_id()}/events")  # the gateway waits 1 s
    assert response.status_code == 404
    assert "no event of it arrived within 1 s" in response.json()["detail"]


async def test_a_malformed_event_in_the_log_is_skipped_not_fatal(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    events = load_events(job, segments=1)
    await publish_all(js, events[:2])
    progress = subjects.job_event(JobKind.DATA_LOAD, job, "progress")
    await js.publish(progress, b'{"type": "progress", "done": "x"}')
    await publish_all(js, events[2:])
    body: dict[str, Any] = (await http.get(f"/api/v1/jobs/{job}")).json()
    assert body["status"] == "completed"
    assert body["events"] == len(events)
    streamed = [e.event async for e in sse(http, f"/api/v1/jobs/{job}/events")]
    assert streamed == [event_type(e) for e in events]


async def test_without_the_event_stream_declared_jobs_are_a_503(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await js.delete_stream(streams.EVENTS.name or "")
    response = await http.get(f"/api/v1/jobs/{new_job_id()}")
    assert response.status_code == 503
    assert "KTRDR_EVENTS does not exist" in response.json()["detail"]
