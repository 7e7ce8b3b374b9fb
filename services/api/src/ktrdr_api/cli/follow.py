"""Follow a job's server-sent events with a progress bar; Ctrl-C asks to cancel it.

The line under the bar says why the job is where it is and when it should end
(``explain``); where stderr is not a terminal, each change of reason is also a note.
The first Ctrl-C publishes a cancel request (``POST /jobs/{id}/cancel``) and
keeps following, so the user sees the job stop; the event stream resumes with
``Last-Event-ID`` and so neither skips nor repeats an event. A second Ctrl-C
stops waiting (exit 130). The exit code says how the job ended.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from ktrdr_api.cli.api_client import ApiClient, CliError, ExitCode, SseEvent
from ktrdr_api.cli.explain import explain
from ktrdr_api.cli.hints import plan_lines

TERMINAL = {"completed", "failed", "cancelled"}


def job_exit_code(job: dict[str, Any]) -> int:
    """Return the exit code for a job's final state."""
    status = job.get("status")
    if status == "failed":
        return ExitCode.JOB_FAILED
    if status == "cancelled":
        return ExitCode.JOB_CANCELLED
    result = job.get("result") or {}
    if status == "completed" and result.get("failed_segments"):
        return ExitCode.JOB_PARTIAL
    return ExitCode.OK


class JobFollower:
    """Show one job's progress from its event stream until it ends."""

    def __init__(self, client: ApiClient, job_id: str, *, console: Console, show: bool) -> None:
        self.client = client
        self.job_id = job_id
        self.console = console
        self.show = show
        self.last_id: int | None = None
        self.cancel_sent = False
        self.ended: str | None = None
        self.reason: str | None = None
        self.asked: dict[str, Any] = {}  # the job's parameters, from its accepted event

    def run(self) -> dict[str, Any]:
        """Follow until the job ends; return its final state (``GET /jobs/{id}``)."""
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[why]}", markup=False),
            console=self.console,
            disable=not self.show,
            transient=False,
        )
        task = progress.add_task(self.job_id[:8], total=None, unit="", why="")
        with progress:
            while self.ended is None:
                try:
                    for event in self.client.events(
                        f"/api/v1/jobs/{self.job_id}/events", self.last_id
                    ):
                        self.last_id = event.id if event.id is not None else self.last_id
                        self._show(progress, task, event)
                        if event.event in TERMINAL:
                            self.ended = event.event
                    if self.ended is None:  # the stream closed early (a restart?): look, resume
                        status = self.client.get(f"/api/v1/jobs/{self.job_id}").get("status")
                        self.ended = status if status in TERMINAL else None
                except KeyboardInterrupt:
                    self._interrupted()
        return dict(self.client.get(f"/api/v1/jobs/{self.job_id}"))

    def _interrupted(self) -> None:
        if self.cancel_sent:
            raise CliError(
                f"stopped following job {self.job_id}; it may still be cancelling "
                f"(ktrdr jobs show {self.job_id})",
                ExitCode.INTERRUPTED,
            )
        self.cancel_sent = True
        self.console.print(f"cancelling job {self.job_id} (Ctrl-C again to stop waiting)")
        try:
            self.client.post(
                f"/api/v1/jobs/{self.job_id}/cancel", {"reason": "interrupted from the ktrdr CLI"}
            )
        except CliError as e:
            if e.problem is None or e.problem.get("code") != "conflict":  # already ended: fine
                raise

    def _show(self, progress: Progress, task: Any, event: SseEvent) -> None:
        data, kind = event.data, event.event
        if kind == "progress":
            self._progress(progress, task, data)
        elif kind == "planned":
            segments = len(data.get("segments", []))
            progress.update(
                task,
                total=max(segments, 1) if segments else 1,
                completed=0 if segments else 1,
                unit="segments",
            )
            for line in plan_lines(data, self.asked):
                self._note(line)
        elif kind in ("segment_fetched", "segment_failed"):
            if progress.tasks[0].fields.get("unit") == "segments":
                progress.advance(task)
            if kind == "segment_failed":
                self._note(
                    f"segment {data.get('segment_id')} failed: {data.get('code')} "
                    f"{data.get('message', '')}{_did(data)}"
                )
        elif kind == "epoch_completed":
            progress.update(task, total=data["epochs"], completed=data["epoch"], unit="epochs")
        elif kind == "accepted":
            self.asked = dict(data.get("params") or {})
            self._note(f"job {self.job_id} accepted ({data.get('kind')})")
        elif kind == "cancel_requested":
            self._note(f"cancel requested: {data.get('reason', '')}")
        elif kind in TERMINAL:
            self._ended(progress, task, kind, data)

    def _progress(self, progress: Progress, task: Any, data: dict[str, Any]) -> None:
        words = explain(data)
        progress.update(task, why=words or data.get("message", ""))
        if data.get("total"):
            progress.update(
                task, total=data["total"], completed=data["done"], unit=data.get("unit", "")
            )
        reason = data.get("reason")
        if reason != self.reason and reason not in (None, "done") and not self.console.is_terminal:
            self._note(words)  # no live line to read it from: say each change once
        self.reason = reason

    def _ended(self, progress: Progress, task: Any, kind: str, data: dict[str, Any]) -> None:
        result = data.get("result") or {}
        if kind == "completed":
            ran = (result.get("metrics") or {}).get("epochs_run")
            if ran and progress.tasks[0].fields.get("unit") == "epochs":
                progress.update(task, total=ran)  # stopped early: the epochs that ran
            total = progress.tasks[0].total or 1
            progress.update(task, total=total, completed=total, why="done")
        else:
            progress.update(task, why=kind)
        text = f"job {kind}" + (f": {data.get('message')}" if data.get("message") else "")
        if kind == "cancelled":
            text += f": {data['reason']}" if data.get("reason") else ""
            if result.get("kind") == "data_load":
                text += (
                    f" (after {result.get('ib_requests_made', 0):,} IB requests, "
                    f"{result.get('fetched_bars', 0):,} bars fetched)"
                )
        self._note(text)

    def _note(self, text: str) -> None:
        if self.show:
            self.console.print(text, markup=False)


def _did(data: dict[str, Any]) -> str:
    """Return what a failed segment did before it stopped ("" when nothing)."""
    requests, bars = data.get("ib_requests") or 0, data.get("bars") or 0
    return f" (after {requests:,} IB requests, {bars:,} bars)" if requests or bars else ""
