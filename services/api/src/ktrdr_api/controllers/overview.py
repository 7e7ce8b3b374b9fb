"""``/api/v1/overview``: the whole system in one snapshot, and its live feed (the console's
Overview page)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
from litestar import Controller, get
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ktrdr_api.deps import OverviewDep
from ktrdr_api.errors import problem_responses
from ktrdr_api.openapi import OverviewEventsOperation
from ktrdr_api.overview import OverviewHub
from ktrdr_api.overview_schemas import OverviewOut

HEARTBEAT_S = 15.0
EVENT = "overview"  # the one event type of the feed


class OverviewController(Controller):
    """IB and its pacing, every service and JetStream, gathered once for every watcher."""

    path = "/api/v1/overview"
    tags = ["health"]

    @get(
        operation_id="getOverview",
        summary="IB, its pacing, every service and JetStream, in one snapshot",
        description="What could not be read is said inside the snapshot (``problem``, "
        "``missing_services``, ``jetstream.problem``), so it answers 200 whatever is down. "
        "While anyone follows the live feed this is its newest snapshot (``ts`` says when "
        "it was gathered); otherwise it is gathered for this request.",
        responses=problem_responses(401),
    )
    async def overview(self, overview: OverviewDep) -> OverviewOut:
        """Return the newest snapshot."""
        return await overview.current()

    @get(
        "/events",
        operation_id="streamOverview",
        summary="The overview as server-sent events: a snapshot at once, then on every change",
        description="An ``overview`` event with a snapshot at once, then again as soon as the "
        "IB connection changes (``ktrdr.evt.ib.connection.>``) and otherwise every 2 s; a "
        "keep-alive comment when there is nothing to send. One poller per gateway process "
        "gathers each snapshot for every client; a client that reads slowly gets only the "
        "newest. The stream does not end.",
        operation_class=OverviewEventsOperation,
        responses=problem_responses(401),
    )
    async def stream(self, overview: OverviewDep) -> ServerSentEvent:
        """Follow the overview until the client leaves."""
        return ServerSentEvent(_follow(overview))


async def _follow(hub: OverviewHub[OverviewOut]) -> AsyncIterator[ServerSentEventMessage]:
    """Yield each newest snapshot; the subscription ends when the client leaves."""
    with hub.subscribe() as feed:
        while True:
            snapshot = await feed.next(HEARTBEAT_S)
            if snapshot is None:
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            yield ServerSentEventMessage(event=EVENT, data=msgspec.json.encode(snapshot).decode())
