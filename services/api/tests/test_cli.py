"""The ``ktrdr`` CLI end to end: a real process talking HTTP to the running gateway.

A load with its progress to completion (the real simulator, connector and data-store),
Ctrl-C asking to cancel, ``--json`` output, and the exit codes that say how it ended.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import UTC, datetime

import msgspec
import pytest
from ktrdr_api.cli.api_client import ExitCode
from ktrdr_api.testing import (
    Responder,
    api_settings,
    cli_env,
    ktrdr,
    load_events,
    publish_all,
    serve_api,
    take_command,
)
from ktrdr_shared import streams, subjects
from ktrdr_shared.messages import (
    JobAccepted,
    JobCancelled,
    JobFailed,
    JobKind,
    JobProgress,
    LoadData,
    LoadResult,
    LstmModel,
    ProgressReason,
    SegmentFailed,
    SegmentFetched,
    StartTraining,
    StatusRequest,
    TrainerStatus,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.testing.nats_server import free_port
from nats.js import JetStreamContext

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_load_follows_progress_to_completion_then_ls_and_show(
    connector: ServiceApp, data_store: ServiceApp, api_url: str
) -> None:
    run = await ktrdr(api_url, "data", "load", "AAPL", "1h", "--start", "2024-06-17")
    assert run.code == ExitCode.OK, run.err
    assert "submitted" in run.err and "planned:" in run.err and "job completed" in run.err
    assert "status: completed" in run.out

    listed = await ktrdr(api_url, "data", "ls", "--json")
    [dataset] = json.loads(listed.out)["datasets"]
    assert (dataset["symbol"], dataset["timeframe"]) == ("AAPL", "1h") and dataset["rows"] > 0

    shown = await ktrdr(api_url, "data", "show", "AAPL", "1h", "--limit", "5", "--format", "csv")
    lines = shown.out.splitlines()
    assert lines[0] == "ts,open,high,low,close,volume,wap,count"
    assert len(lines) == 6 and lines[1].startswith("2024-06-17T")

    as_json = await ktrdr(api_url, "data", "show", "AAPL", "1h", "--limit", "3", "--json")
    assert len(json.loads(as_json.out)["bars"]) == 3

    jobs = json.loads((await ktrdr(api_url, "jobs", "ls", "--json")).out)["jobs"]
    assert [j["status"] for j in jobs] == ["completed"]


async def test_load_with_json_prints_the_final_job(
    connector: ServiceApp, data_store: ServiceApp, api_url: str
) -> None:
    run = await ktrdr(api_url, "data", "load", "EURUSD", "1d", "--start", "2024-06-03", "--json")
    assert run.code == ExitCode.OK, run.err
    job = json.loads(run.out)
    assert job["status"] == "completed"
    assert job["result"]["fetched_bars"] > 0
    assert run.err == ""  # no progress bar, no notes: stdout is the whole answer


async def test_ctrl_c_asks_to_cancel_and_the_exit_code_says_cancelled(
    api_url: str, js: JetStreamContext
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ktrdr_api.cli",
        "--url",
        api_url,
        "data",
        "load",
        "AAPL",
        "1m",
        env=cli_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # stand in for the data-store: take the command, start the job
        command = await take_command(js, streams.DATA_COMMANDS, LoadData)
        assert command.job_id is not None
        events = load_events(command.job_id, segments=3)
        await publish_all(js, events[:3])
        assert process.stderr is not None
        async with asyncio.timeout(30):
            while b"planned:" not in await process.stderr.readline():
                pass
        process.send_signal(signal.SIGINT)
        requested = await wait_for_job_event(js, command.job_id, {"cancel_requested"}, 30)
        assert requested.reason == "interrupted from the ktrdr CLI"
        await publish_all(js, [JobCancelled(job_id=command.job_id, reason=requested.reason)])
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode == ExitCode.JOB_CANCELLED, err.decode()
        assert "status: cancelled" in out.decode()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_a_failed_job_exits_1(api_url: str, js: JetStreamContext) -> None:
    job = "f" * 32
    await publish_all(
        js,
        [
            *load_events(job)[:2],
            JobFailed(job_id=job, code="unknown_symbol", message="IB: no AAPLX"),
        ],
    )
    run = await ktrdr(api_url, "jobs", "follow", job)
    assert run.code == ExitCode.JOB_FAILED
    assert "job failed: IB: no AAPLX" in run.err
    shown = json.loads((await ktrdr(api_url, "jobs", "show", job, "--json")).out)
    assert shown["error"] == {"code": "unknown_symbol", "message": "IB: no AAPLX"}


async def test_follow_says_why_a_load_waits_and_what_a_cancelled_load_did(
    api_url: str, js: JetStreamContext
) -> None:
    job = "e" * 32
    accepted, planned = load_events(job, segments=2)[:2]
    planned = msgspec.structs.replace(
        planned, notes=["1s bars before 2024-01-01 are older than IB's six-month limit"]
    )
    until = datetime(2024, 6, 28, 14, 5, 12, tzinfo=UTC)
    result = LoadResult(
        fetched_bars=4000, cached_before=7, gaps_analyzed=2, segments_fetched=1, ib_requests_made=9
    )
    await publish_all(
        js,
        [
            accepted,
            planned,
            JobProgress(
                job_id=job,
                done=10,
                total=100,
                unit="percent",
                reason=ProgressReason.FETCHING,
                rate=1234.0,
                requests_done=6,
                requests_planned=30,
            ),
            JobProgress(
                job_id=job,
                done=20,
                total=100,
                unit="percent",
                reason=ProgressReason.PACING,
                until=until,
                requests_done=9,
                requests_planned=30,
            ),
            SegmentFetched(job_id=job, segment_id="s0", chunks=2, bars=4000, ib_requests=6),
            SegmentFailed(
                job_id=job,
                segment_id="s1",
                code="cancelled",
                message="cancelled",
                bars=300,
                ib_requests=3,
            ),
            JobCancelled(job_id=job, reason="user", result=result),
        ],
    )
    run = await ktrdr(api_url, "jobs", "follow", job, env=cli_env() | {"TZ": "UTC"})
    assert run.code == ExitCode.JOB_CANCELLED, run.err
    assert "note: 1s bars before 2024-01-01" in run.err
    assert "fetching 1,234 bars/s · 6/30 requests" in run.err
    assert "waiting for IB's pacing window until 2024-06-28 14:05:12" in run.err
    assert "job cancelled: user (after 9 IB requests, 4,000 bars fetched)" in run.err
    assert "did: 9 IB requests, 4,300 bars" in run.out

    shown = await ktrdr(api_url, "jobs", "show", job)
    assert "progress: 20/100 percent · done: 4,300 bars · 9/30 requests" in shown.out


async def test_errors_become_exit_codes_and_json_problems(api_url: str) -> None:
    status = await ktrdr(api_url, "status", "--json")
    assert status.code == ExitCode.DEGRADED  # no service runs: degraded is not "all fine"
    assert json.loads(status.out)["nats"]["status"] == "up"
    assert json.loads(status.out)["status"] == "degraded"

    no_connector = await ktrdr(api_url, "ib", "validate", "AAPL", "--json")
    assert no_connector.code == ExitCode.UNAVAILABLE
    assert json.loads(no_connector.out)["service"] == "ib-connector"
    assert "no ib-connector is running" in no_connector.err

    unknown = await ktrdr(api_url, "jobs", "show", "0" * 32)
    assert unknown.code == ExitCode.REFUSED
    assert "404" in unknown.err

    usage = await ktrdr(api_url, "data", "load", "AAPL", "2h")
    assert usage.code == ExitCode.USAGE
    assert "'2h' is not one of" in usage.err

    nobody = await ktrdr(f"http://127.0.0.1:{free_port()}", "status")
    assert nobody.code == ExitCode.UNAVAILABLE
    assert "cannot reach the ktrdr API" in nobody.err


async def test_url_and_key_come_from_the_environment(nats_url: str, js: JetStreamContext) -> None:
    await streams.ensure_streams(js)
    settings = api_settings(nats_url, KTRDR_API_KEY="k3y")
    async with serve_api(settings) as url:
        refused = await ktrdr(url, "jobs", "ls")
        assert refused.code == ExitCode.UNAUTHORIZED
        env = cli_env() | {"KTRDR_API_URL": url, "KTRDR_API_KEY": "k3y"}
        keyed = await ktrdr(None, "jobs", "ls", "--json", env=env)
        assert keyed.code == ExitCode.OK, keyed.err
        assert json.loads(keyed.out) == {"jobs": []}


async def test_train_start_and_show_through_the_training_route(
    api_url: str, nats_url: str, js: JetStreamContext
) -> None:
    no_trainer = await ktrdr(api_url, "train", "start", "AAPL", "--timeframe", "1h", "--json")
    assert no_trainer.code == ExitCode.UNAVAILABLE
    assert json.loads(no_trainer.out)["detail"].startswith("no trainer is running")

    async def status(_: StatusRequest) -> TrainerStatus:
        return TrainerStatus(device="cpu", busy=False)

    trainer = Responder(nats_url, "trainer")
    trainer.on("status", subjects.TRAIN_STATUS, StatusRequest, status)
    async with trainer:
        started = await ktrdr(
            api_url,
            "train",
            "start",
            "AAPL",
            "MSFT",
            "--timeframe",
            "1h",
            "--model",
            "lstm",
            "--epochs",
            "3",
            "--detach",
            "--json",
        )
    assert started.code == ExitCode.OK, started.err
    run = json.loads(started.out)
    command = await take_command(js, streams.TRAIN_COMMANDS, StartTraining)
    assert command.job_id == run["job_id"]
    assert (command.symbols, command.epochs) == (["AAPL", "MSFT"], 3)
    assert isinstance(command.model, LstmModel)

    await publish_all(
        js,
        [JobAccepted(job_id=run["job_id"], kind=JobKind.TRAINING, params={})],
        kind=JobKind.TRAINING,
    )
    shown = await ktrdr(api_url, "train", "show", run["job_id"], "--json")
    assert json.loads(shown.out)["status"] == "accepted"
