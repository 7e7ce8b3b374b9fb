"""``/api/v1/quarantine``: bar batches the data-store rejected and kept whole, with reasons."""

from __future__ import annotations

from typing import Annotated

from ktrdr_shared import subjects
from ktrdr_shared.messages import (
    DeleteQuarantined,
    ListQuarantine,
    QuarantineDeleted,
    QuarantineList,
    QuarantineReleased,
    ReleaseQuarantined,
)
from ktrdr_shared.types import Timeframe, symbol_key
from litestar import Controller, delete, get, post
from litestar.openapi.spec import Example
from litestar.params import Parameter

from ktrdr_api.controllers.data import SYMBOL_PATTERN
from ktrdr_api.deps import GatewayDep
from ktrdr_api.errors import problem_responses
from ktrdr_api.schemas import QuarantineOut, QuarantineReleasedOut
from ktrdr_api.views import quarantined_out

QuarantineIdPath = Annotated[
    str,
    Parameter(
        description="The entry's id (the ``quarantine_id`` of its ``batch_rejected`` event).",
        pattern=r"^[0-9a-f]{24}$(?!\n)",
        min_length=24,
        max_length=24,
        examples=[Example(value="3f2a9c0d5e7b41a68c2d0e1f")],
    ),
]


class QuarantineController(Controller):
    """The data-store's quarantine: list what ingest rejected, forget an entry."""

    path = "/api/v1/quarantine"
    tags = ["data"]

    @get(
        operation_id="listQuarantine",
        summary="Every bar batch ingest rejected, kept whole with its reason, newest first",
        description="A batch that fails validation (``invalid_bars``) or cannot be decoded is "
        "kept under the data-store's ``quarantine/<id>/`` before it is terminated; its "
        "``batch_rejected`` event carries the same id. Release an entry after a fix "
        "(``POST .../{id}/release``) or delete it. The data-store keeps entries for "
        "``KTRDR_QUARANTINE_MAX_AGE_DAYS`` and at most ``KTRDR_QUARANTINE_MAX_BYTES``, "
        "dropping the oldest first. Each entry names the dataset of its bar subject "
        "(``symbol``, ``timeframe``) and the window its batch covered (``start``, ``end``) "
        "where that can be told; ``symbol`` and ``timeframe`` keep only one dataset's "
        "entries.",
        responses=problem_responses(400, 401, 502, 503, 504),
    )
    async def list_quarantine(
        self,
        gateway: GatewayDep,
        symbol: Annotated[
            str | None,
            Parameter(
                description="Only this symbol's entries (as stored: BRK_B; BRK B is the same).",
                min_length=1,
                max_length=32,
                pattern=SYMBOL_PATTERN,
            ),
        ] = None,
        timeframe: Annotated[
            Timeframe | None, Parameter(description="Only entries of this bar size.")
        ] = None,
    ) -> QuarantineOut:
        """Ask the data-store for its quarantine; keep the entries of one dataset when asked."""
        found = await gateway.request(subjects.STORE_QUARANTINE, ListQuarantine(), QuarantineList)
        key = None if symbol is None else symbol_key(symbol)
        return QuarantineOut(
            entries=[
                quarantined_out(e)
                for e in found.entries
                if (key is None or e.symbol == key) and timeframe in (None, e.timeframe)
            ]
        )

    @delete(
        "/{quarantine_id:str}",
        operation_id="deleteQuarantined",
        summary="Forget one quarantined batch (its bytes are deleted)",
        responses=problem_responses(400, 401, 404, 502, 503, 504),
    )
    async def delete_quarantined(
        self, gateway: GatewayDep, quarantine_id: QuarantineIdPath
    ) -> None:
        """Ask the data-store to delete one entry; 404 when there is none."""
        await gateway.request(
            subjects.STORE_QUARANTINE_DELETE, DeleteQuarantined(id=quarantine_id), QuarantineDeleted
        )

    @post(
        "/{quarantine_id:str}/release",
        status_code=200,
        operation_id="releaseQuarantined",
        summary="Send one quarantined batch through ingest again (after a fix)",
        description="The data-store republishes the kept payload byte for byte on its "
        "original subject (headers kept, a fresh ``Nats-Msg-Id``), waits for JetStream's "
        "ack and deletes the entry. Ingest checks the batch again: after a fix (a repair, a "
        "load that dispatched its segment) it is stored; if it still fails it is "
        "quarantined again under the same id.",
        responses=problem_responses(400, 401, 404, 502, 503, 504),
    )
    async def release_quarantined(
        self, gateway: GatewayDep, quarantine_id: QuarantineIdPath
    ) -> QuarantineReleasedOut:
        """Ask the data-store to release one entry; 404 when there is none."""
        done = await gateway.request(
            subjects.STORE_QUARANTINE_RELEASE,
            ReleaseQuarantined(id=quarantine_id),
            QuarantineReleased,
        )
        return QuarantineReleasedOut(id=done.id, subject=done.subject)
