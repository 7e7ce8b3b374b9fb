"""The instrument book is a cache: an unreadable book or entry is unknown, never a failed load
(that a load with a garbage book asks the connector: ``test_load_runner.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ktrdr_data_store.ledger import InstrumentBook
from ktrdr_shared.types import InstrumentType


@pytest.mark.unit
@pytest.mark.parametrize("garbage", [b"", b"\x00\x00\x00", b'{"AAPL": ["STK"', b"[1, 2]"])
def test_an_unreadable_book_is_unknown_and_rewritten_by_the_next_put(
    tmp_path: Path, garbage: bytes
) -> None:
    (tmp_path / "instruments.json").write_bytes(garbage)
    book = InstrumentBook(tmp_path)
    assert book.get("AAPL") is None
    book.put("AAPL", InstrumentType.STK, "NASDAQ")
    assert book.get("AAPL") == (InstrumentType.STK, "NASDAQ")
    written = json.loads((tmp_path / "instruments.json").read_text())
    assert written == {"AAPL": ["STK", "NASDAQ", "AAPL"]}  # type, exchange, the symbol loaded


@pytest.mark.unit
def test_an_unreadable_entry_is_unknown_and_the_others_stay(tmp_path: Path) -> None:
    book_file = tmp_path / "instruments.json"
    book_file.write_text(json.dumps({"AAPL": ["NOPE", "X"], "ES": ["FUT", "CME"], "MSFT": 3}))
    book = InstrumentBook(tmp_path)
    assert book.get("AAPL") is None
    assert book.get("MSFT") is None
    assert book.get("ES") == (InstrumentType.FUT, "CME")
    book.put("AAPL", InstrumentType.STK, "NASDAQ")
    assert book.get("AAPL") == (InstrumentType.STK, "NASDAQ")
    assert book.get("ES") == (InstrumentType.FUT, "CME")
