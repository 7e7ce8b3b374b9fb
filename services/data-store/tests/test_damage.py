"""Damage stays with the dataset that has it: one unreadable file never poisons the store.

Each test damages exactly one file on disk (a truncated year file, a garbled ledger) and checks
that the listing answers for every dataset with only the damaged one marked, that the other
datasets' files are untouched, and that coverage and queries of the damaged dataset answer
``dataset_damaged`` naming the file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.coverage import coverage_of
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.queries import dataset_list, query_page
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import DatasetDamaged, KtrdrError
from ktrdr_shared.messages import (
    BarsPage,
    Coverage,
    CoverageRequest,
    DatasetList,
    QueryBars,
    StatusRequest,
)
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import Timeframe
from nats.aio.client import Client as NATS

HOUR = 3600 * 10**9
H1 = Timeframe.H1
T2023 = 1_688_108_400 * 10**9  # 2023-06-30 07:00 UTC, a Friday
T2024 = 1_718_607_600 * 10**9  # 2024-06-17 07:00 UTC, a Monday
UTC = dt.UTC
StartStore = Callable[..., Awaitable[ServiceApp]]


def bars(first_ns: int, n: int) -> pa.Table:
    ts = [first_ns + i * HOUR for i in range(n)]
    return pa.Table.from_pylist(
        [{"ts": t, "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0} for t in ts],
        schema=SCHEMA,
    )


def fill(root: Path) -> dict[Path, bytes]:
    """Store AAPL 1h (2023 and 2024), MSFT 1h and EURUSD 1d; return every file's bytes."""
    store, ledger = ParquetBarStore(root), AnsweredLedger(root)
    for symbol, timeframe in [
        ("AAPL", Timeframe.H1),
        ("MSFT", Timeframe.H1),
        ("EURUSD", Timeframe.D1),
    ]:
        store.merge(symbol, timeframe, bars(T2023, 5))
        store.merge(symbol, timeframe, bars(T2024, 5))
        ledger.add(symbol, timeframe, [(T2023, T2023 + 5 * HOUR), (T2024, T2024 + 5 * HOUR)])
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def unchanged_but(root: Path, before: dict[Path, bytes], damaged: Path) -> None:
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert set(after) == set(before)
    assert {p for p in before if before[p] != after[p]} == {damaged}


@pytest.mark.unit
def test_a_truncated_year_file_damages_only_its_dataset(tmp_path: Path) -> None:
    before = fill(tmp_path)
    bad = tmp_path / "bars/AAPL/1h/2024.parquet"
    truncate(bad)
    store, ledger = ParquetBarStore(tmp_path), AnsweredLedger(tmp_path)

    listed = {(d.symbol, d.timeframe.value): d for d in dataset_list(store, ledger).datasets}
    assert set(listed) == {("AAPL", "1h"), ("MSFT", "1h"), ("EURUSD", "1d")}
    damage = listed["AAPL", "1h"].damaged
    assert damage is not None and damage.startswith("bars/AAPL/1h/2024.parquet: ")
    assert listed["AAPL", "1h"].rows == 5  # the readable 2023 file still counts
    assert listed["MSFT", "1h"].damaged is None and listed["MSFT", "1h"].rows == 10
    assert listed["EURUSD", "1d"].damaged is None and listed["EURUSD", "1d"].rows == 10

    with pytest.raises(DatasetDamaged, match=r"bars/AAPL/1h/2024\.parquet: .*move the file aside"):
        coverage_of(store, ledger, CoverageRequest(symbol="AAPL", timeframe=H1))
    with pytest.raises(DatasetDamaged, match=r"bars/AAPL/1h/2024\.parquet"):
        query_page(store, QueryBars(symbol="AAPL", timeframe=H1), 1 << 20)
    # a query that does not touch the damaged year still answers
    until_2024 = QueryBars(symbol="AAPL", timeframe=H1, end=dt.datetime(2024, 1, 1, tzinfo=UTC))
    table, _ = query_page(store, until_2024, 1 << 20)
    assert table.num_rows == 5
    assert coverage_of(store, ledger, CoverageRequest(symbol="MSFT", timeframe=H1)).rows == 10
    assert query_page(store, QueryBars(symbol="MSFT", timeframe=H1), 1 << 20)[0].num_rows == 10
    unchanged_but(tmp_path, before, bad)


@pytest.mark.unit
@pytest.mark.parametrize("garbage", [b"", b"\x00\xff garbage", b"[[1, 2], [3", b'{"a": 1}'])
def test_a_garbled_ledger_damages_only_its_dataset(tmp_path: Path, garbage: bytes) -> None:
    before = fill(tmp_path)
    bad = tmp_path / "answered/MSFT.1h.json"
    bad.write_bytes(garbage)
    store, ledger = ParquetBarStore(tmp_path), AnsweredLedger(tmp_path)

    listed = {(d.symbol, d.timeframe.value): d for d in dataset_list(store, ledger).datasets}
    assert set(listed) == {("AAPL", "1h"), ("MSFT", "1h"), ("EURUSD", "1d")}
    damage = listed["MSFT", "1h"].damaged
    assert damage is not None and damage.startswith("answered/MSFT.1h.json: ")
    assert listed["MSFT", "1h"].rows == 10
    assert [d.damaged for k, d in listed.items() if k != ("MSFT", "1h")] == [None, None]

    with pytest.raises(DatasetDamaged, match=r"answered/MSFT\.1h\.json: .*move the file aside"):
        coverage_of(store, ledger, CoverageRequest(symbol="MSFT", timeframe=H1))
    with pytest.raises(DatasetDamaged, match=r"answered/MSFT\.1h\.json"):
        ledger.add("MSFT", Timeframe.H1, [(0, 1)])  # never overwritten with a guess
    assert coverage_of(store, ledger, CoverageRequest(symbol="AAPL", timeframe=H1)).rows == 10
    unchanged_but(tmp_path, before, bad)


@pytest.mark.integration
async def test_over_nats_damage_answers_a_named_error_and_the_rest_answers(
    start_store: StartStore, nc: NATS, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    before = fill(data_dir)
    bad = data_dir / "bars/AAPL/1h/2024.parquet"
    truncate(bad)
    await start_store()
    client = KtrdrClient(nc)

    found = await client.request(subjects.STORE_DATASETS, StatusRequest(), DatasetList)
    damaged = {(d.symbol, d.timeframe.value): d.damaged for d in found.datasets}
    assert set(damaged) == {("AAPL", "1h"), ("MSFT", "1h"), ("EURUSD", "1d")}
    assert damaged["AAPL", "1h"] is not None
    assert damaged["MSFT", "1h"] is None and damaged["EURUSD", "1d"] is None

    asks = [
        client.request(
            subjects.STORE_COVERAGE, CoverageRequest(symbol="AAPL", timeframe=H1), Coverage
        ),
        client.request(subjects.STORE_QUERY, QueryBars(symbol="AAPL", timeframe=H1), BarsPage),
    ]
    for ask in asks:
        with pytest.raises(KtrdrError) as caught:
            await ask
        assert caught.value.code == "dataset_damaged"
        assert "bars/AAPL/1h/2024.parquet" in caught.value.message
        assert caught.value.details["file"] == "bars/AAPL/1h/2024.parquet"

    msft = CoverageRequest(symbol="MSFT", timeframe=H1)
    assert (await client.request(subjects.STORE_COVERAGE, msft, Coverage)).rows == 10
    unchanged_but(data_dir, before, bad)
