"""``ktrdr-store import-csv`` and ``datasets`` on real CSV files and a real Parquet store."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.cli import main
from ktrdr_data_store.importer import (
    BAD_PRICE,
    HIGH_BELOW_LOW,
    OUTSIDE_HIGH_LOW,
    UNPARSEABLE_TIMESTAMP,
    import_file,
)
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared.types import Timeframe

pytestmark = pytest.mark.unit

T0 = 1_704_205_800 * 10**9  # 2024-01-02 14:30 UTC
MIN = 60 * 10**9
GOOD_ROWS = [
    ("2024-01-02T14:30:00+00:00", "100.0", "101.0", "99.5", "100.5", "1200"),
    ("2024-01-02T14:31:00Z", "100.5", "102.0", "100.0", "101.5", "800"),
    ("2024-01-02 14:32:00", "101.5", "101.5", "100.5", "101.0", "300"),  # naive: UTC
    ("2024-01-02T09:33:00-05:00", "101.0", "101.2", "100.8", "101.1", "0"),  # New York: 14:33
]
EXPECTED_TS = [T0 + i * MIN for i in range(4)]


def write_csv(path: Path, header: str, rows: Sequence[tuple[str, ...]]) -> Path:
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")
    return path


def stored(data_dir: Path, symbol: str, timeframe: Timeframe) -> pa.Table:
    return ParquetBarStore(data_dir).read(symbol, timeframe)


@pytest.mark.parametrize(
    "header",
    [
        "timestamp,open,high,low,close,volume",
        "Date,Open,High,Low,Close,Volume",
        "date,OPEN,HIGH,LOW,CLOSE,VOLUME",
        ",open,high,low,close,volume",  # pandas' unnamed index column
        "open_time,Open,High,Low,Close,Volume",  # another name, but first
    ],
)
def test_every_header_form_and_timestamp_form_imports_the_same_bars(
    header: str, tmp_path: Path
) -> None:
    write_csv(tmp_path / "AAPL_1m.csv", header, GOOD_ROWS)
    assert main(["import-csv", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 0
    table = stored(tmp_path / "data", "AAPL", Timeframe.M1)
    assert table.column("ts").cast(pa.int64()).to_pylist() == EXPECTED_TS
    assert table.column("close").to_pylist() == [100.5, 101.5, 101.0, 101.1]
    assert table.column("volume").to_pylist() == [1200.0, 800.0, 300.0, 0.0]
    assert table.schema == SCHEMA


def test_bad_rows_are_rejected_with_their_reason_and_the_rest_stored(tmp_path: Path) -> None:
    rows = [
        *GOOD_ROWS,
        ("yesterday", "1", "2", "0.5", "1"),
        ("", "1", "2", "0.5", "1"),
        ("2024-01-02T14:40:00Z", "", "2", "0.5", "1"),
        ("2024-01-02T14:41:00Z", "nan", "2", "0.5", "1"),
        ("2024-01-02T14:42:00Z", "abc", "2", "0.5", "1"),
        ("2024-01-02T14:43:00Z", "1", "inf", "0.5", "1"),
        ("2024-01-02T14:44:00Z", "-1", "2", "0.5", "1"),
        ("2024-01-02T14:45:00Z", "1", "0.4", "0.5", "1"),
        ("2024-01-02T14:46:00Z", "1", "2", "0.5", "1"),  # a good one after the bad ones
    ]
    path = write_csv(
        tmp_path / "MSFT_1m.csv", "timestamp,open,high,low,close", [r[:5] for r in rows]
    )
    report = import_file(ParquetBarStore(tmp_path / "data"), path)
    assert report.skipped is None
    assert (report.rows_read, report.stored, report.duplicates) == (13, 5, 0)
    counts = {reason: r.count for reason, r in report.rejects.items()}
    assert counts == {
        UNPARSEABLE_TIMESTAMP: 2,
        BAD_PRICE: 4,
        OUTSIDE_HIGH_LOW: 1,
        HIGH_BELOW_LOW: 1,
    }
    assert report.rejects[UNPARSEABLE_TIMESTAMP].first_line == 6  # line 1 is the header
    assert "yesterday" in report.rejects[UNPARSEABLE_TIMESTAMP].example
    assert report.rejects[HIGH_BELOW_LOW].first_line == 13
    minutes = [
        (t - T0) // MIN
        for t in stored(tmp_path / "data", "MSFT", Timeframe.M1)
        .column("ts")
        .cast(pa.int64())
        .to_pylist()
    ]
    assert minutes == [0, 1, 2, 3, 16]
    assert stored(tmp_path / "data", "MSFT", Timeframe.M1).column("volume").to_pylist() == [0.0] * 5


def test_negative_prices_are_imported_as_data(tmp_path: Path) -> None:
    # the May 2020 WTI future (CL) on 2020-04-20: low -40.32, close -37.63
    rows = [("2020-04-20T00:00:00Z", "17.73", "17.85", "-40.32", "-37.63")]
    path = write_csv(tmp_path / "CL_1d.csv", "timestamp,open,high,low,close", rows)
    report = import_file(ParquetBarStore(tmp_path / "data"), path)
    assert (report.stored, report.rejects) == (1, {})
    table = stored(tmp_path / "data", "CL", Timeframe.D1)
    assert table.column("low").to_pylist() == [-40.32]
    assert table.column("close").to_pylist() == [-37.63]


def test_missing_or_negative_volume_is_stored_as_zero_and_counted(tmp_path: Path) -> None:
    rows = [
        ("2024-01-02T14:30:00Z", "1", "2", "0.5", "1", "-1"),
        ("2024-01-02T14:31:00Z", "1", "2", "0.5", "1", ""),
        ("2024-01-02T14:32:00Z", "1", "2", "0.5", "1", "7"),
    ]
    path = write_csv(tmp_path / "EURUSD_1m.csv", "timestamp,open,high,low,close,volume", rows)
    report = import_file(ParquetBarStore(tmp_path / "data"), path)
    assert (report.stored, report.volume_zeroed, report.rejected) == (3, 2, 0)
    volume = stored(tmp_path / "data", "EURUSD", Timeframe.M1).column("volume").to_pylist()
    assert volume == [0.0, 0.0, 7.0]


def test_importing_twice_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "AAPL_1m.csv", "timestamp,open,high,low,close,volume", GOOD_ROWS)
    daily = [
        ("2023-12-29", "1", "2", "0.5", "1.5", "10"),
        ("2024-01-02", "1", "2", "0.5", "1", "9"),
    ]
    write_csv(tmp_path / "EURUSD_1d.csv", "Date,Open,High,Low,Close,Volume", daily)
    args = ["import-csv", str(tmp_path), "--data-dir", str(tmp_path / "data")]
    assert main(args) == 0
    files = sorted((tmp_path / "data" / "bars").rglob("*.parquet"))
    assert len(files) == 3  # AAPL 2024, EURUSD 2023 and 2024
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    capsys.readouterr()
    assert main(args) == 0
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    total = capsys.readouterr().out.splitlines()[-2]
    assert total.startswith("total: 2 files (0 skipped): 6 rows read, 0 stored (new), 6 dupl")


def test_bars_already_stored_are_kept_and_in_file_repeats_count_as_duplicates(
    tmp_path: Path,
) -> None:
    store = ParquetBarStore(tmp_path / "data")
    path = write_csv(tmp_path / "AAPL_1m.csv", "timestamp,open,high,low,close,volume", GOOD_ROWS)
    first = import_file(store, path)
    assert (first.stored, first.duplicates) == (4, 0)
    fetched = (
        store.read("AAPL", Timeframe.M1).slice(0, 1).set_column(4, "close", pa.array([555.0]))
    )  # as if IB had delivered that bar since
    store.merge("AAPL", Timeframe.M1, fetched)
    repeat = ("2024-01-02T14:34:00Z", "1", "2", "0.5", "1", "1")
    changed = [(GOOD_ROWS[0][0], "9", "9", "9", "9", "9"), repeat, repeat]
    write_csv(path, "timestamp,open,high,low,close,volume", changed)
    second = import_file(store, path)
    assert (second.rows_read, second.stored, second.duplicates) == (3, 1, 2)
    closes = store.read("AAPL", Timeframe.M1).column("close").to_pylist()
    assert closes == [555.0, 101.5, 101.0, 101.1, 1.0]


def test_files_that_cannot_be_imported_are_skipped_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = "timestamp,open,high,low,close,volume"
    write_csv(tmp_path / "AAPL_1m.csv", header, GOOD_ROWS)  # still imported
    write_csv(tmp_path / "AAPL_2h.csv", header, GOOD_ROWS)
    write_csv(tmp_path / "prices.csv", header, GOOD_ROWS)
    write_csv(
        tmp_path / "MSFT_1d.csv", "timestamp,open,high,close", [("2024-01-02", "1", "2", "1")]
    )
    write_csv(tmp_path / "IBM_1d.csv", header, [("never", "1", "2", "0.5", "1", "1")])
    (tmp_path / "EMPTY_1d.csv").write_text("")
    (tmp_path / "readme.txt").write_text("not a csv: ignored")
    report = {
        r.path.name: r
        for r in [
            import_file(ParquetBarStore(tmp_path / "dry"), p)
            for p in sorted(tmp_path.glob("*.csv"))
        ]
    }
    assert report["AAPL_1m.csv"].skipped is None
    assert "unknown timeframe '2h'" in str(report["AAPL_2h.csv"].skipped)
    assert "SYMBOL_TIMEFRAME.csv" in str(report["prices.csv"].skipped)
    assert "missing column(s) low" in str(report["MSFT_1d.csv"].skipped)
    assert report["IBM_1d.csv"].skipped == "every row was rejected"
    assert "empty" in str(report["EMPTY_1d.csv"].skipped)
    assert main(["import-csv", str(tmp_path), "--data-dir", str(tmp_path / "data")]) == 1
    out = capsys.readouterr().out
    assert "total: 6 files (5 skipped)" in out
    assert [d.symbol_key for d in ParquetBarStore(tmp_path / "data").datasets()] == ["AAPL"]


def test_a_dry_run_writes_nothing_and_reports_what_it_would_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "AAPL_1m.csv", "timestamp,open,high,low,close,volume", GOOD_ROWS)
    data = tmp_path / "data"
    assert main(["import-csv", str(tmp_path), "--data-dir", str(data), "--dry-run"]) == 0
    assert "4 would store (new)" in capsys.readouterr().out
    assert not data.exists()
    ParquetBarStore(data)
    assert main(["import-csv", str(tmp_path), "--data-dir", str(data), "--dry-run"]) == 0
    assert list((data / "bars").rglob("*.parquet")) == []


def test_a_missing_source_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-csv", str(tmp_path / "nope"), "--data-dir", str(tmp_path)]) == 2
    assert "neither a directory nor a file" in capsys.readouterr().err
    assert main(["import-csv", str(tmp_path), "--data-dir", str(tmp_path)]) == 1  # no .csv


def test_the_console_script_imports_into_ktrdr_data_dir_and_lists_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_csv(tmp_path / "BRK_B_1m.csv", "timestamp,open,high,low,close,volume", GOOD_ROWS)
    # what `ktrdr-store` runs: the installed console script's entry point, in this process
    [script] = entry_points(group="console_scripts", name="ktrdr-store")
    ktrdr_store = script.load()
    for name in [k for k in os.environ if k.startswith("KTRDR_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KTRDR_DATA_DIR", str(tmp_path / "data"))
    assert ktrdr_store(["import-csv", str(tmp_path)]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert ktrdr_store(["datasets"]) == 0
    listing = capsys.readouterr().out
    assert "BRK_B" in listing and "1m" in listing
    assert stored(tmp_path / "data", "BRK B", Timeframe.M1).num_rows == 4
