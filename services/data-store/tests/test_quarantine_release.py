"""``ktrdr.store.quarantine.release``: a kept batch goes back on its subject, byte for byte.

Over a real nats-server with the real data-store: the payload comes back on its original subject
with its headers and a fresh ``Nats-Msg-Id``, the entry is deleted, and ingest checks the batch
again; one that still fails lands in the quarantine again under the same id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_shared import codec, subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import (
    BatchRejected,
    ListQuarantine,
    QuarantineList,
    QuarantineReleased,
    ReleaseQuarantined,
)
from ktrdr_shared.runtime import ServiceApp
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration

StartStore = Callable[..., Awaitable[ServiceApp]]
T0 = datetime(2024, 1, 2, tzinfo=UTC)
SUBJECT = "ktrdr.bars.AAPL.1d"
PAYLOAD = b"\x81\xa3bad\xc0"  # msgpack that is no BarBatch: ingest rejects it every time
HEADERS = {"Content-Type": "application/msgpack", "X-Trace": "t-1", "Nats-Msg-Id": "seg-1.0"}


async def test_release_republishes_the_bytes_and_a_failing_batch_comes_back(
    start_store: StartStore, nc: NATS, tmp_path: Path
) -> None:
    entry = Quarantine.under(tmp_path / "data").put(
        subject=SUBJECT,
        payload=PAYLOAD,
        code="invalid_request",
        message="cannot decode",
        headers=HEADERS,
        received=T0,
    )
    bars = await nc.subscribe(subjects.BARS_ALL)
    rejected = await nc.subscribe(subjects.store_event("batch_rejected"))
    await start_store()
    client = KtrdrClient(nc)

    reply = await client.request(
        subjects.STORE_QUARANTINE_RELEASE, ReleaseQuarantined(id=entry), QuarantineReleased
    )
    assert (reply.id, reply.subject) == (entry, SUBJECT)
    msg = await bars.next_msg(timeout=10)
    assert (msg.subject, msg.data) == (SUBJECT, PAYLOAD)
    assert msg.headers is not None
    assert {k: v for k, v in msg.headers.items() if k != "Nats-Msg-Id"} == {
        "Content-Type": "application/msgpack",
        "X-Trace": "t-1",
    }
    assert msg.headers["Nats-Msg-Id"].startswith(f"release.{entry}.")

    # ingest refuses it again: the same bytes on the same subject are the same entry
    event = codec.decode((await rejected.next_msg(timeout=10)).data, BatchRejected)
    assert event.quarantine_id == entry
    listed = await client.request(subjects.STORE_QUARANTINE, ListQuarantine(), QuarantineList)
    [again] = listed.entries
    assert again.id == entry and again.received > T0  # a new entry, not the old one kept

    with pytest.raises(NotFound, match="no quarantined batch"):
        await client.request(
            subjects.STORE_QUARANTINE_RELEASE, ReleaseQuarantined(id="0" * 24), QuarantineReleased
        )
