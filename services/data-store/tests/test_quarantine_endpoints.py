"""``ktrdr.store.quarantine`` lists what ingest kept; ``.delete`` forgets one entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ktrdr_data_store.app import build_app
from ktrdr_data_store.config import DataStoreSettings
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_shared import subjects
from ktrdr_shared.client import KtrdrClient
from ktrdr_shared.errors import NotFound
from ktrdr_shared.messages import (
    DeleteQuarantined,
    ListQuarantine,
    QuarantineDeleted,
    QuarantineList,
)
from nats.aio.client import Client as NATS

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 2, tzinfo=UTC)


async def test_list_and_delete(nats_url: str, nc: NATS, tmp_path: Path) -> None:
    q = Quarantine.under(tmp_path)
    old = q.put(
        subject="ktrdr.bars.AAPL.1d",
        payload=b"old",
        code="invalid_bars",
        message="fails future",
        job_id="job-1",
        received=T0,
    )
    new = q.put(
        subject="ktrdr.bars.MSFT.1d",
        payload=b"newer",
        code="invalid_request",
        message="cannot decode",
        received=T0 + timedelta(minutes=1),
    )
    app = build_app(
        DataStoreSettings.from_env({"KTRDR_NATS_URL": nats_url, "KTRDR_DATA_DIR": str(tmp_path)})
    )
    await app.start()
    try:
        client = KtrdrClient(nc)
        listed = await client.request(subjects.STORE_QUARANTINE, ListQuarantine(), QuarantineList)
        assert [e.id for e in listed.entries] == [new, old]
        first, second = listed.entries
        assert (first.subject, first.code, first.bytes, first.job_id) == (
            "ktrdr.bars.MSFT.1d",
            "invalid_request",
            5,
            None,
        )
        assert (second.message, second.job_id, second.received) == ("fails future", "job-1", T0)
        gone = await client.request(
            subjects.STORE_QUARANTINE_DELETE, DeleteQuarantined(id=old), QuarantineDeleted
        )
        assert gone.id == old
        with pytest.raises(NotFound, match="no quarantined batch"):
            await client.request(
                subjects.STORE_QUARANTINE_DELETE, DeleteQuarantined(id=old), QuarantineDeleted
            )
        listed = await client.request(subjects.STORE_QUARANTINE, ListQuarantine(), QuarantineList)
        assert [e.id for e in listed.entries] == [new]
    finally:
        await app.stop()
