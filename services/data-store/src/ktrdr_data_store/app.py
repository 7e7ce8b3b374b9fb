"""The data-store's lifecycle: connect, declare, ingest and serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import functools
import time

import nats.errors
import nats.js.errors
from ktrdr_shared import codec, streams, subjects
from ktrdr_shared.client import new_job_id
from ktrdr_shared.consumer import PullConsumer
from ktrdr_shared.errors import InvalidRequest, NotFound, RetryableError
from ktrdr_shared.messages import (
    BarsPage,
    Coverage,
    CoverageRequest,
    DatasetList,
    DatasetRepaired,
    DeleteQuarantined,
    ListQuarantine,
    LoadData,
    QuarantineDeleted,
    QuarantineList,
    QuarantineReleased,
    QueryBars,
    QueryFormat,
    ReleaseQuarantined,
    RepairDataset,
    StatusRequest,
)
from ktrdr_shared.runtime import RawReply, ServiceApp, run_main
from ktrdr_shared.store.remote import open_bucket
from ktrdr_shared.types import symbol_key, utc_now
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_data_store import __version__, queries
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.coverage import coverage_of
from ktrdr_data_store.gapfill import run_gap_filler
from ktrdr_data_store.ingest import Ingestor
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.loads import LoadRunner
from ktrdr_data_store.objstore import ObjectBarStore
from ktrdr_data_store.quarantine import (
    Quarantine,
    quarantine_list,
    quarantined_per_dataset,
    release_headers,
)
from ktrdr_data_store.repair import reload_command, repair_dataset, repaired
from ktrdr_data_store.storage import is_full, storage_full
from ktrdr_data_store.store import BarStore, ParquetBarStore

SERVICE_NAME = "data-store"


def open_store(settings: DataStoreSettings) -> BarStore:
    """Return the bar store: the local data directory, or the bucket of ``store_url``.

    Raises:
        ConfigError: ``store_url`` is not ``s3://<bucket>/<prefix>``.
    """
    if not settings.store_url:
        return ParquetBarStore(settings.data_dir)
    bucket = open_bucket(
        settings.store_url,
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key.reveal() if settings.s3_secret_key else "",
        region=settings.s3_region,
    )
    return ObjectBarStore(bucket)


def build_app(settings: DataStoreSettings) -> ServiceApp:
    """Return the data-store service, ready to start."""
    app = ServiceApp(
        name=SERVICE_NAME,
        version=__version__,
        settings=settings,
        description="the Parquet bar store: ingest, gap planning, load jobs, queries",
    )

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await app.prepare(js, streams.DATA_COMMANDS, streams.STORE_BARS)
        store = open_store(settings)
        ledger = AnsweredLedger(settings.data_dir)
        quarantine = Quarantine.under(
            settings.data_dir,
            max_bytes=settings.quarantine_max_bytes,
            max_age_days=settings.quarantine_max_age_days,
        )
        runner = LoadRunner.on_nats(nc, store, ledger, settings)
        app.background(
            Ingestor(
                js=js,
                store=store,
                ledger=ledger,
                quarantine=quarantine,
                on_durable=runner.on_durable,
                segments=runner.segments,
                on_storage=runner.on_storage,
                retry_delay_s=settings.ingest_retry_delay_s,
                retry_delay_max_s=settings.ingest_retry_max_delay_s,
                write_attempts=settings.ingest_write_attempts,
                declare=settings.declares,
            ).run
        )
        app.background(runner.follow)
        app.background(
            functools.partial(run_gap_filler, runner, store, settings.gap_fill_interval_s)
        )
        app.background(
            PullConsumer(
                js=js,
                spec=streams.DATA_COMMANDS,
                handler=runner.handle_command,
                on_permanent=runner.on_rejected,
                declare=settings.declares,
            ).run
        )

        @app.endpoint("query", subjects.STORE_QUERY, QueryBars, "a page of stored bars")
        async def query(request: QueryBars) -> BarsPage | RawReply:
            table, cursor = await asyncio.to_thread(
                queries.query_page, store, request, nc.max_payload, ledger
            )
            if request.format is QueryFormat.ARROW:
                return RawReply(queries.arrow_page(table, cursor), queries.ARROW_STREAM)
            return queries.json_page(request, table, cursor)

        @app.endpoint(
            "coverage",
            subjects.STORE_COVERAGE,
            CoverageRequest,
            "stored ranges, gaps and answered-empty ranges of one dataset",
        )
        async def coverage(request: CoverageRequest) -> Coverage:
            await asyncio.to_thread(
                queries.require_loaded, store, ledger, request.symbol, request.timeframe
            )
            known = await asyncio.to_thread(runner.instruments.get, request.symbol)
            instrument_type, exchange = known if known is not None else (None, None)
            profile = await asyncio.to_thread(
                runner.profiles.get, request.symbol, request.timeframe
            )
            return await asyncio.to_thread(
                coverage_of,
                store,
                ledger,
                request,
                instrument_type=instrument_type,
                exchange=exchange,
                use_rth=profile.use_rth,
            )

        @app.endpoint("datasets", subjects.STORE_DATASETS, StatusRequest, "every stored dataset")
        async def datasets(_: StatusRequest) -> DatasetList:
            rejected = await asyncio.to_thread(quarantine.list)
            return await asyncio.to_thread(
                queries.dataset_list,
                store,
                ledger,
                profiles=runner.profiles,
                quarantined=quarantined_per_dataset(rejected),
            )

        @app.endpoint(
            "quarantine",
            subjects.STORE_QUARANTINE,
            ListQuarantine,
            "rejected bar batches kept whole, newest first",
        )
        async def list_quarantine(_: ListQuarantine) -> QuarantineList:
            return await asyncio.to_thread(quarantine_list, quarantine)

        @app.endpoint(
            "quarantine_delete",
            subjects.STORE_QUARANTINE_DELETE,
            DeleteQuarantined,
            "forget one quarantined batch",
        )
        async def delete_quarantined(request: DeleteQuarantined) -> QuarantineDeleted:
            if not await asyncio.to_thread(quarantine.delete, request.id):
                raise NotFound(
                    f"no quarantined batch {request.id!r}; list them with ktrdr.store.quarantine"
                )
            return QuarantineDeleted(id=request.id)

        @app.endpoint(
            "quarantine_release",
            subjects.STORE_QUARANTINE_RELEASE,
            ReleaseQuarantined,
            "send one quarantined batch through ingest again",
        )
        async def release_quarantined(request: ReleaseQuarantined) -> QuarantineReleased:
            now_ns = time.time_ns()
            held = await asyncio.to_thread(quarantine.hold, request.id, now_ns)
            if held is None:
                raise NotFound(
                    f"no quarantined batch {request.id!r}; list them with ktrdr.store.quarantine"
                )
            try:
                if not held.meta.subject.startswith(subjects.BARS_ALL.removesuffix(">")):
                    raise InvalidRequest(
                        f"quarantined message {held.id} came on "
                        f"{held.meta.subject!r}, not a bar subject; it cannot "
                        "be released (delete it instead)"
                    )
                await _publish(
                    js, held.meta.subject, held.payload, release_headers(held, now_ns // 10**6)
                )
            except BaseException:
                await asyncio.to_thread(quarantine.restore, held)
                raise
            await asyncio.to_thread(quarantine.discard, held)
            return QuarantineReleased(id=held.id, subject=held.meta.subject)

        @app.endpoint(
            "repair",
            subjects.STORE_REPAIR,
            RepairDataset,
            "move a dataset's unreadable files aside, forget their range, reload it",
        )
        async def repair(request: RepairDataset) -> DatasetRepaired:
            if not isinstance(store, ParquetBarStore):
                raise InvalidRequest(
                    f"repair moves damaged year files aside in the local data directory; the "
                    f"bars of this store are in {settings.store_url}: delete the damaged "
                    "object named by the dataset's 'damaged' field and load its range again",
                    details={"store_url": settings.store_url},
                )
            try:
                done = await asyncio.to_thread(
                    repair_dataset, store, ledger, request.symbol, request.timeframe, utc_now()
                )
            except OSError as e:
                if is_full(e):  # the ledger's rewrite: say so, naming the data directory
                    raise storage_full(settings.data_dir, e) from e
                raise
            runner.forget(symbol_key(request.symbol), request.timeframe)
            command = reload_command(request.symbol, request.timeframe, done, new_job_id())
            if command is None:
                return repaired(request.symbol, request.timeframe, done, None)
            try:
                await _publish(
                    js,
                    subjects.CMD_DATA_LOAD,
                    codec.encode(command),
                    {"Nats-Msg-Id": str(command.job_id)},
                )
            except RetryableError as e:
                raise RetryableError(
                    f"moved {', '.join(done.moved)} aside but could not start "
                    f"the reload ({e.message}); run `ktrdr data load "
                    f"{request.symbol} {request.timeframe.value} --mode full"
                    f"{_range_options(command)}`"
                ) from e
            return repaired(request.symbol, request.timeframe, done, command.job_id)

    app.setup = setup
    return app


async def _publish(
    js: JetStreamContext, subject: str, payload: bytes, headers: dict[str, str]
) -> None:
    """Publish to JetStream and wait for its ack; no ack is a retryable ``unavailable``."""
    try:
        await js.publish(subject, payload, headers=headers)
    except (
        nats.errors.TimeoutError,
        nats.errors.NoRespondersError,
        nats.js.errors.NoStreamResponseError,
    ) as e:
        raise RetryableError(
            f"JetStream did not confirm the publish on {subject}; try again"
        ) from e


def _range_options(command: LoadData) -> str:
    if command.start is None or command.end is None:
        return ""
    return f" --start {command.start.isoformat()} --end {command.end.isoformat()}"


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(DataStoreSettings.from_env()))
