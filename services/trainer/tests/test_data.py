"""Bars in: Arrow pages from the data-store's own query code, and its Parquet files directly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from ktrdr_data_store import queries
from ktrdr_data_store.store import MemoryBarStore, ParquetBarStore
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import QueryBars
from ktrdr_shared.types import Timeframe, from_unix_nanos
from ktrdr_trainer.data import QueryFn, fetch_bars, fingerprint, read_parquet_bars
from ktrdr_trainer.testing import HOUR_NS, T0_NS, bars_table, synthetic_bars

pytestmark = pytest.mark.unit

BARS = synthetic_bars(5_000, pattern=True, seed=1, symbol="AAPL")


def serve_from(store: MemoryBarStore, max_payload: int, asked: list[QueryBars]) -> QueryFn:
    """A query function answering with the data-store's own page code, as its endpoint does."""

    async def query(request: QueryBars) -> bytes:
        asked.append(request)
        table, cursor = queries.query_page(store, request, max_payload)
        return queries.arrow_page(table, cursor)

    return query


async def test_fetch_pages_through_every_arrow_page_into_one_tensor() -> None:
    store = MemoryBarStore()
    store.merge("AAPL", Timeframe.H1, bars_table(BARS))
    asked: list[QueryBars] = []
    # a small payload limit forces many pages, as a big dataset would under the real limit
    got = await fetch_bars(
        serve_from(store, 64 * 1024, asked),
        "AAPL",
        Timeframe.H1,
        None,
        None,
    )
    assert len(asked) > 5
    assert all(q.format == "arrow" for q in asked)
    np.testing.assert_array_equal(got.ts, BARS.ts)
    assert torch.equal(got.values, BARS.values)
    assert got.values.is_contiguous() and got.values.dtype == torch.float64


async def test_fetch_honours_the_range_and_names_an_empty_one() -> None:
    store = MemoryBarStore()
    store.merge("AAPL", Timeframe.H1, bars_table(BARS))
    start, end = from_unix_nanos(T0_NS + 10 * HOUR_NS), from_unix_nanos(T0_NS + 30 * HOUR_NS)
    query = serve_from(store, 1 << 20, [])
    got = await fetch_bars(query, "AAPL", Timeframe.H1, start, end)
    np.testing.assert_array_equal(got.ts, BARS.ts[10:30])
    with pytest.raises(
        NotFound,
        match=r"no bars for MSFT 1h in range \(2024-01-01T10:00:00\+00:00"
        r" to 2024-01-02T06:00:00\+00:00\): load them first",
    ):
        await fetch_bars(query, "MSFT", Timeframe.H1, start, end)


def test_parquet_files_of_the_store_read_directly(tmp_path: Path) -> None:
    long = synthetic_bars(20_000, pattern=False, seed=2, symbol="BRK B")  # spans three years
    ParquetBarStore(tmp_path).merge("BRK B", Timeframe.H1, bars_table(long))
    assert len(list((tmp_path / "bars" / "BRK_B" / "1h").glob("*.parquet"))) == 3
    everything = read_parquet_bars(tmp_path, "BRK B", Timeframe.H1, None, None)
    np.testing.assert_array_equal(everything.ts, long.ts)
    assert torch.equal(everything.values, long.values)
    start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 2, tzinfo=UTC)
    day = read_parquet_bars(tmp_path, "BRK B", Timeframe.H1, start, end)
    assert len(day) == 24 and day.ts[0] == int(start.timestamp()) * 10**9
    with pytest.raises(NotFound, match="no bars for AAPL 1h"):
        read_parquet_bars(tmp_path, "AAPL", Timeframe.H1, None, None)


def test_the_fingerprint_changes_with_any_value() -> None:
    first = fingerprint([BARS], None, None)
    assert (first.rows, first.symbols, first.timeframe) == (5_000, ["AAPL"], "1h")
    assert first.first == from_unix_nanos(int(BARS.ts[0]))
    assert fingerprint([BARS], None, None) == first
    changed = BARS.values.clone()
    changed[1234, 4] += 1.0  # one volume, one share
    other = type(BARS)(BARS.symbol, BARS.timeframe, BARS.ts, changed)
    assert fingerprint([other], None, None).sha256 != first.sha256
