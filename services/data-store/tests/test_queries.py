"""ktrdr.store.query and ktrdr.store.datasets over a real nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import InvalidRequest, NotFound
from ktrdr_shared.messages import BarsPage, Coverage, DatasetList, QueryBars, StatusRequest
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import Timeframe, from_unix_nanos
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration

MIN = 60 * 10**9
T0 = 1_704_205_800 * 10**9
ROWS = 25_000


def minute_bars(count: int) -> pa.Table:
    ts = [T0 + i * MIN for i in range(count)]
    close = [100.0 + (i % 50) for i in range(count)]
    return pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": close,
            "high": close,
            "low": close,
            "close": close,
            "volume": [1.0] * count,
            "wap": close,
            "count": [3] * count,
        },
        schema=SCHEMA,
    )


@pytest.fixture
async def data_store(nats_url: str, tmp_path: Path) -> AsyncIterator[ServiceApp]:
    ParquetBarStore(tmp_path).merge("AAPL", Timeframe.M1, minute_bars(ROWS))
    app = build_app(
        DataStoreSettings.from_env({"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(tmp_path)})
    )
    await app.start()
    yield app
    await app.stop()


async def test_query_pages_under_the_payload_limit_until_done(
    data_store: ServiceApp, nc: NATS
) -> None:
    client = KtrdrClient(nc)
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        request = QueryBars(symbol="aapl", timeframe=Timeframe.M1, limit=100_000, cursor=cursor)
        reply = await nc.request(subjects.STORE_QUERY, _encode(request), timeout=10)
        assert len(reply.data) < nc.max_payload
        page = await client.request(subjects.STORE_QUERY, request, BarsPage)
        seen += page.ts
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages > 1
    assert seen == [T0 + i * MIN for i in range(ROWS)]


async def test_query_range_is_half_open_and_arrow_works(data_store: ServiceApp, nc: NATS) -> None:
    request = QueryBars(
        symbol="AAPL",
        timeframe=Timeframe.M1,
        start=from_unix_nanos(T0 + 10 * MIN),
        end=from_unix_nanos(T0 + 20 * MIN),
        format="arrow",
    )  # type: ignore[arg-type]
    reply = await nc.request(subjects.STORE_QUERY, _encode(request), timeout=10)
    assert reply.headers is not None
    assert reply.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
    table = pa.ipc.open_stream(reply.data).read_all()
    assert table.num_rows == 10
    assert table.column("ts").cast(pa.int64())[0].as_py() == T0 + 10 * MIN
    assert table.schema.metadata[b"next_cursor"] == b""


async def test_bad_queries_get_specific_errors(data_store: ServiceApp, nc: NATS) -> None:
    client = KtrdrClient(nc)
    with pytest.raises(InvalidRequest, match=r"'start'.*must be before 'end'"):
        await client.request(
            subjects.STORE_QUERY,
            {
                "symbol": "AAPL",
                "timeframe": "1m",
                "start": "2024-02-01T00:00:00Z",
                "end": "2024-01-01T00:00:00Z",
            },
            BarsPage,
        )
    with pytest.raises(InvalidRequest, match="invalid cursor"):
        await client.request(
            subjects.STORE_QUERY, {"symbol": "AAPL", "timeframe": "1m", "cursor": "%%%"}, BarsPage
        )
    # a range with nothing in it, of a dataset that holds bars: an empty page, not an error
    empty = await client.request(
        subjects.STORE_QUERY,
        {"symbol": "AAPL", "timeframe": "1m", "start": "2030-01-01T00:00:00Z"},
        BarsPage,
    )
    assert empty.ts == []
    assert empty.next_cursor is None


LOAD_HINT = (
    'load it: `ktrdr data load MSFT 1m` or POST /api/v1/data/load {"symbol": "MSFT", '
    '"timeframe": "1m"} (LoadData on ktrdr.cmd.data.load)'
)


@pytest.mark.parametrize(
    ("subject", "reply_type"),
    [(subjects.STORE_QUERY, BarsPage), (subjects.STORE_COVERAGE, Coverage)],
)
async def test_a_dataset_never_loaded_is_not_found_and_says_how_to_load_it(
    data_store: ServiceApp, nc: NATS, subject: str, reply_type: type
) -> None:
    with pytest.raises(NotFound) as caught:
        await KtrdrClient(nc).request(subject, {"symbol": "msft", "timeframe": "1m"}, reply_type)
    assert caught.value.message == f"nothing is stored for MSFT 1m; {LOAD_HINT}"
    assert caught.value.details == {"symbol": "MSFT", "timeframe": "1m", "hint": LOAD_HINT}


async def test_a_dataset_ib_answered_empty_is_no_error(
    data_store: ServiceApp, nc: NATS, tmp_path: Path
) -> None:
    AnsweredLedger(tmp_path).add("MSFT", Timeframe.M1, [(T0, T0 + 60 * MIN)])
    client = KtrdrClient(nc)
    page = await client.request(
        subjects.STORE_QUERY, {"symbol": "MSFT", "timeframe": "1m"}, BarsPage
    )
    assert page.ts == []
    coverage = await client.request(
        subjects.STORE_COVERAGE, {"symbol": "MSFT", "timeframe": "1m"}, Coverage
    )
    assert coverage.rows == 0


async def test_datasets_lists_what_is_stored(data_store: ServiceApp, nc: NATS) -> None:
    listing = await KtrdrClient(nc).request(subjects.STORE_DATASETS, StatusRequest(), DatasetList)
    [only] = listing.datasets
    assert (only.symbol, only.timeframe, only.rows) == ("AAPL", Timeframe.M1, ROWS)
    assert only.first == from_unix_nanos(T0)


def _encode(message: object) -> bytes:
    return codec.encode(message)
