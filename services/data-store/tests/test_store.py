"""One contract test suite for every BarStore, plus the Parquet store's crash safety.

The contract runs on the local Parquet store, the in-memory one and the bucket store on a
real SeaweedFS S3 server (its cases are marked integration; the rest are unit tests).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktrdr_data_store.ledger import InstrumentBook
from ktrdr_data_store.objstore import ObjectBarStore
from ktrdr_data_store.store import (
    SCHEMA,
    BarStore,
    MemoryBarStore,
    ParquetBarStore,
    merge_tables,
    table_from_batch,
)
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.testing.seaweed import SeaweedServer, store_url
from ktrdr_shared.types import InstrumentType, Timeframe

MIN = 60 * 10**9
T0 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC
TF = Timeframe.M1


def bars(minutes: list[int], price: float = 100.0) -> pa.Table:
    """Return 1-minute bars at the given minute offsets from T0 (close = price + minute)."""
    ts = [T0 + m * MIN for m in minutes]
    close = [price + m for m in minutes]
    return pa.table(
        {
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": close,
            "high": [c + 1 for c in close],
            "low": [c - 1 for c in close],
            "close": close,
            "volume": [10.0] * len(ts),
            "wap": pa.array([None] * len(ts), pa.float64()),
            "count": pa.array([None] * len(ts), pa.int64()),
        },
        schema=SCHEMA,
    )


def minutes_of(table: pa.Table) -> list[int]:
    return [(t - T0) // MIN for t in table.column("ts").cast(pa.int64()).to_pylist()]


@pytest.fixture(
    params=[
        pytest.param("parquet", marks=pytest.mark.unit),
        pytest.param("memory", marks=pytest.mark.unit),
        pytest.param("bucket", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BarStore:
    if request.param == "bucket":
        server: SeaweedServer = request.getfixturevalue("seaweed")
        bucket = server.bucket(store_url())
        return ObjectBarStore(bucket)
    return ParquetBarStore(tmp_path) if request.param == "parquet" else MemoryBarStore()


def test_merge_sorts_and_deduplicates(store: BarStore) -> None:
    assert store.merge("AAPL", TF, bars([5, 1, 3])).new_rows == 3
    assert store.merge("AAPL", TF, bars([3, 4, 2])).new_rows == 2
    assert minutes_of(store.read("AAPL", TF)) == [1, 2, 3, 4, 5]


def test_merging_the_same_bars_twice_changes_nothing(store: BarStore) -> None:
    store.merge("AAPL", TF, bars(list(range(100))))
    before = store.read("AAPL", TF)
    assert store.merge("AAPL", TF, bars(list(range(100)))).new_rows == 0
    assert store.read("AAPL", TF).equals(before)


def test_newer_bar_wins_for_the_same_timestamp(store: BarStore) -> None:
    store.merge("AAPL", TF, bars([1, 2], price=100))
    store.merge("AAPL", TF, bars([2], price=200))
    assert store.read("AAPL", TF).column("close").to_pylist() == [101.0, 202.0]


def test_read_is_half_open_and_limited(store: BarStore) -> None:
    store.merge("AAPL", TF, bars(list(range(10))))
    assert minutes_of(store.read("AAPL", TF, T0 + 2 * MIN, T0 + 5 * MIN)) == [2, 3, 4]
    assert minutes_of(store.read("AAPL", TF, T0 + 2 * MIN, limit=2)) == [2, 3]
    assert store.read("MSFT", TF).num_rows == 0


def test_datasets_and_stats_span_years(store: BarStore) -> None:
    year = 366 * 24 * 60  # 2024 is a leap year: minute offsets of 2025
    store.merge("BRK B", TF, bars([0, 1, year + 5]))
    store.merge("AAPL", Timeframe.H1, bars([0]))
    stats = store.stats("BRK B", TF)
    assert (stats.symbol_key, stats.rows) == ("BRK_B", 3)
    assert (stats.first_ns, stats.last_ns) == (T0, T0 + (year + 5) * MIN)
    assert minutes_of(store.read("BRK B", TF, T0 + MIN, T0 + (year + 6) * MIN)) == [1, year + 5]
    keys = [(d.symbol_key, d.timeframe.value, d.rows) for d in store.datasets()]
    assert keys == [("AAPL", "1h", 1), ("BRK_B", "1m", 3)]
    assert store.stats("NOPE", TF).rows == 0


@pytest.mark.unit
@settings(max_examples=60)
@given(st.lists(st.lists(st.integers(0, 300), max_size=40), min_size=1, max_size=6), st.randoms())
def test_merge_is_idempotent_commutative_sorted_unique(batches: list[list[int]], rnd) -> None:  # type: ignore[no-untyped-def]
    forward = MemoryBarStore()
    for b in batches:
        forward.merge("X", TF, bars(b))
    shuffled = list(batches)
    rnd.shuffle(shuffled)
    backward = MemoryBarStore()
    for b in shuffled + shuffled:  # another order, and everything twice
        backward.merge("X", TF, bars(b))
    got = minutes_of(forward.read("X", TF))
    assert got == sorted(set().union(*map(set, batches)))
    assert got == minutes_of(backward.read("X", TF))


@pytest.mark.unit
def test_merge_tables_keeps_the_newer_row() -> None:
    merged = merge_tables(bars([1, 2], price=1), bars([2, 3], price=5))
    assert merged.column("close").to_pylist() == [2.0, 7.0, 8.0]


@pytest.mark.unit
def test_batches_convert_with_absent_wap_and_count() -> None:
    batch = BarBatch(
        symbol="EURUSD",
        timeframe=TF,
        start=T0,
        end=T0 + 2 * MIN,
        ts=[T0, T0 + MIN],
        open=[1.1, 1.2],
        high=[1.2, 1.3],
        low=[1.0, 1.1],
        close=[1.15, 1.25],
        volume=[0.0, 0.0],
    )
    table = table_from_batch(batch)
    assert table.schema == SCHEMA
    assert table.column("wap").null_count == 2


@pytest.mark.unit
def test_files_are_plain_parquet_readable_by_pandas(tmp_path: Path) -> None:
    store = ParquetBarStore(tmp_path)
    store.merge("AAPL", TF, bars([0, 1, 2]))
    [path] = (tmp_path / "bars" / "AAPL" / "1m").glob("*.parquet")
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["ts", "open", "high", "low", "close", "volume", "wap", "count"]
    assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.unit
def test_interrupted_write_leaves_the_old_file_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ParquetBarStore(tmp_path)
    store.merge("AAPL", TF, bars([0, 1, 2]))
    directory = tmp_path / "bars" / "AAPL" / "1m"

    def crash(src: object, dst: object) -> None:  # the process dies between write and rename
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.merge("AAPL", TF, bars([3, 4]))
    monkeypatch.undo()
    assert minutes_of(ParquetBarStore(tmp_path).read("AAPL", TF)) == [0, 1, 2]
    assert [p.name for p in directory.iterdir()] == ["2024.parquet"]  # no temp file left


@pytest.mark.unit
def test_a_torn_temp_file_from_a_crash_is_ignored(tmp_path: Path) -> None:
    store = ParquetBarStore(tmp_path)
    store.merge("AAPL", TF, bars([0, 1]))
    directory = tmp_path / "bars" / "AAPL" / "1m"
    (directory / ".2024.parquet.abc.tmp").write_bytes(b"PAR1 half a file")  # kill -9 mid-write
    assert minutes_of(store.read("AAPL", TF)) == [0, 1]
    assert store.merge("AAPL", TF, bars([2])).new_rows == 1
    assert np.array_equal(minutes_of(store.read("AAPL", TF)), [0, 1, 2])


@pytest.mark.unit
def test_the_instrument_book_keeps_one_entry_per_symbol(tmp_path: Path) -> None:
    book = InstrumentBook(tmp_path)
    assert book.get("ES") is None
    book.put("es", InstrumentType.FUT, "CME")
    book.put("BRK B", InstrumentType.STK, "SMART")
    assert book.get("ES") == (InstrumentType.FUT, "CME")
    assert InstrumentBook(tmp_path).get("BRK_B") == (InstrumentType.STK, "SMART")  # by key
    book.put("ES", InstrumentType.FUT, "GLOBEX")  # a later resolution replaces it
    assert book.get("ES") == (InstrumentType.FUT, "GLOBEX")


@pytest.mark.unit
def test_the_instrument_book_gives_back_the_symbol_a_store_key_stands_for(tmp_path: Path) -> None:
    """Issue 17: the gap filler sent the store's key to IB (`BRK_B` for `BRK B`)."""
    book = InstrumentBook(tmp_path)
    book.put("BRK B", InstrumentType.STK, "SMART")
    assert InstrumentBook(tmp_path).symbol("BRK_B") == "BRK B"
    assert book.symbol("MSFT") is None  # never loaded
    (tmp_path / "instruments.json").write_text('{"AAPL": ["STK", "NASDAQ"]}')  # an older book
    assert book.get("AAPL") == (InstrumentType.STK, "NASDAQ") and book.symbol("AAPL") is None
