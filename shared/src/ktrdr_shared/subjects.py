"""Every NATS subject ktrdr uses, built and parsed in one place.

No service writes a subject string literal; it calls a builder here.

Layout::

    ktrdr.cmd.data.load                     LoadData        (KTRDR_COMMANDS)
    ktrdr.cmd.ib.fetch                      FetchBars       (KTRDR_COMMANDS)
    ktrdr.cmd.train.start                   StartTraining   (KTRDR_COMMANDS)
    ktrdr.bars.<symbol_key>.<timeframe>     BarBatch        (KTRDR_BARS)
    ktrdr.evt.job.<kind>.<job_id>.<type>    job events      (KTRDR_EVENTS)
    ktrdr.evt.ib.connection.<type>          IB connection   (KTRDR_EVENTS)
    ktrdr.evt.store.<type>                  store events    (KTRDR_EVENTS)
    ktrdr.ib.status|validate|head_timestamp request/reply (nats.micro)
    ktrdr.store.query|coverage|datasets     request/reply
    ktrdr.store.quarantine[.delete|.release] request/reply
    ktrdr.store.repair                      request/reply
    ktrdr.train.status|models               request/reply
    $SRV.PING|INFO|STATS.<service>          nats.micro's own (every service)

A job event's ``<kind>`` is its job's ``JobKind`` (``data_load`` or ``training``), so a
NATS permission can name one kind: the data-store publishes ``ktrdr.evt.job.data_load.*.…``
only, the trainer ``ktrdr.evt.job.training.*.…`` only (permissions match whole tokens).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ktrdr_shared.messages.base import Event, event_type
from ktrdr_shared.messages.ib import _ConnectionEvent
from ktrdr_shared.messages.jobs import JobEventBase, JobKind, implied_kind
from ktrdr_shared.messages.store import StoreEventBase
from ktrdr_shared.types import Timeframe, symbol_key

ROOT = "ktrdr"

# Commands (work-queue stream KTRDR_COMMANDS).
COMMANDS_ALL = "ktrdr.cmd.>"
CMD_DATA_LOAD = "ktrdr.cmd.data.load"
CMD_IB_FETCH = "ktrdr.cmd.ib.fetch"
CMD_TRAIN_START = "ktrdr.cmd.train.start"
CMD_DATA_FILTER = "ktrdr.cmd.data.>"
CMD_IB_FILTER = "ktrdr.cmd.ib.>"
CMD_TRAIN_FILTER = "ktrdr.cmd.train.>"

# Bar batches (stream KTRDR_BARS).
BARS_ALL = "ktrdr.bars.>"

# Events (stream KTRDR_EVENTS).
EVENTS_ALL = "ktrdr.evt.>"
JOB_EVENTS_ALL = "ktrdr.evt.job.>"
IB_CONNECTION_EVENTS = "ktrdr.evt.ib.connection.>"
STORE_EVENTS = "ktrdr.evt.store.>"
STORE_BARS_STORED = "ktrdr.evt.store.bars_stored"

# Request/reply endpoints (nats.micro services).
IB_STATUS = "ktrdr.ib.status"
IB_VALIDATE = "ktrdr.ib.validate"
IB_HEAD_TIMESTAMP = "ktrdr.ib.head_timestamp"
STORE_QUERY = "ktrdr.store.query"
STORE_COVERAGE = "ktrdr.store.coverage"
STORE_DATASETS = "ktrdr.store.datasets"
STORE_QUARANTINE = "ktrdr.store.quarantine"
STORE_QUARANTINE_DELETE = "ktrdr.store.quarantine.delete"
STORE_QUARANTINE_RELEASE = "ktrdr.store.quarantine.release"
STORE_REPAIR = "ktrdr.store.repair"
TRAIN_STATUS = "ktrdr.train.status"
TRAIN_MODELS = "ktrdr.train.models"

# The service that answers each family of request/reply subjects.
ANSWERED_BY: dict[str, str] = {
    "ktrdr.ib.": "ib-connector",
    "ktrdr.store.": "data-store",
    "ktrdr.train.": "trainer",
}

# nats.micro's own subjects: ``$SRV.<verb>.<service>``.
MICRO_PREFIX = "$SRV"
PING = "PING"
INFO = "INFO"
STATS = "STATS"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


class SubjectError(ValueError):
    """A subject that does not have the shape its family requires."""


def bars(symbol: str, timeframe: Timeframe | str) -> str:
    """Return the subject of a symbol's bar batches: ``ktrdr.bars.BRK_B.1m``."""
    return bars_filter(symbol_key(symbol), Timeframe(timeframe).value)


def bars_filter(symbol_key: str = "*", timeframe: str = "*") -> str:
    """Return a filter of bar batches: ``ktrdr.bars.<symbol_key>.<timeframe>``, ``*`` for any."""
    return f"ktrdr.bars.{symbol_key}.{timeframe}"


def micro(verb: str, service: str | None = None) -> str:
    """Return nats.micro's subject ``$SRV.<verb>.<service>``: ``micro(PING, "trainer")``.

    Without a service, the subject every service answers: ``micro(STATS)`` is ``$SRV.STATS``.
    """
    if service is None:
        return f"{MICRO_PREFIX}.{verb}"
    _check_token(service, "service name")
    return f"{MICRO_PREFIX}.{verb}.{service}"


def answered_by(subject: str) -> str | None:
    """Return the service that answers the request ``subject`` (None: no ktrdr service).

    ``ktrdr.store.query`` is the data-store's; ``$SRV.PING.trainer`` the trainer's.
    """
    for prefix, service in ANSWERED_BY.items():
        if subject.startswith(prefix):
            return service
    parts = subject.split(".")
    if len(parts) == 3 and parts[0] == MICRO_PREFIX and _TOKEN.match(parts[2]):
        return parts[2]
    return None


class BarsSubject(NamedTuple):
    """The parts of a bar-batch subject."""

    symbol_key: str
    timeframe: Timeframe


def parse_bars(subject: str) -> BarsSubject:
    """Split ``ktrdr.bars.<symbol_key>.<timeframe>``.

    Raises:
        SubjectError: for any other shape or an unknown timeframe.
    """
    parts = subject.split(".")
    if len(parts) != 4 or parts[:2] != ["ktrdr", "bars"] or not _TOKEN.match(parts[2]):
        raise SubjectError(f"not a bar-batch subject: {subject!r}")
    try:
        return BarsSubject(parts[2], Timeframe(parts[3]))
    except ValueError as e:
        raise SubjectError(f"unknown timeframe {parts[3]!r} in subject {subject!r}") from e


def job_event(kind: JobKind | str, job_id: str, event: str) -> str:
    """Return ``ktrdr.evt.job.<kind>.<job_id>.<event>``."""
    _check_token(job_id, "job id")
    _check_token(event, "event type")
    return f"ktrdr.evt.job.{_job_kind(kind)}.{job_id}.{event}"


def job_events(job_id: str, kind: JobKind | str | None = None) -> str:
    """Return the filter for every event of one job: ``ktrdr.evt.job.<kind>.<job_id>.>``.

    Without ``kind`` (a reader that knows only the id) the kind token is a wildcard.
    """
    _check_token(job_id, "job id")
    token = "*" if kind is None else _job_kind(kind)
    return f"ktrdr.evt.job.{token}.{job_id}.>"


def job_kind_events(kind: JobKind | str) -> str:
    """Return the filter for every event of every job of one kind: ``ktrdr.evt.job.<kind>.>``."""
    return f"ktrdr.evt.job.{_job_kind(kind)}.>"


def cancel_requests(kind: JobKind | str) -> str:
    """Return the filter for cancel requests of one kind's jobs.

    ``ktrdr.evt.job.<kind>.*.cancel_requested``.
    """
    return f"ktrdr.evt.job.{_job_kind(kind)}.*.cancel_requested"


class JobEventSubject(NamedTuple):
    """The parts of a job-event subject."""

    kind: JobKind
    job_id: str
    event: str


def parse_job_event(subject: str) -> JobEventSubject:
    """Split ``ktrdr.evt.job.<kind>.<job_id>.<event>``.

    Raises:
        SubjectError: for any other shape or an unknown kind.
    """
    parts = subject.split(".")
    if len(parts) != 6 or parts[:3] != ["ktrdr", "evt", "job"]:
        raise SubjectError(f"not a job-event subject: {subject!r}")
    return JobEventSubject(_job_kind(parts[3], subject), parts[4], parts[5])


def job_event_kind(event: JobEventBase, kind: JobKind | str | None) -> JobKind:
    """Return the kind a job event is published under: ``kind``, checked against the event.

    Some events name their kind themselves (``accepted``, the segment events, a result);
    the others need the caller's word for it, because a guess could put a data load's event
    where only the trainer may publish.

    Raises:
        SubjectError: no kind was given and the event does not name one, or the two differ.
    """
    implied = implied_kind(event)
    chosen = implied if kind is None else _job_kind(kind)
    if chosen is None:
        raise SubjectError(
            f"job event {event_type(event)!r} of job {event.job_id} needs its "
            "job's kind (data_load or training); pass kind="
        )
    if implied is not None and chosen is not implied:
        raise SubjectError(
            f"job event {event_type(event)!r} of job {event.job_id} belongs to "
            f"a {implied.value} job, not {chosen.value}"
        )
    return chosen


def ib_connection_event(event: str) -> str:
    """Return ``ktrdr.evt.ib.connection.<event>``."""
    _check_token(event, "event type")
    return f"ktrdr.evt.ib.connection.{event}"


def store_event(event: str) -> str:
    """Return ``ktrdr.evt.store.<event>``."""
    _check_token(event, "event type")
    return f"ktrdr.evt.store.{event}"


def event_subject(event: Event, *, kind: JobKind | str | None = None) -> str:
    """Return the subject an event is published on, derived from its family and tag.

    A job event also needs its job's ``kind`` where the event itself does not say it (see
    ``job_event_kind``); other events take none.

    Raises:
        SubjectError: a job event without a kind, or with one it contradicts.
        TypeError: an event of no family, or a kind given for an event that is no job's.
    """
    tag = event_type(event)
    if isinstance(event, JobEventBase):
        return job_event(job_event_kind(event, kind), event.job_id, tag)
    if kind is not None:
        raise TypeError(f"{type(event).__name__} is no job event; it takes no kind")
    if isinstance(event, _ConnectionEvent):
        return ib_connection_event(tag)
    if isinstance(event, StoreEventBase):
        return store_event(tag)
    raise TypeError(f"no subject is defined for event {type(event).__name__}")


def _job_kind(kind: JobKind | str, subject: str = "") -> JobKind:
    try:
        return JobKind(kind)
    except ValueError as e:
        where = f" in subject {subject!r}" if subject else ""
        raise SubjectError(
            f"unknown job kind {kind!r}{where}; use one of {' '.join(k.value for k in JobKind)}"
        ) from e


def _check_token(value: str, what: str) -> None:
    if not _TOKEN.match(value):
        raise SubjectError(f"{what} {value!r} is not a valid subject token (A-Z a-z 0-9 _ -)")
