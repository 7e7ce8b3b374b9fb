"""``/api/v1/data``: load jobs, stored datasets with coverage, and bar pages."""

from __future__ import annotations

import asyncio
import csv
import enum
import io
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from ktrdr_shared import subjects
from ktrdr_shared.client import new_job_id
from ktrdr_shared.messages import (
    BarsPage,
    Coverage,
    CoverageRequest,
    DatasetList,
    DatasetRepaired,
    LoadData,
    QueryBars,
    QueryFormat,
    RepairDataset,
    StatusRequest,
)
from ktrdr_shared.types import Timeframe
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter

from ktrdr_api.deps import EventsDep, GatewayDep, SettingsDep
from ktrdr_api.errors import PROBLEM_JSON, ApiError, Problem, problem_responses
from ktrdr_api.jobs import JobState, apply
from ktrdr_api.openapi import ARROW_STREAM, CSV, BarsOperation
from ktrdr_api.schemas import BarsOut, CoverageOut, DatasetsOut, LoadIn, LoadOut, RepairOut
from ktrdr_api.validation import StrictBody, query_cursor, query_range, timestamp_query
from ktrdr_api.views import (
    bars_from_columns,
    coverage_out,
    dataset_out,
    job_links,
    load_out,
    repair_out,
)

JSON = "application/json"
CSV_COLUMNS = ("ts", "open", "high", "low", "close", "volume", "wap", "count")

# A symbol in a path or query: at least a letter or digit, so that it always has a store key.
SYMBOL_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 _.&-]*[A-Za-z0-9_.&-])?$(?!\n)"
PathSymbol = Annotated[
    str,
    Parameter(
        description="Symbol as stored (AAPL, EURUSD; a space may be written %20, or _ as the "
        "store's key writes it: BRK_B).",
        min_length=1,
        max_length=32,
        pattern=SYMBOL_PATTERN,
        examples=[Example(value="AAPL")],
    ),
]
PathTimeframe = Annotated[Timeframe, Parameter(description="Bar size.")]
Start = Annotated[str | None, timestamp_query("First bar (inclusive), RFC 3339 with an offset.")]
End = Annotated[str | None, timestamp_query("End (exclusive), RFC 3339 with an offset.")]


DAMAGED_DETAIL = (
    "bars/AAPL/1h/2024.parquet: Parquet magic bytes not found in footer; repair "
    "it with `ktrdr data repair AAPL 1h` (POST /api/v1/data/AAPL/1h/repair), to "
    "move the file aside (kept under damaged/) and load the range again"
)
DAMAGED = {409: ResponseSpec(
    data_container=Problem, media_type=PROBLEM_JSON, generate_examples=False,
    description="The dataset is damaged: a stored file in the range cannot be read. The detail "
    "names the file and the repair command; every other dataset answers as usual.",
    examples=[Example(summary="dataset_damaged", value={
        "type": "urn:ktrdr:problem:dataset_damaged", "title": "Conflict", "status": 409,
        "detail": DAMAGED_DETAIL, "code": "dataset_damaged"})])}  # fmt: skip

NOT_LOADED = {404: ResponseSpec(
    data_container=Problem, media_type=PROBLEM_JSON, generate_examples=False,
    description="Nothing is stored for the dataset: no bar, and no range IB answered (it was "
    "never loaded, or the symbol is unknown). ``hint`` says how to load it. A dataset that "
    "holds bars answers 200 with what lies in the range, an empty list when nothing does.",
    examples=[Example(summary="not_found", value={
        "type": "urn:ktrdr:problem:not_found", "title": "Not Found", "status": 404,
        "detail": "nothing is stored for AAPL 1h", "code": "not_found",
        "hint": 'load it: `ktrdr data load AAPL 1h` or POST /api/v1/data/load {"symbol": '
                '"AAPL", "timeframe": "1h"} (LoadData on ktrdr.cmd.data.load)',
        "service": "data-store"})])}  # fmt: skip


class BarFormat(enum.StrEnum):
    """A bar page's representation (overrides ``Accept``)."""

    JSON = "json"
    CSV = "csv"
    ARROW = "arrow"


_BY_FORMAT = {BarFormat.JSON: JSON, BarFormat.CSV: CSV, BarFormat.ARROW: ARROW_STREAM}


class DataController(Controller):
    """Data loads and stored bars."""

    path = "/api/v1/data"
    tags = ["data"]

    @post(
        "/load",
        status_code=202,
        operation_id="loadData",
        dto=StrictBody[LoadIn],
        summary="Load bars into the store (a job); ?wait=true waits for its end",
        description="Answers 202 with the job's id and links at once. With ``wait=true`` it "
        "waits up to ``timeout_s`` (bounded by the server) and answers 200 with the old "
        "response shape (status, fetched_bars, cached_before, gaps_analyzed, "
        "segments_fetched, ib_requests_made, execution_time_s) once the job has ended, or "
        "202 with the counts so far when the wait ran out.",
        responses={
            200: ResponseSpec(
                LoadOut, description="waited: the job ended", generate_examples=False
            ),
            **problem_responses(400, 401, 503, 504),
        },
    )
    async def load(
        self,
        gateway: GatewayDep,
        events: EventsDep,
        settings: SettingsDep,
        data: Annotated[
            LoadIn,
            Body(
                examples=[
                    Example(
                        summary="the tail of AAPL hourly bars",
                        value={"symbol": "AAPL", "timeframe": "1h"},
                    ),
                    Example(
                        summary="a range",
                        value={
                            "symbol": "EURUSD",
                            "timeframe": "5m",
                            "mode": "full",
                            "start": "2024-01-02T00:00:00Z",
                            "end": "2024-02-01T00:00:00Z",
                        },
                    ),
                    Example(
                        summary="one futures month, regular trading hours only",
                        value={
                            "symbol": "ES",
                            "timeframe": "1h",
                            "mode": "full",
                            "instrument_type": "FUT",
                            "use_rth": True,
                            "contract": {"contract_month": "202403", "exchange": "CME"},
                        },
                    ),
                ]
            ),
        ],
        wait: Annotated[bool, Parameter(description="Wait for the job to end.")] = False,
        timeout_s: Annotated[
            float | None,
            Parameter(gt=0, le=3600, description="Seconds to wait (at most KTRDR_API_WAIT_MAX_S)."),
        ] = None,
    ) -> Response[LoadOut]:
        """Publish ``LoadData``; answer the job's links, or wait for its result."""
        job_id = new_job_id()
        command = LoadData(
            job_id=job_id,
            symbol=data.symbol.upper(),
            timeframe=data.timeframe,
            mode=data.mode,
            start=_utc(data.start),
            end=_utc(data.end),
            instrument_type=data.instrument_type,
            what_to_show=data.what_to_show,
            contract=data.contract,
            use_rth=data.use_rth,
        )
        headers = {"Location": job_links(job_id).self}
        if not wait:
            await gateway.send_command(subjects.CMD_DATA_LOAD, command)
            return Response(load_out(JobState(job_id=job_id)), status_code=202, headers=headers)
        bound = min(timeout_s or settings.api_wait_max_s, settings.api_wait_max_s)
        state = JobState(job_id=job_id)
        async with events.follow(job_id) as follower:  # subscribed before the command goes out
            await gateway.send_command(subjects.CMD_DATA_LOAD, command)
            deadline = asyncio.get_running_loop().time() + bound
            while not state.status.is_terminal:
                left = deadline - asyncio.get_running_loop().time()
                logged = await follower.next(left) if left > 0 else None
                if logged is None:
                    break
                apply(state, logged.event)
        status = 200 if state.status.is_terminal else 202
        return Response(load_out(state), status_code=status, headers=headers)

    @get(
        operation_id="listDatasets",
        summary="Every stored dataset (with coverage on request)",
        responses=problem_responses(400, 401, 502, 503, 504),
    )
    async def datasets(
        self,
        gateway: GatewayDep,
        coverage: Annotated[
            bool,
            Parameter(
                description="Add stored ranges and gaps per dataset (one more request each)."
            ),
        ] = False,
    ) -> DatasetsOut:
        """Ask the data-store for its datasets (and each one's coverage)."""
        found = await gateway.request(subjects.STORE_DATASETS, StatusRequest(), DatasetList)
        if not coverage:
            return DatasetsOut(datasets=[dataset_out(d) for d in found.datasets])
        limit = asyncio.Semaphore(8)

        async def with_coverage(d: Any) -> Any:
            if d.damaged:  # its coverage would only answer dataset_damaged: list it as it is
                return dataset_out(d)
            async with limit:
                request = CoverageRequest(symbol=d.symbol, timeframe=d.timeframe)
                return dataset_out(
                    d, await gateway.request(subjects.STORE_COVERAGE, request, Coverage)
                )

        return DatasetsOut(datasets=list(await asyncio.gather(*map(with_coverage, found.datasets))))

    @get(
        "/{symbol:str}/{timeframe:str}/coverage",
        operation_id="getCoverage",
        summary="What is stored, what is missing, and what IB already answered empty",
        description="A dataset never loaded (no bar stored, no range IB answered) is a 404 "
        "whose ``hint`` says how to load it. With ``days=true`` the answer also lists "
        "``days``: each calendar date of ``start``..``end`` (else of the dataset's bars, gaps "
        "and answered-empty ranges), up to now, oldest first, at most 20 years of them (the "
        "latest), each dated as its session is named (a forex or futures session that opens "
        "the evening before counts for the next day) with its ``state``: ``stored`` (every "
        "bar of the session is stored, or what is not IB answered empty), ``partial`` (some "
        "bars, and a gap a load would fill), ``gap`` (no bars, and a gap), ``empty`` (no "
        "bars, IB answered empty), ``closed`` (no session: a weekend or a holiday of the "
        "market's calendar) or ``none`` (a session outside what the dataset covers or was "
        "asked).",
        responses={**problem_responses(400, 401, 502, 503, 504), **DAMAGED, **NOT_LOADED},
    )
    async def coverage(
        self,
        gateway: GatewayDep,
        symbol: PathSymbol,
        timeframe: PathTimeframe,
        start: Start = None,
        end: End = None,
        days: Annotated[
            bool, Parameter(description="Add the state of each calendar date (``days``).")
        ] = False,
    ) -> CoverageOut:
        """Ask the data-store for one dataset's coverage (and its days, when asked)."""
        first, last = query_range(start, end)
        message = CoverageRequest(
            symbol=symbol.upper(), timeframe=timeframe, start=first, end=last, days=days
        )
        return coverage_out(await gateway.request(subjects.STORE_COVERAGE, message, Coverage))

    @get(
        "/{symbol:str}/{timeframe:str}",
        operation_id="getBars",
        summary="One page of stored bars: JSON, CSV or an Arrow IPC stream (by Accept)",
        description="``Accept: text/csv`` answers CSV and ``Accept: "
        "application/vnd.apache.arrow.stream`` an Arrow IPC stream (``format`` overrides "
        "Accept). A page holds at most ``limit`` bars and fewer when the page would not fit "
        "one NATS message; the next page is at ``links.next`` (JSON) or in the ``Link`` "
        "header (``rel=next``) and ``X-Next-Cursor``. A dataset never loaded is a 404 whose "
        "``hint`` says how to load it; a range with no bars of a stored dataset is an empty "
        "page.",
        operation_class=BarsOperation,
        responses={**problem_responses(400, 401, 502, 503, 504), **DAMAGED, **NOT_LOADED},
    )
    async def bars(
        self,
        request: Request[Any, Any, Any],
        gateway: GatewayDep,
        symbol: PathSymbol,
        timeframe: PathTimeframe,
        start: Start = None,
        end: End = None,
        limit: Annotated[int, Parameter(ge=1, le=100_000, description="Bars per page.")] = 10_000,
        cursor: Annotated[
            str | None,
            Parameter(max_length=256, description="``next_cursor`` of the previous page."),
        ] = None,
        format: Annotated[
            BarFormat | None, Parameter(description="json, csv or arrow (overrides Accept).")
        ] = None,
    ) -> Response[BarsOut]:
        """Ask the data-store for one page and answer it in the representation asked for."""
        media = _media_type(request, format)
        first, last = query_range(start, end)
        query = QueryBars(
            symbol=symbol.upper(),
            timeframe=timeframe,
            start=first,
            end=last,
            limit=limit,
            cursor=query_cursor(cursor),
            format=QueryFormat.ARROW if media == ARROW_STREAM else QueryFormat.JSON,
        )
        if media == ARROW_STREAM:
            answer = await gateway.request_raw(subjects.STORE_QUERY, query)
            next_cursor = _arrow_cursor(answer.data)
            return Response(
                answer.data,  # type: ignore[arg-type]
                media_type=ARROW_STREAM,
                headers=_next_headers(request, next_cursor),
            )
        page = await gateway.request(subjects.STORE_QUERY, query, BarsPage)
        rows = bars_from_columns(page)
        headers = _next_headers(request, page.next_cursor)
        if media == CSV:
            return Response(_csv(rows), media_type=CSV, headers=headers)  # type: ignore[arg-type]
        links = {"next": _next_url(request, page.next_cursor)} if page.next_cursor else {}
        body = BarsOut(
            symbol=page.symbol,
            timeframe=page.timeframe,
            bars=rows,
            next_cursor=page.next_cursor,
            links=links,
        )
        return Response(body, headers=headers)

    @post(
        "/{symbol:str}/{timeframe:str}/repair",
        status_code=202,
        operation_id="repairDataset",
        summary="Move a damaged dataset's unreadable files aside, forget their range, reload it",
        description="Each year file of the dataset that cannot be read, and its answered "
        "ledger if that cannot be read, is moved (never deleted) to "
        "``<data dir>/damaged/<UTC stamp>/<same path>``; the answered ranges in the moved "
        "years are forgotten (all of them when the ledger was moved) and a ``full`` load of "
        "that range is started: follow it at ``links``. A dataset with nothing unreadable "
        "answers with nothing moved and no job.",
        responses=problem_responses(400, 401, 404, 502, 503, 504),
    )
    async def repair(
        self, gateway: GatewayDep, symbol: PathSymbol, timeframe: PathTimeframe
    ) -> Response[RepairOut]:
        """Ask the data-store to repair one dataset; 404 when it has no such dataset."""
        request = RepairDataset(symbol=symbol.upper(), timeframe=timeframe)
        done = await gateway.request(subjects.STORE_REPAIR, request, DatasetRepaired)
        headers = {"Location": job_links(done.job_id).self} if done.job_id else {}
        return Response(repair_out(done), status_code=202, headers=headers)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


def _media_type(request: Request[Any, Any, Any], format: BarFormat | None) -> str:
    if format is not None:
        return _BY_FORMAT[format]
    if "accept" not in request.headers:
        return JSON
    best = request.accept.best_match([JSON, CSV, ARROW_STREAM])
    if best is None:
        raise ApiError(
            406,
            "not_acceptable",
            f"cannot answer Accept: "
            f"{request.headers.get('accept')}; use {JSON}, {CSV} or {ARROW_STREAM} "
            "(or ?format=json|csv|arrow)",
        )
    return best


def _arrow_cursor(data: bytes) -> str | None:
    import pyarrow as pa  # only this representation needs it

    metadata = pa.ipc.open_stream(data).schema.metadata or {}
    cursor = metadata.get(b"next_cursor", b"").decode()
    return cursor or None


def _next_url(request: Request[Any, Any, Any], cursor: str) -> str:
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params["cursor"] = cursor
    return f"{request.url.path}?{urlencode(params)}"


def _next_headers(request: Request[Any, Any, Any], cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    return {"Link": f'<{_next_url(request, cursor)}>; rel="next"', "X-Next-Cursor": cursor}


def _csv(rows: list[Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for bar in rows:
        writer.writerow(
            [
                bar.ts.isoformat().replace("+00:00", "Z"),
                bar.open,
                bar.high,
                bar.low,
                bar.close,
                bar.volume,
                "" if bar.wap is None else bar.wap,
                "" if bar.count is None else bar.count,
            ]
        )
    return out.getvalue()
