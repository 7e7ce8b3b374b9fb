"""The CLI's progress in words: each reason and estimate, the follow line, ``jobs show``.

Events and job views are the REST shapes (JSON); the follower reads them from a stand-in
client and draws on a console that records, so each reason's words can be read back.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from ktrdr_api.cli import render
from ktrdr_api.cli.api_client import SseEvent
from ktrdr_api.cli.explain import explain
from ktrdr_api.cli.follow import JobFollower
from ktrdr_api.jobs import fold
from ktrdr_api.views import job_out
from ktrdr_shared.messages import (
    EpochCompleted,
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobKind,
    JobProgress,
    LoadResult,
    ProgressReason,
    SegmentFailed,
    TrainingResult,
)
from ktrdr_shared.messages.base import event_type
from rich.console import Console

pytestmark = pytest.mark.unit

JOB = "0123456789abcdef0123456789abcdef"
NOW = datetime(2024, 6, 28, 13, 59, tzinfo=UTC)


@pytest.mark.parametrize(
    ("progress", "words"),
    [
        ({"reason": "fetching", "rate": 1234.4, "requests_done": 12, "requests_planned": 30,
          "eta": "2024-06-28T14:03:10Z"}, "fetching 1,234 bars/s · 12/30 requests · ETA 14:03"),
        ({"reason": "pacing", "until": "2024-06-28T14:05:12Z"},
         "waiting for IB's pacing window until 14:05:12"),
        ({"reason": "pacing", "until": "2024-06-28T14:05:12Z", "requests_done": 60},
         "waiting for IB's pacing window until 14:05:12 · 60 requests"),
        ({"reason": "ib_disconnected", "since": "2024-06-28T13:58:02Z"},
         "IB disconnected since 13:58:02"),
        ({"reason": "ib_disconnected", "since": "2024-06-27T23:58:02Z"},
         "IB disconnected since 2024-06-27 23:58:02"),
        ({"reason": "no_connector"}, "no ib-connector running"),
        ({"reason": "queued"}, "queued behind other jobs"),
        ({"reason": "storing", "eta": "2024-06-28T14:00:00Z"}, "storing · ETA 14:00"),
        ({"reason": "planning"}, "planning"),
        ({"reason": "cancelling", "eta": "2024-06-28T14:00:00Z"}, "cancelling"),
        ({"reason": "training", "eta": "2024-06-28T14:10:00Z"}, "training · ETA 14:10"),
        ({"reason": "done", "bars": 4567, "requests_done": 9}, "done: 4,567 bars · 9 requests"),
        ({"reason": "some_new_reason"}, "some new reason"),
        ({"message": "an older producer's words"}, ""),
    ],
)  # fmt: skip
def test_each_reason_in_words(progress: dict[str, Any], words: str) -> None:
    assert explain(progress, now=NOW, tz=UTC) == words


class Client:
    """Answers the follower's calls from a scripted event list and a final job view."""

    def __init__(self, events: list[Any], final: dict[str, Any]) -> None:
        self.script = [
            SseEvent(
                id=i + 1, event=event_type(e), data=msgspec.json.decode(msgspec.json.encode(e))
            )
            for i, e in enumerate(events)
        ]
        self.final = final

    def events(self, path: str, last_id: int | None) -> Iterator[SseEvent]:
        yield from self.script[last_id or 0 :]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return self.final


def follow(events: list[Any]) -> str:
    """Follow ``events`` to their end; return what the follower printed (no terminal)."""
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200, highlight=False)
    final = msgspec.to_builtins(job_out(fold(JOB, events)))
    JobFollower(Client(events, final), JOB, console=console, show=True).run()  # type: ignore[arg-type]
    return stream.getvalue()


def progress(reason: ProgressReason, done: float, **extra: Any) -> JobProgress:
    return JobProgress(
        job_id=JOB, ts=NOW, done=done, total=100, unit="percent", reason=reason, **extra
    )


def test_the_follower_says_why_a_load_waits_and_what_a_cancelled_load_did() -> None:
    result = LoadResult(
        fetched_bars=4000, cached_before=0, gaps_analyzed=2, segments_fetched=1, ib_requests_made=9
    )
    printed = follow(
        [
            JobAccepted(job_id=JOB, ts=NOW, kind=JobKind.DATA_LOAD, params={}),
            progress(ProgressReason.QUEUED, 0),
            progress(ProgressReason.FETCHING, 10, rate=500.0, requests_done=3, requests_planned=30),
            progress(ProgressReason.FETCHING, 20, rate=800.0, requests_done=6, requests_planned=30),
            progress(ProgressReason.PACING, 20, until=datetime(2024, 6, 28, 14, 5, 12, tzinfo=UTC)),
            progress(ProgressReason.IB_DISCONNECTED, 20, since=NOW),
            progress(ProgressReason.NO_CONNECTOR, 20),
            SegmentFailed(
                job_id=JOB,
                ts=NOW,
                segment_id="s1",
                code="cancelled",
                message="stopped",
                bars=300,
                ib_requests=3,
            ),
            JobCancelled(job_id=JOB, ts=NOW, reason="user", result=result),
        ]
    )
    for words in (
        "queued behind other jobs",
        "waiting for IB's pacing window until",
        "IB disconnected since",
        "no ib-connector running",
        "fetching 500 bars/s",
    ):
        assert words in printed, printed
    assert printed.count("fetching") == 1  # one note per change of reason, not per event
    assert "segment s1 failed: cancelled stopped (after 3 IB requests, 300 bars)" in printed
    assert "job cancelled: user (after 9 IB requests, 4,000 bars fetched)" in printed


def test_an_early_stopped_training_bar_ends_at_the_epochs_it_ran() -> None:
    epochs = [
        EpochCompleted(
            job_id=JOB,
            ts=NOW,
            epoch=e,
            epochs=20,
            train_loss=1.0,
            val_loss=1.0,
            val_accuracy=0.5,
            samples_per_s=1e4,
            device="cpu",
        )
        for e in range(1, 8)
    ]
    result = TrainingResult(
        model_id="m", device="cpu", metrics={"epochs_run": 7, "stopped_early": True}
    )
    printed = follow(
        [
            JobAccepted(job_id=JOB, ts=NOW, kind=JobKind.TRAINING, params={}),
            *epochs,
            JobCompleted(job_id=JOB, ts=NOW, result=result),
        ]
    )
    assert "7/7 epochs" in printed and "20/20" not in printed, printed


def test_jobs_show_prints_the_progress_in_words_and_what_a_cancel_left(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render, "out", Console(file=io.StringIO(), width=200))
    running = {
        "job_id": JOB,
        "status": "running",
        "notes": ["1s bars before 2024-01-01 are older than IB's six-month limit: not requested"],
        "progress": {
            "done": 40.0,
            "total": 100.0,
            "unit": "percent",
            "reason": "pacing",
            "until": "2024-06-28T14:05:12Z",
            "requests_done": 60,
        },
    }
    render.job(running)
    cancelled = {
        "job_id": JOB,
        "status": "cancelled",
        "progress": {
            "done": 40.0,
            "total": 100.0,
            "unit": "percent",
            "reason": "done",
            "bars": 4300,
            "requests_done": 9,
        },
    }
    render.job(cancelled)
    printed = render.out.file.getvalue()  # type: ignore[attr-defined]
    assert "progress: 40/100 percent · waiting for IB's pacing window until " in printed
    assert "notes: 1s bars before 2024-01-01" in printed
    assert "did: 9 IB requests, 4,300 bars" in printed
