"""GET /api/v1/jobs from the gateway's job index, on a real nats-server: it answers with
every job logged before the request (read-your-writes), lists a thousand seeded jobs as the
log folds them, follows jobs live, and survives a NATS restart and a log that went back.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from ktrdr_api.testing import load_events, publish_all
from ktrdr_api.testing_console import seed_jobs
from ktrdr_shared import streams
from ktrdr_shared.client import new_job_id
from ktrdr_shared.messages import JobAccepted, JobKind
from ktrdr_shared.testing.nats_server import NatsServer
from nats.js import JetStreamContext

pytestmark = pytest.mark.integration


async def listed(http: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await http.get("/api/v1/jobs", params={"limit": 10_000, **params})
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


async def test_a_job_published_right_before_the_list_is_in_it(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    first = new_job_id()  # the first list request starts the index: it has to catch up
    await publish_all(js, load_events(first))
    assert [j["job_id"] for j in await listed(http)] == [first]
    for _ in range(30):  # the index is live now: each new job is there at once
        job = new_job_id()
        await publish_all(js, [JobAccepted(job_id=job, kind=JobKind.DATA_LOAD)])
        assert job in {j["job_id"] for j in await listed(http)}


async def test_concurrent_first_requests_share_one_catch_up(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    jobs = {new_job_id() for _ in range(20)}
    for job in jobs:
        await publish_all(js, load_events(job))
    answers = await asyncio.gather(*(listed(http) for _ in range(8)))
    assert all({j["job_id"] for j in answer} == jobs for answer in answers)
    consumers = await js.consumers_info(streams.EVENTS.name)
    assert [c.config.filter_subject for c in consumers] == ["ktrdr.evt.job.>"]  # one feed


async def test_a_thousand_seeded_jobs_list_newest_first(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job_ids = await seed_jobs(js, 1_000)
    jobs = await listed(http)
    assert [j["job_id"] for j in jobs] == job_ids[::-1]  # each ended a minute after the last
    assert Counter((j["kind"], j["status"]) for j in jobs) == {
        ("data_load", "completed"): 900,
        ("training", "completed"): 100,
    }
    trainings = await listed(http, kind="training", limit=50)
    assert [j["job_id"] for j in trainings] == [j for j in job_ids[::-1] if int(j, 16) % 10 == 0][
        :50
    ]
    assert len(await listed(http, limit=200)) == 200
    newest = (await http.get(f"/api/v1/jobs/{job_ids[-1]}")).json()
    assert jobs[0]["progress"] == newest["progress"]  # the list and the job agree


async def test_the_list_follows_a_job_live(http: httpx.AsyncClient, js: JetStreamContext) -> None:
    job = new_job_id()
    events = load_events(job, segments=3)
    await publish_all(js, events[:2])
    assert [j["status"] for j in await listed(http)] == ["running"]
    await publish_all(js, events[2:4])
    (running,) = await listed(http)
    assert running["progress"]["bars"] == 100  # the first segment's
    await publish_all(js, events[4:])
    (done,) = await listed(http, status="completed")
    assert done["job_id"] == job and done["progress"]["percent"] == 100.0
    assert await listed(http, status="running") == []


async def test_the_index_survives_a_nats_restart(
    nats_server: NatsServer, http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    before = new_job_id()
    await publish_all(js, load_events(before))
    assert [j["job_id"] for j in await listed(http)] == [before]

    nats_server.kill()  # its ephemeral consumers are gone with it; the stream stays on disk
    assert (await http.get("/api/v1/jobs")).json()["code"] == "nats_unavailable"
    nats_server.start()
    async with asyncio.timeout(20):
        while True:
            if (await http.get("/health")).status_code == 200:
                break
            await asyncio.sleep(0.1)  # the client reconnects on its own schedule
    after = new_job_id()
    await publish_all(js, [JobAccepted(job_id=after, kind=JobKind.TRAINING)], kind=JobKind.TRAINING)
    assert [j["job_id"] for j in await listed(http)] == [after, before]


async def test_a_log_that_went_back_is_read_anew(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    job = new_job_id()
    await publish_all(js, load_events(job))
    assert len(await listed(http)) == 1
    await js.purge_stream(streams.EVENTS.name or "")
    assert await listed(http) == []


async def test_without_the_event_stream_the_list_is_a_503(
    http: httpx.AsyncClient, js: JetStreamContext
) -> None:
    await js.delete_stream(streams.EVENTS.name or "")
    response = await http.get("/api/v1/jobs")
    assert response.status_code == 503
    assert "KTRDR_EVENTS does not exist" in response.json()["detail"]
