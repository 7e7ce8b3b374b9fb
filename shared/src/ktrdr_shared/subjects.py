"""Every NATS subject ktrdr uses, built and parsed in one place.

No service writes a subject string literal; it calls a builder here.

Layout::

    ktrdr.cmd.data.load                     LoadData        (KTRDR_COMMANDS)
    ktrdr.cmd.ib.fetch                      FetchBars       (KTRDR_COMMANDS)
    ktrdr.cmd.train.start                   StartTraining   (KTRDR_COMMANDS)
    ktrdr.bars.<symbol_key>.<timeframe>     BarBatch        (KTRDR_BARS)
    ktrdr.evt.job.<job_id>.<type>           job events      (KTRDR_EVENTS)
    ktrdr.evt.ib.connection.<type>          IB connection   (KTRDR_EVENTS)
    ktrdr.evt.store.<type>                  store events    (KTRDR_EVENTS)
    ktrdr.ib.status|validate|head_timestamp request/reply (nats.micro)
    ktrdr.store.query|coverage|datasets     request/reply
    ktrdr.store.quarantine[.delete|.release] request/reply
    ktrdr.store.repair                      request/reply
    ktrdr.train.status|models               request/reply
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ktrdr_shared.messages.base import Event, event_type
from ktrdr_shared.messages.ib import _ConnectionEvent
from ktrdr_shared.messages.jobs import JobEventBase
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
JOB_CANCEL_REQUESTS = "ktrdr.evt.job.*.cancel_requested"
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

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")


class SubjectError(ValueError):
    """A subject that does not have the shape its family requires."""


def bars(symbol: str, timeframe: Timeframe | str) -> str:
    """Return the subject of a symbol's bar batches: ``ktrdr.bars.BRK_B.1m``."""
    return f"ktrdr.bars.{symbol_key(symbol)}.{Timeframe(timeframe).value}"


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


def job_event(job_id: str, event: str) -> str:
    """Return ``ktrdr.evt.job.<job_id>.<event>``."""
    _check_token(job_id, "job id")
    _check_token(event, "event type")
    return f"ktrdr.evt.job.{job_id}.{event}"


def job_events(job_id: str) -> str:
    """Return the filter for every event of one job: ``ktrdr.evt.job.<job_id>.>``."""
    _check_token(job_id, "job id")
    return f"ktrdr.evt.job.{job_id}.>"


class JobEventSubject(NamedTuple):
    """The parts of a job-event subject."""

    job_id: str
    event: str


def parse_job_event(subject: str) -> JobEventSubject:
    """Split ``ktrdr.evt.job.<job_id>.<event>``.

    Raises:
        SubjectError: for any other shape.
    """
    parts = subject.split(".")
    if len(parts) != 5 or parts[:3] != ["ktrdr", "evt", "job"]:
        raise SubjectError(f"not a job-event subject: {subject!r}")
    return JobEventSubject(parts[3], parts[4])


def ib_connection_event(event: str) -> str:
    """Return ``ktrdr.evt.ib.connection.<event>``."""
    _check_token(event, "event type")
    return f"ktrdr.evt.ib.connection.{event}"


def store_event(event: str) -> str:
    """Return ``ktrdr.evt.store.<event>``."""
    _check_token(event, "event type")
    return f"ktrdr.evt.store.{event}"


def event_subject(event: Event) -> str:
    """Return the subject an event is published on, derived from its family and tag."""
    tag = event_type(event)
    if isinstance(event, JobEventBase):
        return job_event(event.job_id, tag)
    if isinstance(event, _ConnectionEvent):
        return ib_connection_event(tag)
    if isinstance(event, StoreEventBase):
        return store_event(tag)
    raise TypeError(f"no subject is defined for event {type(event).__name__}")


def _check_token(value: str, what: str) -> None:
    if not _TOKEN.match(value):
        raise SubjectError(f"{what} {value!r} is not a valid subject token (A-Z a-z 0-9 _ -)")
