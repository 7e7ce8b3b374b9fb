"""The quarantine keeps a rejected message whole, once, and gives it back or forgets it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from ktrdr_data_store.quarantine import (
    META,
    PAYLOAD,
    Quarantine,
    quarantine_list,
    quarantined_per_dataset,
)
from ktrdr_shared import codec
from ktrdr_shared.messages import BarBatch
from ktrdr_shared.types import Timeframe, from_unix_nanos, to_unix_nanos

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 2, tzinfo=UTC)
NS0 = to_unix_nanos(T0)
HOUR = 3_600 * 10**9


def put(q: Quarantine, payload: bytes, *, at: datetime = T0, code: str = "invalid_bars") -> str:
    return q.put(
        subject="ktrdr.bars.AAPL.1d",
        payload=payload,
        code=code,
        message="fails non_finite",
        headers={"Content-Type": "application/msgpack"},
        job_id="job-1",
        received=at,
    )


def test_put_keeps_the_bytes_and_the_reason(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    entry_id = put(q, b"\x00\xffraw")
    entry = q.get(entry_id)
    assert entry is not None
    assert (entry.meta.subject, entry.meta.code, entry.meta.job_id) == (
        "ktrdr.bars.AAPL.1d",
        "invalid_bars",
        "job-1",
    )
    assert entry.meta.message == "fails non_finite"
    assert entry.meta.headers == {"Content-Type": "application/msgpack"}
    assert entry.meta.received == T0
    assert entry.bytes == 5
    assert q.payload(entry_id) == b"\x00\xffraw"
    assert (tmp_path / "quarantine" / entry_id / PAYLOAD).read_bytes() == b"\x00\xffraw"


def test_a_redelivery_makes_no_second_entry(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    first = put(q, b"same")
    again = put(q, b"same", at=T0 + timedelta(hours=1))
    assert first == again
    assert [e.id for e in q.list()] == [first]
    entry = q.get(first)
    assert entry is not None and entry.meta.received == T0  # the first put stands


def test_list_is_newest_first(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    old = put(q, b"old", at=T0)
    new = put(q, b"new", at=T0 + timedelta(minutes=1))
    mid = put(q, b"mid", at=T0 + timedelta(seconds=30))
    assert [e.id for e in q.list()] == [new, mid, old]


def test_an_empty_or_missing_quarantine_lists_nothing(tmp_path: Path) -> None:
    assert Quarantine.under(tmp_path).list() == []


def test_an_interrupted_put_is_ignored_and_completed_by_the_next(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    entry_id = put(q, b"half")
    (tmp_path / "quarantine" / entry_id / META).unlink()
    assert q.list() == [] and q.get(entry_id) is None and q.payload(entry_id) is None
    assert put(q, b"half") == entry_id
    assert [e.id for e in q.list()] == [entry_id]


def test_delete_forgets_an_entry(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    keep, drop = put(q, b"keep"), put(q, b"drop")
    assert q.delete(drop) is True
    assert q.delete(drop) is False
    assert [e.id for e in q.list()] == [keep]


@pytest.mark.parametrize("bad", ["../etc", "", "x" * 24, "ABCDEF" * 4, "0" * 23])
def test_ids_that_are_not_ours_name_nothing(tmp_path: Path, bad: str) -> None:
    q = Quarantine.under(tmp_path)
    put(q, b"x")
    assert q.get(bad) is None and q.payload(bad) is None and q.delete(bad) is False


def test_a_write_failure_is_an_oserror(tmp_path: Path) -> None:
    (tmp_path / "quarantine").write_text("not a directory")
    with pytest.raises(OSError):
        put(Quarantine.under(tmp_path), b"x")


def batch(**changes: object) -> BarBatch:
    fields: dict[str, Any] = {
        "symbol": "BRK B",
        "timeframe": Timeframe.H1,
        "start": NS0,
        "end": NS0 + 2 * HOUR,
        "ts": [NS0],
        "open": [1.0],
        "high": [1.0],
        "low": [1.0],
        "close": [1.0],
        "volume": [1.0],
    }
    return BarBatch(**(fields | changes))


JSON_BATCH = codec.encode(batch())
MSGPACK = {"Content-Type": "application/msgpack"}
# A batch whose bars do not decode (a string for a price) still tells its window.
BAD_BARS = JSON_BATCH.replace(b'"open":[1.0]', b'"open":["x"]')
NO_END = JSON_BATCH.replace(b'"end":', b'"till":')
KEPT = [
    ("ktrdr.bars.BRK_B.1h", JSON_BATCH, {}, ("BRK_B", Timeframe.H1, (NS0, NS0 + 2 * HOUR))),
    ("ktrdr.bars.BRK_B.1h", codec.encode(batch(), content_type=codec.MSGPACK), MSGPACK,
     ("BRK_B", Timeframe.H1, (NS0, NS0 + 2 * HOUR))),
    ("ktrdr.bars.BRK_B.1h", BAD_BARS, {}, ("BRK_B", Timeframe.H1, (NS0, NS0 + 2 * HOUR))),
    ("ktrdr.bars.AAPL.1d", b"\x81bad", {}, ("AAPL", Timeframe.D1, None)),
    ("ktrdr.bars.AAPL.1d", NO_END, {}, ("AAPL", Timeframe.D1, None)),
    ("ktrdr.bars.AAPL.1d", b'{"start": 5, "end": 5}', {}, ("AAPL", Timeframe.D1, None)),
    ("ktrdr.bars.AAPL.2h", JSON_BATCH, {}, (None, None, (NS0, NS0 + 2 * HOUR))),
    ("ktrdr.cmd.data.load", b"{}", {}, (None, None, None)),
]  # fmt: skip


@pytest.mark.parametrize(("subject", "payload", "headers", "expected"), KEPT)
def test_the_listing_names_each_batchs_dataset_and_window(
    tmp_path: Path,
    subject: str,
    payload: bytes,
    headers: dict[str, str],
    expected: tuple[str | None, Timeframe | None, tuple[int, int] | None],
) -> None:
    q = Quarantine.under(tmp_path)
    q.put(subject=subject, payload=payload, code="invalid_bars", message="m", headers=headers)
    [entry] = quarantine_list(q).entries
    symbol, timeframe, window = expected
    assert (entry.subject, entry.symbol, entry.timeframe) == (subject, symbol, timeframe)
    assert (entry.start, entry.end) == (
        (from_unix_nanos(window[0]), from_unix_nanos(window[1])) if window else (None, None)
    )


def test_a_listing_reads_each_payload_once(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    entry_id = q.put(subject="ktrdr.bars.BRK_B.1h", payload=JSON_BATCH, code="c", message="m")
    [first] = quarantine_list(q).entries
    (tmp_path / "quarantine" / entry_id / PAYLOAD).write_bytes(b"unreadable now")
    [again] = quarantine_list(q).entries  # an id names its bytes: its window cannot change
    assert (again.start, again.end) == (first.start, first.end) != (None, None)


def test_batches_are_counted_per_dataset_by_subject(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    for subject, payload, headers, _ in KEPT:
        q.put(subject=subject, payload=payload, code="c", message="m", headers=headers)
    assert quarantined_per_dataset(q.list()) == {
        ("BRK_B", Timeframe.H1): 3,
        ("AAPL", Timeframe.D1): 3,
    }
