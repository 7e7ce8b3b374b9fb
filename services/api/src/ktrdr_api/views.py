"""Converters between the wire (messages, folded job state) and the HTTP schemas.

Every timestamp leaves the gateway in UTC; every job carries its links.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from ktrdr_shared.messages import (
    Coverage,
    CoverageDay,
    DatasetInfo,
    DatasetRepaired,
    IbStatus,
    LoadResult,
    ModelInfo,
    QuarantinedBatch,
    SymbolInfo,
    TimeRange,
)
from ktrdr_shared.types import from_unix_nanos

from ktrdr_api.jobs import JobState
from ktrdr_api.schemas import (
    Bar,
    CoverageDayOut,
    CoverageOut,
    DatasetOut,
    FailedSegmentOut,
    IbStatusOut,
    JobError,
    JobLinks,
    JobOut,
    JobSummary,
    LoadOut,
    Progress,
    QuarantinedOut,
    RangeOut,
    RepairOut,
    SymbolOut,
)
from ktrdr_api.training_schemas import ModelOut

API = "/api/v1"
T = TypeVar("T")
V = TypeVar("V", bound=msgspec.Struct)


def rest_view(view: type[V], message: msgspec.Struct, **overrides: Any) -> V:
    """Return ``message`` as its REST ``view`` (a subclass with the same fields), ``overrides``
    replacing or adding fields (timestamps made UTC, links)."""
    return view(**(msgspec.structs.asdict(message) | overrides))


def utc(moment: datetime | None) -> datetime | None:
    """Return ``moment`` in UTC (None stays None)."""
    return None if moment is None else moment.astimezone(UTC)


def job_links(job_id: str) -> JobLinks:
    """Return where to follow a job."""
    base = f"{API}/jobs/{job_id}"
    return JobLinks(self=base, events=f"{base}/events", cancel=f"{base}/cancel")


def progress(state: JobState) -> Progress:
    """Return a job's progress: how far, why it is there, and when it should end."""
    return Progress(
        done=state.progress_done,
        total=state.progress_total,
        unit=state.progress_unit,
        percent=state.percent,
        message=state.progress_message,
        reason=state.progress_reason,
        since=utc(state.progress_since),
        until=utc(state.progress_until),
        eta=utc(state.progress_eta),
        rate=state.progress_rate,
        bars=state.bars,
        requests_done=state.requests,
        requests_planned=state.requests_planned,
    )


def job_out(state: JobState) -> JobOut:
    """Return the full view of a folded job."""
    error = None
    if state.error_code is not None:
        error = JobError(code=state.error_code, message=state.error_message or "")
    result = None
    if state.result is not None:
        result = msgspec.to_builtins(state.result)
    return JobOut(
        job_id=state.job_id,
        kind=state.kind,
        status=state.status,
        params=state.params,
        created=utc(state.created),
        updated=utc(state.updated),
        events=state.events,
        progress=progress(state),
        links=job_links(state.job_id),
        execution_time_s=state.execution_time_s,
        segments_planned=state.segments_planned,
        segments_fetched=state.segments_fetched,
        segments_failed=state.segments_failed,
        bars_fetched=state.bars_fetched,
        ib_requests=state.ib_requests,
        last_epoch=msgspec.to_builtins(state.last_epoch) if state.last_epoch else None,
        result=result,
        error=error,
        cancel_reason=state.cancel_reason,
        notes=list(state.notes),
    )


def job_summary(state: JobState) -> JobSummary:
    """Return the list view of a folded job."""
    symbol = state.params.get("symbol")
    symbols = state.params.get("symbols")
    if symbol is None and isinstance(symbols, list):
        symbol = ",".join(str(s) for s in symbols)
    timeframe = state.params.get("timeframe")
    return JobSummary(
        job_id=state.job_id,
        kind=state.kind,
        status=state.status,
        symbol=None if symbol is None else str(symbol),
        timeframe=None if timeframe is None else str(timeframe),
        created=utc(state.created),
        updated=utc(state.updated),
        progress=progress(state),
        links=job_links(state.job_id),
    )


def load_out(state: JobState) -> LoadOut:
    """Return the old ``/data/load`` answer for a load job as far as it has got."""
    result = state.result if isinstance(state.result, LoadResult) else None
    error = None
    if state.error_code is not None:
        error = JobError(code=state.error_code, message=state.error_message or "")
    started = state.status.value != "queued"
    return LoadOut(
        job_id=state.job_id,
        status=state.status,
        links=job_links(state.job_id),
        fetched_bars=result.fetched_bars if result else (state.bars_fetched if started else None),
        cached_before=result.cached_before if result else state.cached_before,
        gaps_analyzed=result.gaps_analyzed if result else state.gaps_analyzed,
        segments_fetched=(
            result.segments_fetched if result else (state.segments_fetched if started else None)
        ),
        ib_requests_made=result.ib_requests_made
        if result
        else (state.ib_requests if started else None),
        execution_time_s=state.execution_time_s,
        failed_segments=[
            FailedSegmentOut(
                segment_id=f.segment_id,
                start=_utc(f.start),
                end=_utc(f.end),
                code=f.code,
                message=f.message,
            )
            for f in (result.failed_segments if result else [])
        ],
        error=error,
        notes=list(state.notes),
    )


def ib_status_out(status: IbStatus) -> IbStatusOut:
    """Return the REST view of the connector's status."""
    return rest_view(
        IbStatusOut, status, since=utc(status.since), server_time=utc(status.server_time)
    )


def symbol_out(info: SymbolInfo) -> SymbolOut:
    """Return the REST view of what IB knows of a symbol."""
    return rest_view(SymbolOut, info, head_timestamp=utc(info.head_timestamp))


def ranges(items: list[TimeRange]) -> list[RangeOut]:
    """Return wire ranges as REST ranges."""
    return [RangeOut(start=_utc(r.start), end=_utc(r.end)) for r in items]


def coverage_out(c: Coverage) -> CoverageOut:
    """Return the REST view of a dataset's coverage."""
    return CoverageOut(
        symbol=c.symbol,
        timeframe=c.timeframe,
        rows=c.rows,
        first=utc(c.first),
        last=utc(c.last),
        stored=ranges(c.stored),
        gaps=ranges(c.gaps),
        answered_empty=ranges(c.answered_empty),
        days=_days(c.days),
    )


def _days(days: list[CoverageDay] | None) -> list[CoverageDayOut] | None:
    return None if days is None else [CoverageDayOut(date=d.date, state=d.state) for d in days]


def dataset_out(d: DatasetInfo, coverage: Coverage | None = None) -> DatasetOut:
    """Return the REST view of one stored dataset."""
    base = f"{API}/data/{d.symbol}/{d.timeframe.value}"
    return DatasetOut(
        symbol=d.symbol,
        timeframe=d.timeframe,
        rows=d.rows,
        first=utc(d.first),
        last=utc(d.last),
        damaged=d.damaged,
        bytes=d.bytes,
        use_rth=d.use_rth,
        quarantined=d.quarantined,
        links={"bars": base, "coverage": f"{base}/coverage"},
        coverage=coverage_out(coverage) if coverage else None,
    )


def bars_from_columns(page: Any) -> list[Bar]:
    """Return a columnar page (``BarsPage``) as rows stamped in RFC 3339."""
    wap = page.wap or [None] * len(page.ts)
    count = page.count or [None] * len(page.ts)
    return [
        Bar(ts=from_unix_nanos(ts), open=o, high=h, low=lo, close=c, volume=v, wap=w, count=n)
        for ts, o, h, lo, c, v, w, n in zip(
            page.ts,
            page.open,
            page.high,
            page.low,
            page.close,
            page.volume,
            wap,
            count,
            strict=True,
        )
    ]


def model_out(m: ModelInfo) -> ModelOut:
    """Return the REST view of a stored model."""
    links = {
        "self": f"{API}/models/{m.model_id}",
        "download": f"{API}/models/{m.model_id}/download",
    }
    return rest_view(ModelOut, m, created=_utc(m.created), links=links)


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def repair_out(r: DatasetRepaired) -> RepairOut:
    """Return the REST view of a repair (with the reload job's links when there is one)."""
    return RepairOut(
        symbol=r.symbol,
        timeframe=r.timeframe,
        moved=r.moved,
        forgotten=ranges(r.forgotten),
        job_id=r.job_id,
        links=job_links(r.job_id) if r.job_id else None,
    )


def quarantined_out(q: QuarantinedBatch) -> QuarantinedOut:
    """Return the REST view of one quarantined batch."""
    return QuarantinedOut(
        id=q.id,
        subject=q.subject,
        code=q.code,
        message=q.message,
        job_id=q.job_id,
        received=q.received.astimezone(UTC),
        bytes=q.bytes,
        symbol=q.symbol,
        timeframe=q.timeframe,
        start=utc(q.start),
        end=utc(q.end),
        links={"self": f"{API}/quarantine/{q.id}"},
    )
