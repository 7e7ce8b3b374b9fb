"""One valid example of every wire message, for round-trip and contract tests.

``EXAMPLES`` maps each message class to an instance; the contract tests fail
when a message class exported by ``ktrdr_shared.messages`` has no example here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ktrdr_shared import messages as m
from ktrdr_shared.types import InstrumentType, LoadMode, Timeframe, WhatToShow

JOB = "0123456789abcdef0123456789abcdef"
T0 = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
T1 = datetime(2024, 1, 3, 21, 0, tzinfo=UTC)
NS0 = 1_704_205_800_000_000_000
NS1 = NS0 + 3 * 60_000_000_000


def _examples() -> list[Any]:
    load_result = m.LoadResult(
        fetched_bars=780,
        cached_before=10,
        gaps_analyzed=2,
        segments_fetched=1,
        ib_requests_made=3,
        failed_segments=[
            m.FailedSegment(
                segment_id="s2", start=T0, end=T1, code="unknown_symbol", message="IB error 200"
            )
        ],
    )
    conn: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 4002,
        "client_id": 1,
        "server_version": 178,
        "ts": T0,
    }
    return [
        m.BarBatch(
            symbol="AAPL",
            timeframe=Timeframe.M1,
            job_id=JOB,
            segment_id="s1",
            chunk_index=0,
            chunk_count=2,
            start=NS0,
            end=NS1,
            ts=[NS0, NS0 + 60_000_000_000],
            open=[185.1, 185.3],
            high=[185.6, 185.4],
            low=[184.9, 185.0],
            close=[185.3, 185.2],
            volume=[1200.0, 800.0],
            wap=[185.2, 185.21],
            count=[31, 20],
        ),
        m.ErrorReply(code="invalid_request", message="bad", details={"field": "timeframe"}),
        m.TimeRange(start=T0, end=T1),
        m.StatusRequest(),
        m.LoadData(
            job_id=JOB,
            symbol="AAPL",
            timeframe=Timeframe.H1,
            mode=LoadMode.FULL,
            start=T0,
            end=T1,
            instrument_type=InstrumentType.STK,
            what_to_show=WhatToShow.TRADES,
        ),
        m.QueryBars(symbol="AAPL", timeframe=Timeframe.M1, start=T0, end=T1, limit=500),
        m.BarsPage(
            symbol="AAPL",
            timeframe=Timeframe.M1,
            ts=[NS0],
            open=[1.0],
            high=[1.0],
            low=[1.0],
            close=[1.0],
            volume=[0.0],
            next_cursor="abc",
        ),
        m.CoverageRequest(symbol="AAPL", timeframe=Timeframe.D1, days=True),
        m.Coverage(
            symbol="AAPL",
            timeframe=Timeframe.D1,
            rows=2,
            first=T0,
            last=T1,
            stored=[m.TimeRange(start=T0, end=T1)],
            days=[
                m.CoverageDay(date="2024-01-01", state=m.DayState.CLOSED),
                m.CoverageDay(date="2024-01-02", state=m.DayState.STORED),
            ],
        ),
        m.CoverageDay(date="2024-01-03", state=m.DayState.PARTIAL),
        m.DatasetInfo(
            symbol="AAPL",
            timeframe=Timeframe.D1,
            rows=2,
            first=T0,
            last=T1,
            bytes=4_096,
            use_rth=False,
            quarantined=1,
        ),
        m.DatasetList(datasets=[m.DatasetInfo(symbol="MSFT", timeframe=Timeframe.H1, rows=0)]),
        m.ListQuarantine(),
        m.QuarantinedBatch(
            id="0123456789abcdef01234567",
            subject="ktrdr.bars.AAPL.1d",
            code="invalid_bars",
            message="BarBatch on 'ktrdr.bars.AAPL.1d' fails non_finite: high[2] is inf",
            job_id=JOB,
            received=T0,
            bytes=412,
            symbol="AAPL",
            timeframe=Timeframe.D1,
            start=T0,
            end=T1,
        ),
        m.QuarantineList(
            entries=[
                m.QuarantinedBatch(
                    id="0123456789abcdef01234567",
                    subject="ktrdr.bars.MSFT.1h",
                    code="invalid_request",
                    message="bad",
                    received=T1,
                    bytes=3,
                )
            ]
        ),
        m.DeleteQuarantined(id="0123456789abcdef01234567"),
        m.QuarantineDeleted(id="0123456789abcdef01234567"),
        m.ReleaseQuarantined(id="0123456789abcdef01234567"),
        m.QuarantineReleased(id="0123456789abcdef01234567", subject="ktrdr.bars.AAPL.1d"),
        m.RepairDataset(symbol="AAPL", timeframe=Timeframe.D1),
        m.DatasetRepaired(
            symbol="AAPL",
            timeframe=Timeframe.D1,
            moved=["bars/AAPL/1d/2024.parquet"],
            forgotten=[m.TimeRange(start=T0, end=T1)],
            job_id=JOB,
        ),
        m.BarsStored(
            symbol="AAPL",
            timeframe=Timeframe.M1,
            first=T0,
            last=T1,
            bars_written=780,
            job_id=JOB,
            ts=T1,
        ),
        m.BatchRejected(
            subject="ktrdr.bars.AAPL.1m",
            code="invalid_request",
            message="bad",
            job_id=JOB,
            quarantine_id="0123456789abcdef01234567",
            ts=T1,
        ),
        m.FetchBars(
            job_id=JOB,
            segment_id="s1",
            symbol="EURUSD",
            timeframe=Timeframe.M5,
            start=T0,
            end=T1,
            instrument_type=InstrumentType.CASH,
            what_to_show=WhatToShow.MIDPOINT,
        ),
        m.IbConnected(**conn),
        m.IbDisconnected(**conn, reason="peer closed"),
        m.IbReconnecting(**conn, attempt=3, delay_s=4.0),
        m.ClientIdConflict(**conn, next_client_id=2),
        m.IbLinkLost(**conn, reason="IB 1100: Connectivity between IB and TWS has been lost."),
        m.IbLinkRestored(**conn, data_lost=True, reason="IB 1101: restored, data lost"),
        m.IbStatus(
            connected=True,
            host="127.0.0.1",
            port=4002,
            client_id=1,
            server_version=178,
            since=T0,
            requests_made=12,
            pacing={"requests_10min": 12.0},
        ),
        m.IbStatus(
            connected=False,
            host="127.0.0.1",
            port=4002,
            client_id=1,
            server_version=178,
            link_ok=False,
            farms={"usfarm": "ok", "ushmds": "inactive", "secdefnj": "ok"},
            last_error="IB 1100: connectivity between IB and the gateway lost",
        ),
        m.ValidateSymbol(symbol="ES", instrument_type=InstrumentType.FUT),
        m.ValidateSymbol(
            symbol="ES",
            instrument_type=InstrumentType.FUT,
            contract=m.ContractSpec(contract_month="202403", exchange="CME"),
        ),
        m.ContractSpec(currency="USD", primary_exchange="NASDAQ"),
        m.SymbolInfo(
            symbol="AAPL",
            instrument_type=InstrumentType.STK,
            exchange="SMART",
            currency="USD",
            time_zone="US/Eastern",
            con_id=265598,
        ),
        m.HeadTimestampRequest(symbol="AAPL"),
        m.HeadTimestamp(symbol="AAPL", what_to_show=WhatToShow.TRADES, head_timestamp=T0),
        m.JobAccepted(job_id=JOB, ts=T0, kind=m.JobKind.DATA_LOAD, params={"symbol": "AAPL"}),
        m.PlannedSegment(segment_id="s1", start=T0, end=T1),
        m.JobPlanned(
            job_id=JOB,
            ts=T0,
            gaps_analyzed=1,
            cached_before=0,
            segments=[m.PlannedSegment(segment_id="s1", start=T0, end=T1)],
            start=T0,
            end=T1,
            instrument_type=InstrumentType.STK,
            exchange="SMART",
            what_to_show=WhatToShow.TRADES,
        ),
        m.SegmentFetched(job_id=JOB, ts=T0, segment_id="s1", chunks=2, bars=780, ib_requests=2),
        m.SegmentFailed(
            job_id=JOB,
            ts=T0,
            segment_id="s2",
            code="unknown_symbol",
            message="No security definition",
            ib_code=200,
        ),
        m.JobProgress(job_id=JOB, ts=T0, done=1, total=2, unit="segments"),
        m.JobProgress(
            job_id=JOB,
            ts=T0,
            done=40.0,
            total=100.0,
            unit="percent",
            message="waiting for IB's pacing window",
            reason=m.ProgressReason.PACING,
            until=T1,
            bars=1800,
            requests_done=12,
            requests_planned=30,
        ),
        m.SegmentsDispatched(job_id=JOB, ts=T0, segment_ids=["s0000", "s0001"]),
        m.SegmentProgress(
            job_id=JOB,
            ts=T0,
            segment_id="s0000",
            state=m.ProgressReason.FETCHING,
            chunks=4,
            chunks_done=1,
            bars=1800,
            ib_requests=2,
        ),
        m.EpochCompleted(
            job_id=JOB,
            ts=T0,
            epoch=1,
            epochs=10,
            train_loss=1.0,
            val_loss=1.1,
            val_accuracy=0.4,
            samples_per_s=1e5,
            device="cpu",
        ),
        m.CancelRequested(job_id=JOB, ts=T0, reason="user"),
        m.FailedSegment(segment_id="s2", start=T0, end=T1, code="pacing", message="x"),
        load_result,
        m.TrainingResult(model_id="m1", device="cpu", metrics={"accuracy": 0.5}),
        m.JobCompleted(job_id=JOB, ts=T1, result=load_result),
        m.JobFailed(job_id=JOB, ts=T1, code="ib_unavailable", message="IB down"),
        m.JobCancelled(job_id=JOB, ts=T1, reason="user"),
        m.Feature(name=m.FeatureName.RSI, params={"period": 14.0}),
        m.ZigZagLabel(threshold=0.03),
        m.ForwardReturnLabel(horizon=3),
        m.MlpModel(hidden_sizes=[16]),
        m.LstmModel(seq_len=16),
        m.StartTraining(
            job_id=JOB,
            symbols=["AAPL"],
            timeframe=Timeframe.H1,
            label=m.ZigZagLabel(),
            model=m.LstmModel(),
            epochs=3,
        ),
        m.TrainerStatus(device="cpu", busy=False),
        m.ModelInfo(
            model_id="m1",
            job_id=JOB,
            created=T1,
            symbols=["AAPL"],
            timeframe=Timeframe.H1,
            device="cpu",
        ),
        m.ModelList(models=[]),
    ]


EXAMPLES: dict[type, Any] = {type(example): example for example in _examples()}
