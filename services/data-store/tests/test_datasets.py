"""``ktrdr.store.datasets``'s listing: each dataset's bars, size on disk, hours and rejects."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.profiles import DatasetProfile, ProfileBook
from ktrdr_data_store.quarantine import Quarantine, quarantined_per_dataset
from ktrdr_data_store.queries import dataset_list
from ktrdr_data_store.store import SCHEMA, MemoryBarStore, ParquetBarStore
from ktrdr_shared.messages import DatasetInfo
from ktrdr_shared.types import Timeframe, from_unix_nanos

pytestmark = pytest.mark.unit

HOUR = 3_600 * 10**9
T2023 = 1_688_108_400 * 10**9  # 2023-06-30 07:00 UTC
T2024 = 1_718_607_600 * 10**9  # 2024-06-17 07:00 UTC
H1, D1 = Timeframe.H1, Timeframe.D1


def bars(first_ns: int, n: int) -> pa.Table:
    ts = [first_ns + i * HOUR for i in range(n)]
    row = {"open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0}
    return pa.Table.from_pylist([{"ts": t, **row} for t in ts], schema=SCHEMA)


def test_a_parquet_dataset_counts_the_bytes_of_its_year_files(tmp_path: Path) -> None:
    store = ParquetBarStore(tmp_path)
    store.merge("AAPL", H1, bars(T2023, 5))
    store.merge("AAPL", H1, bars(T2024, 7))
    files = sorted((tmp_path / "bars" / "AAPL" / "1h").glob("*.parquet"))
    assert len(files) == 2
    [listed] = dataset_list(store).datasets
    assert listed.bytes == sum(f.stat().st_size for f in files) > 0
    assert store.stats("AAPL", H1).bytes == listed.bytes


def test_a_damaged_file_still_counts_on_disk(tmp_path: Path) -> None:
    store = ParquetBarStore(tmp_path)
    store.merge("AAPL", H1, bars(T2024, 5))
    (tmp_path / "bars" / "AAPL" / "1h" / "2024.parquet").write_bytes(b"not parquet")
    [listed] = dataset_list(store).datasets
    assert listed.damaged is not None and listed.bytes == len(b"not parquet")


def test_the_listing_carries_each_datasets_hours_and_quarantined_batches(tmp_path: Path) -> None:
    store, profiles, quarantine = (
        MemoryBarStore(),
        ProfileBook(tmp_path),
        Quarantine.under(tmp_path),
    )
    store.merge("BRK B", H1, bars(T2024, 3))
    store.merge("EURUSD", D1, bars(T2024, 1))
    profiles.claim("BRK B", H1, DatasetProfile(use_rth=True), has_bars=False)
    for payload in (b"one", b"two"):
        quarantine.put(subject="ktrdr.bars.BRK_B.1h", payload=payload, code="c", message="m")
    quarantine.put(subject="ktrdr.bars.MSFT.1h", payload=b"x", code="c", message="m")
    listed = dataset_list(
        store,
        AnsweredLedger(tmp_path),
        profiles=profiles,
        quarantined=quarantined_per_dataset(quarantine.list()),
    )
    first = from_unix_nanos(T2024)
    assert listed.datasets == [
        DatasetInfo(symbol="BRK_B", timeframe=H1, rows=3, first=first,
                    last=from_unix_nanos(T2024 + 2 * HOUR), use_rth=True, quarantined=2),
        DatasetInfo(symbol="EURUSD", timeframe=D1, rows=1, first=first, last=first,
                    use_rth=False),
    ]  # fmt: skip


def test_without_profiles_the_hours_are_not_told(tmp_path: Path) -> None:
    store = MemoryBarStore()
    store.merge("AAPL", H1, bars(T2024, 1))
    [listed] = dataset_list(store).datasets
    assert (listed.use_rth, listed.quarantined, listed.bytes) == (None, 0, 0)


def test_a_listing_sees_year_files_rewritten_damaged_or_removed_since_the_last(
    tmp_path: Path,
) -> None:
    store = ParquetBarStore(tmp_path)
    store.merge("AAPL", H1, bars(T2023, 5))
    store.merge("AAPL", H1, bars(T2024, 7))
    assert [d.rows for d in store.datasets()] == [12]
    store.merge("AAPL", H1, bars(T2024 + 7 * HOUR, 3))  # the 2024 file replaced
    [after_merge] = store.datasets()
    assert (after_merge.rows, after_merge.last_ns) == (15, T2024 + 9 * HOUR)
    year_2023 = tmp_path / "bars" / "AAPL" / "1h" / "2023.parquet"
    year_2023.write_bytes(b"garbled in place")
    [damaged] = store.datasets()
    assert damaged.damaged is not None and "2023.parquet" in damaged.damaged
    assert damaged.rows == 10 and damaged.bytes > len(b"garbled in place")
    year_2023.unlink()
    [after_unlink] = store.datasets()
    assert (after_unlink.rows, after_unlink.damaged, after_unlink.first_ns) == (10, None, T2024)
    assert store.stats("AAPL", H1) == after_unlink
