"""Every file the store writes goes through the shared atomic writer (fsync of file and
directory); the writer itself is tested in shared/tests/test_store_atomic.py."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from ktrdr_data_store.ledger import AnsweredLedger, InstrumentBook
from ktrdr_data_store.store import SCHEMA, ParquetBarStore
from ktrdr_shared.testing.disk import count_fsyncs
from ktrdr_shared.types import InstrumentType, Timeframe

pytestmark = pytest.mark.unit


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_fsyncs(monkeypatch)


def test_ledger_writes_are_fsynced(tmp_path: Path, fsynced: list[int]) -> None:
    AnsweredLedger(tmp_path).add("AAPL", Timeframe.H1, [(0, 10)])
    assert len(fsynced) == 2  # the file, then its directory
    assert [p.name for p in (tmp_path / "answered").iterdir()] == ["AAPL.1h.json"]


def test_instrument_book_writes_are_fsynced(tmp_path: Path, fsynced: list[int]) -> None:
    InstrumentBook(tmp_path).put("AAPL", InstrumentType.STK, "NASDAQ")
    assert len(fsynced) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["instruments.json"]


def test_year_files_are_fsynced(tmp_path: Path, fsynced: list[int]) -> None:
    bar = {
        "ts": 1_704_067_200 * 10**9,
        "open": 1.0,
        "high": 1.0,
        "low": 1.0,
        "close": 1.0,
        "volume": 1.0,
    }
    bars = pa.Table.from_pylist([bar], schema=SCHEMA)
    ParquetBarStore(tmp_path).merge("AAPL", Timeframe.H1, bars)
    assert len(fsynced) == 2
