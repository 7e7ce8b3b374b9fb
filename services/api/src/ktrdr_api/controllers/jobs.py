"""``/api/v1/jobs``: job status folded from the event log, live events, cancel, list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from ktrdr_shared.messages import CancelRequested, JobKind
from ktrdr_shared.messages.base import event_type
from litestar import Controller, Request, Response, get, post
from litestar.openapi.spec import Example
from litestar.params import Body, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ktrdr_api.deps import EventsDep, GatewayDep, SettingsDep
from ktrdr_api.errors import ApiError, not_found, problem_responses
from ktrdr_api.event_log import EventLog, LoggedEvent
from ktrdr_api.jobs import JobState, JobStatus, apply, fold
from ktrdr_api.openapi import EventsOperation, OptionalBodyOperation
from ktrdr_api.schemas import CancelIn, JobOut, JobsOut
from ktrdr_api.validation import StrictBody
from ktrdr_api.views import job_out, job_summary

HEARTBEAT_S = 15.0

JobIdPath = Annotated[
    str,
    Parameter(
        description="The job's id (32 hex characters).",
        pattern=r"^[0-9a-f]{32}$(?!\n)",
        min_length=32,
        max_length=32,
        examples=[Example(value="0123456789abcdef0123456789abcdef")],
    ),
]


async def job_state(events: EventLog, job_id: str) -> tuple[JobState, list[LoggedEvent]]:
    """Return a job's folded state and its events.

    Raises:
        ApiError: 404 when the log holds no event of ``job_id``.
    """
    history = await events.history(job_id)
    if not history:
        raise not_found(
            f"no job {job_id}: the event log holds none of its events (a job just "
            "submitted appears once its service accepts it)"
        )
    return fold(job_id, (e.event for e in history)), history


class JobsController(Controller):
    """Jobs (data loads and training runs), read from the event log."""

    path = "/api/v1/jobs"
    tags = ["jobs"]

    @get(
        operation_id="listJobs",
        summary="Jobs in the event log, newest first",
        responses=problem_responses(400, 401, 503, 504),
    )
    async def list_jobs(
        self,
        events: EventsDep,
        kind: Annotated[JobKind | None, Parameter(description="Only this kind.")] = None,
        status: Annotated[JobStatus | None, Parameter(description="Only this status.")] = None,
        limit: Annotated[int, Parameter(ge=1, le=10_000, description="At most this many.")] = 100,
    ) -> JobsOut:
        """Answer from the gateway's job index, once it has read the log as of this request."""
        jobs = await events.list_jobs(kind=kind, status=status, limit=limit)
        return JobsOut(jobs=[job_summary(s) for s in jobs])

    @get(
        "/{job_id:str}",
        operation_id="getJob",
        summary="A job's status, folded from its events",
        responses=problem_responses(400, 401, 404, 503, 504),
    )
    async def get_job(self, events: EventsDep, job_id: JobIdPath) -> JobOut:
        """Replay the job's events and fold them."""
        state, _ = await job_state(events, job_id)
        return job_out(state)

    @get(
        "/{job_id:str}/events",
        operation_id="streamJobEvents",
        summary="A job's events as server-sent events: history first, then live",
        description="Replays every event of the job, then follows it live, and ends after "
        "its terminal event (completed, failed, cancelled). Each event's ``id`` is its "
        "sequence in the log: reconnect with ``Last-Event-ID`` to resume after it. A job "
        "without any event yet is waited for (KTRDR_API_JOB_START_WAIT_S) before a 404.",
        operation_class=EventsOperation,
        responses=problem_responses(400, 401, 404, 503, 504),
    )
    async def stream_events(
        self,
        request: Request[Any, Any, Any],
        events: EventsDep,
        settings: SettingsDep,
        job_id: JobIdPath,
    ) -> ServerSentEvent:
        """Answer the job's history, then its live events, until it ends."""
        after = _last_event_id(request.headers.get("last-event-id"))
        history = await events.history(job_id)
        state = fold(job_id, (e.event for e in history))
        replay = [e for e in history if e.seq > after]
        follower = events.follow(job_id, after_seq=max([after, *(e.seq for e in history)]))
        await follower.__aenter__()
        try:
            if not history:  # a job just submitted: wait a little for its first event
                first = await follower.next(settings.api_job_start_wait_s)
                if first is None:
                    raise not_found(
                        f"no job {job_id}: no event of it arrived within "
                        f"{settings.api_job_start_wait_s:g} s (is the service that "
                        "runs it started?)"
                    )
                replay = [first]
                apply(state, first.event)
        except BaseException:
            await follower.__aexit__(None, None, None)
            raise
        return ServerSentEvent(_stream(state, replay, follower))

    @post(
        "/{job_id:str}/cancel",
        status_code=202,
        operation_id="cancelJob",
        dto=StrictBody[CancelIn],
        operation_class=OptionalBodyOperation,
        summary="Ask a job to stop (publishes cancel_requested)",
        responses=problem_responses(400, 401, 404, 409, 503, 504),
    )
    async def cancel(
        self,
        events: EventsDep,
        job_id: JobIdPath,
        gateway: GatewayDep,
        data: Annotated[
            CancelIn | None,
            Body(
                description="Why (optional).",
                examples=[Example(summary="with a reason", value={"reason": "wrong symbol"})],
            ),
        ] = None,
    ) -> Response[JobOut]:
        """Publish ``CancelRequested`` for a job that has not ended."""
        state, history = await job_state(events, job_id)
        if state.status.is_terminal:
            raise ApiError(
                409,
                "conflict",
                f"job {job_id} already {state.status.value}; there is nothing to cancel",
            )
        reason = (data or CancelIn()).reason
        event = CancelRequested(job_id=job_id, reason=reason)
        await gateway.publish_event(event, kind=history[0].kind)  # the job's kind, from its log
        apply(state, event)
        return Response(job_out(state), status_code=202)


async def _stream(
    state: JobState, replay: list[LoggedEvent], follower: Any
) -> AsyncIterator[ServerSentEventMessage]:
    """Yield the replayed events, then live ones, until the job ends (heartbeats meanwhile)."""
    try:
        for logged in replay:
            yield _message(logged)
        while not state.status.is_terminal:
            logged = await follower.next(HEARTBEAT_S)
            if logged is None:
                yield ServerSentEventMessage(comment="keep-alive", data=None)
                continue
            apply(state, logged.event)
            yield _message(logged)
    finally:
        await asyncio.shield(follower.__aexit__(None, None, None))


def _message(logged: LoggedEvent) -> ServerSentEventMessage:
    data = msgspec.json.encode(logged.event).decode()
    return ServerSentEventMessage(data=data, event=event_type(logged.event), id=logged.seq)


def _last_event_id(value: str | None) -> int:
    if value is None:
        return 0
    try:
        return max(0, int(value))
    except ValueError as e:
        raise ApiError(
            400,
            "invalid_request",
            f"header 'Last-Event-ID' must be the id of an "
            f"event this stream sent (an integer), got {value!r}",
        ) from e
