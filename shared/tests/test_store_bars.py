"""Bars on disk: the layout, the Parquet format and the range reader that the data-store and
the trainer share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ktrdr_shared.store import bars as on_disk
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

MIN = 60 * 10**9
T2023 = 1_672_531_200 * 10**9  # 2023-01-01 00:00 UTC
T2024 = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC


def table(stamps: list[int]) -> pa.Table:
    n = len(stamps)
    return pa.table(
        {
            "ts": pa.array(stamps, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            **{name: [float(i) for i in range(n)] for name in ("open", "high", "low", "close")},
            "volume": [1.0] * n,
            "wap": pa.nulls(n, pa.float64()),
            "count": pa.nulls(n, pa.int64()),
        },
        schema=on_disk.SCHEMA,
    )


def stored(data_dir: Path, stamps_by_year: dict[int, list[int]]) -> Path:
    directory = on_disk.dataset_dir(data_dir, "BRK B", Timeframe.M1)
    directory.mkdir(parents=True)
    for year, stamps in stamps_by_year.items():
        on_disk.write_year(table(stamps), on_disk.year_path(directory, year))
    return directory


def test_the_layout_is_bars_key_timeframe_year(tmp_path: Path) -> None:
    directory = on_disk.dataset_dir(tmp_path, "brk b", Timeframe.M1)
    assert directory == tmp_path / "bars" / "BRK_B" / "1m"
    assert on_disk.year_path(directory, 2024) == directory / "2024.parquet"


def test_year_files_are_those_of_the_range_oldest_first(tmp_path: Path) -> None:
    directory = stored(tmp_path, {2024: [T2024], 2023: [T2023]})
    (directory / ".2024.parquet.x.tmp").write_bytes(b"torn")  # a crash's leftover: not a year
    assert [p.name for p in on_disk.year_files(directory)] == ["2023.parquet", "2024.parquet"]
    assert [p.name for p in on_disk.year_files(directory, T2024)] == ["2024.parquet"]
    # the end is exclusive: a range ending at the first instant of 2024 needs no 2024 file
    assert [p.name for p in on_disk.year_files(directory, None, T2024)] == ["2023.parquet"]
    assert on_disk.year_files(tmp_path / "nothing") == []


def test_read_range_is_half_open_limited_and_spans_years(tmp_path: Path) -> None:
    stamps_2023 = [T2024 - 2 * MIN, T2024 - MIN]
    stamps_2024 = [T2024, T2024 + MIN, T2024 + 2 * MIN]
    directory = stored(tmp_path, {2023: stamps_2023, 2024: stamps_2024})

    def ts(t: pa.Table) -> list[int]:
        return [int(v) for v in t.column("ts").cast(pa.int64()).to_pylist()]

    assert ts(on_disk.read_range(directory)) == stamps_2023 + stamps_2024
    assert ts(on_disk.read_range(directory, T2024 - MIN, T2024 + MIN)) == [T2024 - MIN, T2024]
    assert ts(on_disk.read_range(directory, limit=3)) == [*stamps_2023, T2024]
    picked = on_disk.read_range(directory, columns=["ts", "close"])
    assert picked.column_names == ["ts", "close"]
    assert on_disk.read_range(tmp_path / "none", columns=["ts"]).column_names == ["ts"]


def test_files_keep_the_format_that_existing_stores_hold(tmp_path: Path) -> None:
    directory = stored(tmp_path, {2024: [T2024 + i * MIN for i in range(10)]})
    meta = pq.ParquetFile(directory / "2024.parquet").metadata
    assert meta.schema.to_arrow_schema() == on_disk.SCHEMA
    ts = meta.row_group(0).column(0)
    assert (ts.compression, ts.path_in_schema) == ("ZSTD", "ts")
    assert "DELTA_BINARY_PACKED" in ts.encodings
    # a file written by a plain pyarrow writer in the same schema reads the same
    plain = directory / "2023.parquet"
    pq.write_table(table([T2023]), plain)
    assert on_disk.read_year(plain).equals(table([T2023]))


def test_an_unreadable_year_file_is_named(tmp_path: Path) -> None:
    directory = stored(tmp_path, {2024: [T2024]})
    (directory / "2023.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(on_disk.UnreadableFile) as caught:
        on_disk.read_range(directory)
    assert caught.value.path == directory / "2023.parquet"
    assert on_disk.read_range(directory, T2024).num_rows == 1  # the range avoids it


def test_year_of_is_the_utc_calendar_year() -> None:
    assert list(on_disk.year_of(np.array([T2024 - 1, T2024]))) == [2023, 2024]
    assert on_disk.year_of_ns(T2024 - 1) == 2023
