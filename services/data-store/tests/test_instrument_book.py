"""The instrument book is a cache: an unreadable book or entry is unknown, never a failed load."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from ktrdr_data_store.ledger import InstrumentBook
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.messages import JobCompleted
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.testing.events import wait_for_job_event
from ktrdr_shared.types import InstrumentType
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

StartStore = Callable[..., Awaitable[ServiceApp]]


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


@pytest.mark.integration
async def test_a_load_with_a_garbage_book_asks_the_connector_and_rewrites_the_book(
    connector: ServiceApp,
    start_store: StartStore,
    js: JetStreamContext,
    nc: NATS,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "instruments.json").write_bytes(b"\x00garbage")
    await start_store()
    start, end = dt.datetime(2024, 6, 17, tzinfo=dt.UTC), dt.datetime(2024, 6, 18, tzinfo=dt.UTC)
    job_id = await KtrdrClient(nc).load_data("AAPL", "1h", start=start, end=end)
    done = await wait_for_job_event(js, job_id, {"completed", "failed", "cancelled"}, timeout_s=90)
    assert isinstance(done, JobCompleted), done
    assert InstrumentBook(data_dir).get("AAPL") == (InstrumentType.STK, "SMART")  # the connector's
