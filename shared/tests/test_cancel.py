"""The cancel watcher: a bounded memory of stopped jobs, and the work it stops at once."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import pytest
from ktrdr_shared import codec, subjects
from ktrdr_shared.cancel import CANCEL_REQUESTED, CancelWatcher, remember
from ktrdr_shared.messages import CancelRequested, JobKind

pytestmark = pytest.mark.unit

JOB = "0" * 31 + "1"
OTHER = "0" * 31 + "2"
SUBJECT = subjects.job_event(JobKind.TRAINING, JOB, "cancel_requested")


def request(job_id: str = JOB, reason: str = "") -> bytes:
    return codec.encode(CancelRequested(job_id=job_id, reason=reason))


def test_remember_keeps_the_newest_entries() -> None:
    memory: OrderedDict[str, int] = OrderedDict()
    for i in range(5):
        remember(memory, f"k{i}", i, limit=3)
    remember(memory, "k2", 20, limit=3)  # touched again: newest, kept longest
    remember(memory, "k5", 5, limit=3)
    assert list(memory.items()) == [("k4", 4), ("k2", 20), ("k5", 5)]


def test_a_stop_stops_the_running_work_of_that_job_only() -> None:
    watcher = CancelWatcher()
    told: list[tuple[str, str]] = []
    with (
        watcher.running(JOB, lambda why: told.append(("a", why))),
        watcher.running(JOB, lambda why: told.append(("b", why))),
        watcher.running(OTHER, lambda why: told.append(("other", why))),
    ):
        assert watcher.running_jobs() == [JOB, OTHER]
        watcher.stop(JOB, "enough")
    assert told == [("a", "enough"), ("b", "enough")]
    assert watcher.reason(JOB) == "enough" and JOB in watcher
    assert OTHER not in watcher and watcher.running_jobs() == []


def test_work_of_a_job_already_stopped_is_stopped_as_it_starts() -> None:
    watcher = CancelWatcher()
    watcher.stop(JOB, "enough")  # nothing runs yet: only remembered
    told: list[str] = []
    with watcher.running(JOB, told.append):
        assert told == ["enough"]
    watcher.stop(JOB, "again")  # the work has ended: nothing left to tell
    assert told == ["enough"]


def test_remember_notes_an_ended_job_without_stopping_its_work() -> None:
    watcher = CancelWatcher()
    told: list[str] = []
    with watcher.running(JOB, told.append):
        watcher.remember(JOB, "has completed")
    assert told == [] and watcher.reason(JOB) == "has completed"


def test_the_memory_of_stopped_jobs_is_bounded() -> None:
    watcher = CancelWatcher(remembered=2)
    for job in ("a" * 32, "b" * 32, "c" * 32):
        watcher.stop(job, "x")
    assert "a" * 32 not in watcher
    assert watcher.reason("b" * 32) == watcher.reason("c" * 32) == "x"


def test_work_that_raises_leaves_no_registration_behind() -> None:
    watcher = CancelWatcher()
    with pytest.raises(RuntimeError), watcher.running(JOB, lambda _: None):
        raise RuntimeError("boom")
    assert watcher.running_jobs() == []


@pytest.mark.parametrize(
    ("reason", "kept"), [("enough", "enough"), ("", CANCEL_REQUESTED)], ids=["given", "none"]
)
def test_a_cancel_request_stops_its_job_with_its_reason(reason: str, kept: str) -> None:
    watcher = CancelWatcher()
    told: list[str] = []
    with watcher.running(JOB, told.append):
        watcher.on_request(request(reason=reason), SUBJECT)
    assert told == [kept]


def test_a_service_may_put_a_cancel_in_its_own_words() -> None:
    watcher = CancelWatcher()
    watcher.on_request(request(reason="enough"), SUBJECT, lambda _: "was cancelled")
    assert watcher.reason(JOB) == "was cancelled"


def test_a_malformed_cancel_request_is_ignored() -> None:
    watcher = CancelWatcher()
    watcher.on_request(b'{"reason": "no job"}', SUBJECT)
    watcher.on_request(b"\x00", SUBJECT)
    assert watcher.running_jobs() == [] and JOB not in watcher


async def test_follow_stops_jobs_of_its_kind_until_stopping() -> None:
    """``follow`` over a stand-in client: subscribed to the kind's filter, unsubscribed after."""

    class Subscription:
        unsubscribed = False

        async def unsubscribe(self) -> None:
            self.unsubscribed = True

    class Client:
        def __init__(self) -> None:
            self.subscribed: dict[str, object] = {}
            self.sub = Subscription()
            self.ready = asyncio.Event()

        async def subscribe(self, subject: str, cb: object) -> Subscription:
            self.subscribed[subject] = cb
            self.ready.set()
            return self.sub

    class Delivered:
        def __init__(self, data: bytes, subject: str) -> None:
            self.data, self.subject = data, subject

    client, stopping, watcher = Client(), asyncio.Event(), CancelWatcher()
    following = asyncio.create_task(watcher.follow(client, JobKind.TRAINING, stopping))  # type: ignore[arg-type]
    await client.ready.wait()
    [(subject, on_cancel)] = client.subscribed.items()
    assert subject == subjects.cancel_requests(JobKind.TRAINING)
    await on_cancel(Delivered(request(reason="enough"), SUBJECT))  # type: ignore[operator]
    assert watcher.reason(JOB) == "enough"
    stopping.set()
    await following
    assert client.sub.unsubscribed
