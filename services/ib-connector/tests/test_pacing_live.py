"""Over a thousand hard-paced requests through the whole connector: zero pacing violations,
counted by the simulator, which enforces IB's rules and answers violations as IB does."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from ktrdr_ib_connector.app import build_app
from ktrdr_ib_sim import IBGatewaySimulator, SimulatorConfig
from ktrdr_shared import codec, subjects
from ktrdr_shared.messages import FetchBars, JobEvent, SegmentFailed, SegmentFetched
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCALE = 0.002  # IB's 10-minute window lasts 1.2 s
REQUESTS = 1_020
NOW = dt.datetime(2024, 6, 28, 22, 0, tzinfo=dt.UTC)


async def test_a_thousand_small_bar_requests_never_break_pacing(
    nats_url: str, js: JetStreamContext
) -> None:
    sim = IBGatewaySimulator(SimulatorConfig(port=0, time_scale=SCALE, now_utc=NOW))
    await sim.start()
    env = {
        "KTRDR_NATS_URL": nats_url,
        "KTRDR_IB_PORT": str(sim.port),
        "KTRDR_IB_TIME_SCALE": str(SCALE),
    }
    from ktrdr_ib_connector.config import IbConnectorSettings

    app = build_app(IbConnectorSettings.from_env(env))
    await app.start()
    try:
        # 1,020 one-request segments of 1-second bars: 30 s each, two contracts, many ends.
        start = dt.datetime(2024, 6, 24, 14, 0, tzinfo=dt.UTC)
        jobs = []
        for i in range(REQUESTS):
            begin = start + dt.timedelta(seconds=30 * (i // 2))
            command = FetchBars(
                job_id=uuid.uuid4().hex,
                segment_id=f"s{i}",
                symbol=("AAPL", "MSFT")[i % 2],
                timeframe=Timeframe.S1,
                start=begin,
                end=begin + dt.timedelta(seconds=30),
                instrument_type=InstrumentType.STK,
                what_to_show=WhatToShow.TRADES,
            )
            await js.publish(subjects.CMD_IB_FETCH, codec.encode(command))
            jobs.append(command.job_id)
        outcomes = await _outcomes(js, set(jobs), timeout_s=180)
        counters = sim.counters()
    finally:
        await app.stop()
        await sim.stop()
    assert len(outcomes) == REQUESTS
    assert all(isinstance(o, SegmentFetched) for o in outcomes.values())
    assert counters["requests_by_type"]["historical"] >= REQUESTS
    assert counters["pacing_violations"] == 0, counters["pacing_by_rule"]
    assert counters["bars_served"] > 0


async def _outcomes(js: JetStreamContext, jobs: set[str], timeout_s: float) -> dict[str, object]:
    """Collect each job's segment outcome from one subscription to all job events."""
    sub = await js.subscribe(
        subjects.JOB_EVENTS_ALL,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    found: dict[str, object] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while len(found) < len(jobs):
                msg = await sub.next_msg(timeout=None)
                event = codec.decode(msg.data, JobEvent, subject=msg.subject)
                if event.job_id in jobs and isinstance(event, SegmentFetched | SegmentFailed):
                    found[event.job_id] = event
    finally:
        await sub.unsubscribe()
    return found
