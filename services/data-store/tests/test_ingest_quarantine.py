"""A rejected batch the quarantine cannot keep stays on the bus: nakked, never terminated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ktrdr_data_store.ingest import Ingestor
from ktrdr_data_store.ledger import AnsweredLedger
from ktrdr_data_store.quarantine import Quarantine
from ktrdr_data_store.store import ParquetBarStore

pytestmark = pytest.mark.unit


class FakeMsg:
    """The part of a JetStream message ``Ingestor._reject`` uses, recording what was done."""

    subject = "ktrdr.bars.AAPL.1d"
    data = b"\x81\xa3bad"
    headers = {"Content-Type": "application/msgpack"}

    def __init__(self) -> None:
        self.done: list[tuple[str, float | None]] = []

    async def nak(self, delay: float | None = None) -> None:
        self.done.append(("nak", delay))

    async def term(self) -> None:
        self.done.append(("term", None))


async def test_a_quarantine_write_failure_naks_with_a_delay(tmp_path: Path) -> None:
    (tmp_path / "quarantine").write_text("not a directory")  # every put fails with an OSError
    published: list[Any] = []
    ingestor = Ingestor(
        js=None,
        store=ParquetBarStore(tmp_path),  # type: ignore[arg-type]
        ledger=AnsweredLedger(tmp_path),
        quarantine=Quarantine.under(tmp_path),
        retry_delay_s=7.0,
    )

    async def publish(event: Any) -> None:
        published.append(event)

    ingestor._publish = publish  # type: ignore[method-assign]
    msg = FakeMsg()
    await ingestor._reject(msg, "invalid_bars", "fails non_finite")  # type: ignore[arg-type]
    assert msg.done == [("nak", 7.0)]
    assert published == []
