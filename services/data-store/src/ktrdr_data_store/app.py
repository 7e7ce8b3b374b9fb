"""The data-store's lifecycle: connect, declare, ingest and serve, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import functools

from ktrdr_shared import streams, subjects
from ktrdr_shared.consumer import PullConsumer
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import (
    BarsPage,
    Coverage,
    CoverageRequest,
    DatasetList,
    DeleteQuarantined,
    ListQuarantine,
    QuarantineDeleted,
    QuarantineList,
    QueryBars,
    QueryFormat,
    StatusRequest,
)
from ktrdr_shared.runtime import RawReply, ServiceApp, run_main
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from ktrdr_data_store import __version__, queries
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.coverage import coverage_of
from ktrdr_data_store.gapfill import run_gap_filler
from ktrdr_data_store.ingest import Ingestor
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.loads import LoadRunner
from ktrdr_data_store.quarantine import Quarantine, quarantine_list
from ktrdr_data_store.store import ParquetBarStore

SERVICE_NAME = "data-store"


def build_app(settings: DataStoreSettings) -> ServiceApp:
    """Return the data-store service, ready to start."""
    app = ServiceApp(
        name=SERVICE_NAME, version=__version__, settings=settings,
        description="the Parquet bar store: ingest, gap planning, load jobs, queries",
    )  # fmt: skip

    async def setup(nc: NATS, js: JetStreamContext) -> None:
        await streams.ensure_streams(js)
        await streams.ensure_consumers(js, streams.DATA_COMMANDS, streams.STORE_BARS)
        store = ParquetBarStore(settings.data_dir)
        ledger = AnsweredLedger(settings.data_dir)
        quarantine = Quarantine.under(settings.data_dir)
        runner = LoadRunner(nc, store, ledger, settings)
        app.background(Ingestor(js=js, store=store, ledger=ledger, quarantine=quarantine,
                                on_durable=runner.on_durable).run)  # fmt: skip
        app.background(runner.follow)
        app.background(functools.partial(run_gap_filler, runner, store,
                                         settings.gap_fill_interval_s))  # fmt: skip
        app.background(PullConsumer(js=js, spec=streams.DATA_COMMANDS,
                                    handler=runner.handle_command,
                                    on_permanent=runner.on_rejected).run)  # fmt: skip

        @app.endpoint("query", subjects.STORE_QUERY, QueryBars, "a page of stored bars")
        async def query(request: QueryBars) -> BarsPage | RawReply:
            table, cursor = await asyncio.to_thread(queries.query_page, store, request,
                                                    nc.max_payload)  # fmt: skip
            if request.format is QueryFormat.ARROW:
                return RawReply(queries.arrow_page(table, cursor), queries.ARROW_STREAM)
            return queries.json_page(request, table, cursor)

        @app.endpoint("coverage", subjects.STORE_COVERAGE, CoverageRequest,
                      "stored ranges, gaps and answered-empty ranges of one dataset")  # fmt: skip
        async def coverage(request: CoverageRequest) -> Coverage:
            known = await asyncio.to_thread(runner.instruments.get, request.symbol)
            instrument_type, exchange = known if known is not None else (None, None)
            return await asyncio.to_thread(coverage_of, store, ledger, request,
                                           instrument_type=instrument_type,
                                           exchange=exchange)  # fmt: skip

        @app.endpoint("datasets", subjects.STORE_DATASETS, StatusRequest, "every stored dataset")
        async def datasets(_: StatusRequest) -> DatasetList:
            return await asyncio.to_thread(queries.dataset_list, store, ledger)

        @app.endpoint("quarantine", subjects.STORE_QUARANTINE, ListQuarantine,
                      "rejected bar batches kept whole, newest first")  # fmt: skip
        async def list_quarantine(_: ListQuarantine) -> QuarantineList:
            return quarantine_list(await asyncio.to_thread(quarantine.list))

        @app.endpoint("quarantine_delete", subjects.STORE_QUARANTINE_DELETE, DeleteQuarantined,
                      "forget one quarantined batch")  # fmt: skip
        async def delete_quarantined(request: DeleteQuarantined) -> QuarantineDeleted:
            if not await asyncio.to_thread(quarantine.delete, request.id):
                raise NotFound(f"no quarantined batch {request.id!r}; list them with "
                               "ktrdr.store.quarantine")  # fmt: skip
            return QuarantineDeleted(id=request.id)

    app.setup = setup
    return app


def main() -> None:
    """Load settings from the environment and run until SIGTERM."""
    run_main(SERVICE_NAME, lambda: build_app(DataStoreSettings.from_env()))
