"""The quarantine is bounded in age and size, and an entry can be held out for release."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ktrdr_data_store.quarantine import MAX_AGE_DAYS, MAX_BYTES, Quarantine, release_headers

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 2, tzinfo=UTC)


def put(q: Quarantine, payload: bytes, at: datetime, subject: str = "ktrdr.bars.AAPL.1d") -> str:
    return q.put(
        subject=subject,
        payload=payload,
        code="invalid_bars",
        message="fails",
        headers={"Content-Type": "application/msgpack", "Nats-Msg-Id": "seg-1"},
        received=at,
    )


def test_the_defaults_are_one_gib_and_thirty_days(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    assert (q.max_bytes, q.max_age_days) == (MAX_BYTES, MAX_AGE_DAYS) == (1 << 30, 30)


def test_a_put_removes_entries_older_than_the_age_bound(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = Quarantine.under(tmp_path, max_age_days=30)
    old = put(q, b"old", T0)
    kept = put(q, b"kept", T0 + timedelta(days=10))
    with caplog.at_level(logging.WARNING):
        new = put(q, b"new", T0 + timedelta(days=31))
    assert [e.id for e in q.list()] == [new, kept]
    assert q.get(old) is None
    assert len([r for r in caplog.records if old in r.getMessage()]) == 1


@pytest.mark.parametrize(("max_bytes", "left"), [
    (10, ["e", "d", "c"]),  # 3 + 3 + 3 = 9 fits; a fourth would be 12
    (6, ["e", "d"]),
    (1, ["e"]),  # the entry just put is never removed, even alone over the bound
    (100, ["e", "d", "c", "b", "a"]),
])  # fmt: skip
def test_a_put_removes_the_oldest_entries_beyond_the_size_bound(
    tmp_path: Path, max_bytes: int, left: list[str]
) -> None:
    q = Quarantine.under(tmp_path, max_bytes=max_bytes)
    ids = {
        name: put(q, name.encode() * 3, T0 + timedelta(minutes=i)) for i, name in enumerate("abcde")
    }
    assert [e.id for e in q.list()] == [ids[name] for name in left]


def test_hold_hides_an_entry_until_it_is_discarded_or_restored(tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    entry = put(q, b"bytes", T0)
    held = q.hold(entry, now_ns=1)
    assert held is not None
    assert (held.id, held.payload, held.meta.subject) == (entry, b"bytes", "ktrdr.bars.AAPL.1d")
    assert q.list() == [] and q.get(entry) is None
    assert q.hold(entry, now_ns=2) is None  # held once only
    q.restore(held)
    assert [e.id for e in q.list()] == [entry]
    held = q.hold(entry, now_ns=3)
    assert held is not None
    q.discard(held)
    assert q.list() == [] and not held.path.exists()
    assert q.hold("0" * 24, now_ns=4) is None
    assert q.hold("../etc", now_ns=5) is None


def test_restore_after_a_new_rejection_of_the_same_bytes_keeps_the_new_entry(
    tmp_path: Path,
) -> None:
    q = Quarantine.under(tmp_path)
    entry = put(q, b"bytes", T0)
    held = q.hold(entry, now_ns=1)
    assert held is not None
    again = put(q, b"bytes", T0 + timedelta(minutes=5))
    assert again == entry
    q.restore(held)
    [only] = q.list()
    assert only.meta.received == T0 + timedelta(minutes=5)
    assert not held.path.exists()


def test_release_headers_keep_the_entry_s_headers_with_a_fresh_message_id(
    tmp_path: Path,
) -> None:
    q = Quarantine.under(tmp_path)
    held = q.hold(put(q, b"bytes", T0), now_ns=1)
    assert held is not None
    assert release_headers(held, 1_700_000_000_123) == {
        "Content-Type": "application/msgpack",
        "Nats-Msg-Id": f"release.{held.id}.1700000000123",
    }
