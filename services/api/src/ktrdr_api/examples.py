"""One example of every response body, shown in the OpenAPI document (``openapi.tighten``).

Built from the schemas themselves, so an example that stops matching its schema fails at
import rather than misleading a reader.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from ktrdr_shared.messages import DayState, ProgressReason
from ktrdr_shared.types import InstrumentType, Timeframe, WhatToShow

from ktrdr_api import overview_schemas as o
from ktrdr_api import schemas as s
from ktrdr_api import training_schemas as t
from ktrdr_api.jobs import JobStatus

JOB = "0123456789abcdef0123456789abcdef"
T0 = datetime(2024, 6, 17, 8, 0, tzinfo=UTC)
T1 = datetime(2024, 6, 28, 21, 0, tzinfo=UTC)
LINKS = s.JobLinks(
    self=f"/api/v1/jobs/{JOB}",
    events=f"/api/v1/jobs/{JOB}/events",
    cancel=f"/api/v1/jobs/{JOB}/cancel",
)
RESULT = {
    "kind": "data_load",
    "fetched_bars": 142,
    "cached_before": 0,
    "gaps_analyzed": 1,
    "segments_fetched": 1,
    "ib_requests_made": 1,
    "failed_segments": [],
}
PROGRESS = s.Progress(
    done=100.0,
    total=100.0,
    unit="percent",
    percent=100.0,
    message="1 of 1 segments fetched (142 bars); 100% stored",
    reason=ProgressReason.DONE,
    bars=142,
    requests_done=1,
    requests_planned=1,
)
RUNNING = s.Progress(
    done=40.0,
    total=100.0,
    unit="percent",
    percent=40.0,
    message="0 of 1 segments fetched (18000 bars); 40% stored",
    reason=ProgressReason.FETCHING,
    eta=datetime(2024, 6, 28, 21, 3, tzinfo=UTC),
    rate=1234.0,
    bars=18_000,
    requests_done=12,
    requests_planned=30,
)
DATASET = s.DatasetOut(
    symbol="AAPL",
    timeframe=Timeframe.H1,
    rows=142,
    first=T0,
    last=T1,
    bytes=18_342,
    use_rth=False,
    quarantined=1,
    links={"bars": "/api/v1/data/AAPL/1h", "coverage": "/api/v1/data/AAPL/1h/coverage"},
)
# The week of 17 June 2024: the 19th (Juneteenth) is a holiday, part of the 20th is missing.
WEEK = [
    ("2024-06-17", DayState.STORED), ("2024-06-18", DayState.STORED),
    ("2024-06-19", DayState.CLOSED), ("2024-06-20", DayState.PARTIAL),
    ("2024-06-21", DayState.STORED), ("2024-06-22", DayState.CLOSED),
    ("2024-06-23", DayState.CLOSED), ("2024-06-24", DayState.STORED),
    ("2024-06-25", DayState.STORED), ("2024-06-26", DayState.STORED),
    ("2024-06-27", DayState.STORED), ("2024-06-28", DayState.STORED),
]  # fmt: skip
GAP = s.RangeOut(
    start=datetime(2024, 6, 20, 14, tzinfo=UTC), end=datetime(2024, 6, 20, 16, tzinfo=UTC)
)
SUMMARY = s.JobSummary(
    job_id=JOB,
    kind="data_load",
    status=JobStatus.RUNNING,
    symbol="AAPL",
    timeframe="1h",
    created=T1,
    updated=T1,
    progress=RUNNING,
    links=LINKS,
)
MODEL = t.ModelOut(
    model_id="AAPL-1h-0123456789ab",
    job_id=JOB,
    created=T1,
    symbols=["AAPL"],
    timeframe=Timeframe.H1,
    device="cpu",
    metrics={"accuracy": 0.41},
    size_bytes=48_213,
    links={
        "self": "/api/v1/models/AAPL-1h-0123456789ab",
        "download": "/api/v1/models/AAPL-1h-0123456789ab/download",
    },
)

IB_STATUS = s.IbStatusOut(
    connected=True,
    host="127.0.0.1",
    port=4002,
    client_id=1,
    server_version=178,
    since=T0,
    server_time=T1,
    requests_made=12,
    pacing={"open_requests": 0.0},
    farms={"usfarm": "ok", "ushmds": "ok", "secdefnj": "ok"},
)
OVERVIEW = o.OverviewOut(
    ts=T1,
    ib=s.IbStatusOut(
        **(
            msgspec.structs.asdict(IB_STATUS)
            | {
                "pacing": {
                    "open_requests": 1.0,
                    "hard_requests_in_window": 60.0,
                    "window_max": 60.0,
                    "window_s": 600.0,
                    "next_free_in_s": 41.5,
                    "soft_delay_s": 0.0,
                    "requests_sent": 75.0,
                    "waited_s": 120.0,
                    "waiting_requests": 3.0,
                }
            }
        )
    ),
    pacing=o.PacingOut(
        requests_in_window=60,
        window_max=60,
        window_s=600.0,
        next_free_s=41.5,
        waiting_requests=3,
        open_requests=1,
        soft_delay_s=0.0,
    ),
    services=[
        o.ServiceStatsOut(
            name="ib-connector",
            id="dWc2nB9sZ1xq7kT4mEoR3a",
            version="0.1.0",
            started=T0,
            requests=14,
            errors=1,
            endpoints=[
                o.EndpointStatsOut(
                    name="status",
                    subject="ktrdr.ib.status",
                    requests=12,
                    errors=0,
                    average_processing_ms=0.8,
                ),
                o.EndpointStatsOut(
                    name="validate",
                    subject="ktrdr.ib.validate",
                    requests=2,
                    errors=1,
                    average_processing_ms=41.0,
                    last_error="404 unknown_symbol: IB has no contract for XYZZY",
                ),
            ],
        )
    ],
    missing_services=["trainer"],
    jetstream=o.JetStreamOut(
        streams=[
            o.StreamOut(
                name="KTRDR_COMMANDS",
                messages=12,
                bytes=5_380,
                consumers=3,
                consumer_pending={
                    "data-store-commands": 0,
                    "ib-connector-commands": 12,
                    "trainer-commands": 0,
                },
            )
        ],
        account=o.AccountOut(memory_bytes=0, storage_bytes=18_402_211, streams=5, consumers=4),
    ),
)

EXAMPLES: dict[str, Any] = {
    "Health": s.Health(status=s.OverallState.OK, version="0.1.0",
                       nats=s.NatsHealth(status=s.ComponentState.UP, server="127.0.0.1:4222",
                                         rtt_ms=0.4),
                       services=[s.ServiceHealth(name="ib-connector", status=s.ComponentState.UP,
                                                 version="0.1.0",
                                                 detail="IB connected at 127.0.0.1:4002")]),
    "IbStatusOut": IB_STATUS,
    "OverviewOut": OVERVIEW,
    "IbHealthOut": s.IbHealthOut(healthy=True, connected=True,
                                 detail="connected to IB at 127.0.0.1:4002 as client 1"),
    "SymbolOut": s.SymbolOut(symbol="AAPL", instrument_type=InstrumentType.STK,
                             exchange="SMART", currency="USD", time_zone="US/Eastern",
                             trading_hours="20240628:0400-20240628:2000", con_id=265598,
                             description="APPLE INC"),
    "HeadTimestampOut": s.HeadTimestampOut(symbol="AAPL", what_to_show=WhatToShow.TRADES,
                                           head_timestamp=datetime(1980, 12, 12, tzinfo=UTC),
                                           timeframe=Timeframe.H1),
    "LoadOut": s.LoadOut(job_id=JOB, status=JobStatus.COMPLETED, links=LINKS, fetched_bars=142,
                         cached_before=0, gaps_analyzed=1, segments_fetched=1,
                         ib_requests_made=1, execution_time_s=0.47,
                         notes=["no start given: loading from 2024-01-02T00:00:00Z (a tail load "
                                "of an empty dataset reaches back 180 days for 1h bars; give a "
                                "start to reach further, or use mode full for all IB has)",
                                "use_rth not set: 1h bars include extended hours (pre- and "
                                "post-market); set use_rth (ktrdr data load --rth) for regular "
                                "trading hours only"]),
    "DatasetsOut": s.DatasetsOut(datasets=[DATASET]),
    "QuarantineOut": s.QuarantineOut(entries=[s.QuarantinedOut(
        id="3f2a9c0d5e7b41a68c2d0e1f", subject="ktrdr.bars.AAPL.1h", code="invalid_bars",
        message="BarBatch on 'ktrdr.bars.AAPL.1h' fails non_finite: high[2] is inf",
        job_id=JOB, received=T1, bytes=412, symbol="AAPL", timeframe=Timeframe.H1,
        start=datetime(2024, 6, 20, tzinfo=UTC), end=datetime(2024, 6, 21, tzinfo=UTC),
        links={"self": "/api/v1/quarantine/3f2a9c0d5e7b41a68c2d0e1f"})]),
    "QuarantineReleasedOut": s.QuarantineReleasedOut(id="3f2a9c0d5e7b41a68c2d0e1f",
                                                     subject="ktrdr.bars.AAPL.1h"),
    "RepairOut": s.RepairOut(symbol="AAPL", timeframe=Timeframe.H1,
                             moved=["bars/AAPL/1h/2024.parquet"],
                             forgotten=[s.RangeOut(start=datetime(2024, 1, 1, tzinfo=UTC),
                                                   end=T1)],
                             job_id=JOB, links=LINKS),
    "CoverageOut": s.CoverageOut(symbol="AAPL", timeframe=Timeframe.H1, rows=142, first=T0,
                                 last=T1, stored=[s.RangeOut(start=T0, end=GAP.start),
                                                  s.RangeOut(start=GAP.end, end=T1)],
                                 gaps=[GAP],
                                 days=[s.CoverageDayOut(date=d, state=st) for d, st in WEEK]),
    "BarsOut": s.BarsOut(symbol="AAPL", timeframe=Timeframe.H1, bars=[
        s.Bar(ts=T0, open=198.67, high=198.87, low=198.24, close=198.73, volume=441440.0,
              wap=198.5097, count=4384)],
        next_cursor="MTcxODYxODQwMDAwMDAwMDAwMA==",
        links={"next": "/api/v1/data/AAPL/1h?limit=1&cursor=MTcxODYxODQwMDAwMDAwMDAwMA%3D%3D"}),
    "JobOut": s.JobOut(job_id=JOB, kind="data_load", status=JobStatus.COMPLETED,
                       params={"symbol": "AAPL", "timeframe": "1h"}, created=T1, updated=T1,
                       events=6, progress=PROGRESS, links=LINKS, execution_time_s=0.47,
                       segments_planned=1, segments_fetched=1, bars_fetched=142, ib_requests=1,
                       result=RESULT),
    "JobsOut": s.JobsOut(jobs=[SUMMARY]),
    "TrainingRunOut": t.TrainingRunOut(job_id=JOB, status=JobStatus.QUEUED, links=LINKS),
    "ModelOut": MODEL,
    "ModelsOut": t.ModelsOut(models=[MODEL]),
}  # fmt: skip


def example_of(schema_name: str) -> Any | None:
    """Return the JSON example of a response schema, or None when it has none."""
    example = EXAMPLES.get(schema_name)
    return None if example is None else msgspec.to_builtins(example)
