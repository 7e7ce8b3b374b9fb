"""The quarantine keeps a rejected message whole, once, and gives it back or forgets it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ktrdr_data_store.quarantine import META, PAYLOAD, Quarantine

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 2, tzinfo=UTC)


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
