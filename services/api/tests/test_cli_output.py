"""The CLI output rules (README, "CLI output rules"), one test per item of issue 16.

Say what was assumed (a plan's range and what of it is stored, a load without --start,
extended hours), say what to do next on every empty answer, exit non-zero on anything
degraded or failed, fit 80 columns, take --json anywhere. The pure parts run on a stand-in
client; the rest is the real ``ktrdr`` process against the gateway and real services.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from ktrdr_api.cli import hints, render, report_error
from ktrdr_api.cli.api_client import CliError, ExitCode, SseEvent
from ktrdr_api.cli.commands import ib_exit_code
from ktrdr_api.cli.follow import JobFollower
from ktrdr_api.jobs import fold
from ktrdr_api.testing import cli_env, ktrdr, load_events, publish_all
from ktrdr_api.views import job_out
from ktrdr_shared.messages import (
    JobAccepted,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobKind,
    JobPlanned,
    LoadResult,
    PlannedSegment,
)
from ktrdr_shared.messages.base import event_type
from ktrdr_shared.runtime import ServiceApp
from ktrdr_shared.types import InstrumentType
from nats.js import JetStreamContext
from rich.console import Console

JOB = "0123456789abcdef0123456789abcdef"
T = datetime(2024, 6, 28, 20, 0, tzinfo=UTC)


# ---------------------------------------------------------------- a load's plan (5, 9)


class Client:
    """Answers the follower from a scripted event list and the job folded from it."""

    def __init__(self, events: list[Any]) -> None:
        self.script = [
            SseEvent(
                id=i + 1, event=event_type(e), data=msgspec.json.decode(msgspec.json.encode(e))
            )
            for i, e in enumerate(events)
        ]
        self.final = msgspec.to_builtins(job_out(fold(JOB, events)))

    def events(self, path: str, last_id: int | None) -> Iterator[SseEvent]:
        yield from self.script[last_id or 0 :]

    def get(self, path: str, **params: Any) -> dict[str, Any]:
        return dict(self.final)


def follow(params: dict[str, Any], **planned: Any) -> list[str]:
    """Follow a load of ``params`` with this plan to its end; return the lines printed."""
    plan = {
        "gaps_analyzed": 0,
        "cached_before": 0,
        "start": T.replace(hour=15),
        "end": T,
        "instrument_type": InstrumentType.STK,
    } | planned
    result = LoadResult(
        fetched_bars=0,
        cached_before=plan["cached_before"],
        gaps_analyzed=0,
        segments_fetched=0,
        ib_requests_made=0,
    )
    events = [
        JobAccepted(job_id=JOB, ts=T, kind=JobKind.DATA_LOAD, params=params),
        JobPlanned(job_id=JOB, ts=T, **plan),
        JobCompleted(job_id=JOB, ts=T, result=result),
    ]
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=200, highlight=False)
    JobFollower(Client(events), JOB, console=console, show=True).run()  # type: ignore[arg-type]
    return stream.getvalue().splitlines()


TAIL = {"symbol": "AAPL", "timeframe": "1h", "mode": "tail"}


@pytest.mark.unit
def test_a_tail_plan_names_its_range_and_what_of_it_is_stored() -> None:
    lines = follow(TAIL, cached_before=1)
    assert (
        "planned: nothing to fetch from 2024-06-28 15:00 to 2024-06-28 20:00 UTC: "
        "1 bar of that range already stored"
    ) in lines
    assert (
        "note: no --start: a tail load begins at the last stored bar; --start loads "
        "earlier bars" in lines
    )


@pytest.mark.parametrize(
    ("segments", "stored", "line"),
    [
        (3, 0, "planned: 3 segments to fetch from 2024-06-28 15:00 to 2024-06-28 20:00 UTC; "
               "none of it stored yet"),
        (1, 2, "planned: 1 segment to fetch from 2024-06-28 15:00 to 2024-06-28 20:00 UTC; "
               "2 bars of that range already stored"),
        (0, 1979, "planned: nothing to fetch from 2024-06-28 15:00 to 2024-06-28 20:00 UTC: "
                  "1,979 bars of that range already stored"),
    ],
)  # fmt: skip
@pytest.mark.unit
def test_the_plan_line_counts_in_words(segments: int, stored: int, line: str) -> None:
    planned = [
        PlannedSegment(segment_id=f"s{i}", start=T.replace(hour=15), end=T) for i in range(segments)
    ]
    assert line in follow(
        TAIL | {"start": "2024-06-17T00:00:00Z"},
        cached_before=stored,
        segments=planned,
        gaps_analyzed=segments,
    )


@pytest.mark.unit
def test_a_load_without_start_says_what_it_took_and_that_hours_are_extended() -> None:
    lines = follow(TAIL, cached_before=0, start=datetime(2024, 1, 2, tzinfo=UTC))
    assert (
        "note: no --start and nothing stored: the data-store's default range for 1h, "
        "from 2024-01-02 00:00 UTC; --start loads earlier bars"
    ) in lines
    assert (
        "note: 1h bars include extended hours (outside regular trading hours); --rth "
        "loads regular trading hours only"
    ) in lines


@pytest.mark.unit
def test_the_plans_own_notes_are_printed_each_and_not_repeated() -> None:
    notes = [
        "no start given: loading from 2024-01-02 00:00 UTC (the default for 1h)",
        "1h bars include extended hours: --rth for regular trading hours",
    ]
    lines = follow(TAIL, notes=notes)
    assert [line for line in lines if line.startswith("note: ")] == [f"note: {n}" for n in notes]


@pytest.mark.parametrize(
    ("params", "kind"),
    [(TAIL | {"use_rth": True}, InstrumentType.STK), (TAIL, InstrumentType.CASH),
     (TAIL | {"timeframe": "1d"}, InstrumentType.STK)],
)  # fmt: skip
@pytest.mark.unit
def test_no_hours_note_for_rth_forex_or_daily_bars(
    params: dict[str, Any], kind: InstrumentType
) -> None:
    assert not any("extended hours" in line for line in follow(params, instrument_type=kind))


# ---------------------------------------------------------------- data show (6, 7)

STORED = {"rows": 142, "first": "2024-06-17T08:00:00Z", "last": "2024-06-28T21:00:00Z"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("start", "first_bar", "coverage", "words"),
    [
        ("2024-06-10", "2024-06-17T08:00:00Z", STORED,
         "stored data of AAPL 1h begins 2024-06-17 08:00 UTC; nothing stored from 2024-06-10: "
         "load it with `ktrdr data load AAPL 1h --start 2024-06-10`"),
        ("2024-06-10", "2024-06-17T08:00:00Z",
         STORED | {"answered_empty": [{"start": "2024-06-01T00:00:00Z",
                                       "end": "2024-06-17T08:00:00Z"}]}, None),
        ("2024-06-22", "2024-06-24T08:00:00Z", STORED, None),  # a weekend inside the data
        ("2024-06-18", "2024-06-18T08:00:00Z", STORED, None),
        ("2024-06-29", None, STORED,
         "stored data of AAPL 1h ends 2024-06-28 21:00 UTC; nothing stored from 2024-06-29: "
         "load what is newer with `ktrdr data load AAPL 1h`"),
        (None, None, {"rows": 0}, "nothing stored for AAPL 1h: load it with "
                                  "`ktrdr data load AAPL 1h`"),
        ("2024-06-10", None, {"rows": 0}, "nothing stored for AAPL 1h: load it with "
                                          "`ktrdr data load AAPL 1h --start 2024-06-10`"),
    ],
)  # fmt: skip
def test_show_says_where_stored_bars_begin_and_how_to_load_the_rest(
    start: str | None, first_bar: str | None, coverage: dict[str, Any], words: str | None
) -> None:
    asked = datetime.fromisoformat(f"{start}T00:00:00+00:00") if start else None
    assert (
        hints.show_hint(
            "AAPL",
            "1h",
            start=start,
            end=None,
            asked_start=asked,
            first_bar=first_bar,
            coverage=coverage,
        )
        == words
    )


# ---------------------------------------------------------------- 80 columns, exit codes (8)


@pytest.mark.unit
def test_jobs_ls_fits_80_columns_with_whole_ids_and_readable_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(render, "out", Console(file=io.StringIO(), width=80, highlight=False))
    job = {
        "job_id": JOB,
        "kind": "data_load",
        "status": "running",
        "symbol": "AAPL",
        "timeframe": "1h",
        "created": "2026-11-30T14:02:33.123456Z",
        "progress": {"percent": 40.0, "reason": "pacing"},
    }
    render.jobs([job, job | {"kind": "training", "status": "cancelling"}])
    printed = render.out.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in printed.splitlines()), printed
    assert JOB in printed and "2026-11-30 14:02" in printed and "…" not in printed


@pytest.mark.parametrize(
    ("status", "code"),
    [({"connected": True}, ExitCode.OK), ({"connected": False}, ExitCode.DEGRADED),
     ({"connected": True, "link_ok": False}, ExitCode.DEGRADED),
     ({"connected": True, "farms": {"usfarm": "broken"}}, ExitCode.DEGRADED),
     ({"connected": True, "farms": {"usfarm": "ok", "ushmds": "inactive"}}, ExitCode.OK)],
)  # fmt: skip
@pytest.mark.unit
def test_ib_status_exits_8_on_the_states_status_calls_degraded(
    status: dict[str, Any], code: int
) -> None:
    assert ib_exit_code(status) == code


@pytest.mark.unit
def test_a_problems_hint_is_printed_after_its_error(capsys: pytest.CaptureFixture[str]) -> None:
    problem = {
        "detail": "no bars of AAPL 1h are stored",
        "code": "dataset_not_found",
        "hint": "load it with `ktrdr data load AAPL 1h`",
    }
    code = report_error(
        CliError(f"404 {problem['detail']}", ExitCode.REFUSED, problem), as_json=False
    )
    assert code == ExitCode.REFUSED
    assert capsys.readouterr().err.splitlines() == [
        "ktrdr: 404 no bars of AAPL 1h are stored",
        "hint: load it with `ktrdr data load AAPL 1h`",
    ]


# ---------------------------------------------------------------- the real CLI


@pytest.mark.integration
async def test_json_is_taken_anywhere_on_the_command_line(api_url: str) -> None:
    for args in (["--json", "jobs", "ls"], ["jobs", "--json", "ls"], ["jobs", "ls", "--json"]):
        run = await ktrdr(api_url, *args)
        assert run.code == ExitCode.OK, (args, run.err)
        assert json.loads(run.out) == {"jobs": []}, args
        assert run.err == "", args  # --json: stdout is the answer, stderr says nothing
    status = await ktrdr(api_url, "--json", "status")
    assert status.code == ExitCode.DEGRADED  # no service runs
    assert json.loads(status.out)["status"] == "degraded"


@pytest.mark.integration
async def test_every_empty_answer_says_what_to_do_next(
    api_url: str, data_store: ServiceApp
) -> None:
    jobs = await ktrdr(api_url, "jobs", "ls")
    assert jobs.code == ExitCode.OK and jobs.out == ""
    assert "no jobs yet: start one with `ktrdr data load AAPL 1h`" in jobs.err
    failed = await ktrdr(api_url, "jobs", "ls", "--status", "failed")
    assert "no failed jobs: `ktrdr jobs ls` lists every job" in failed.err
    datasets = await ktrdr(api_url, "data", "ls")
    assert datasets.code == ExitCode.OK and datasets.out == ""
    assert "no datasets stored yet: load one with `ktrdr data load AAPL 1h`" in datasets.err
    for args in (["data", "show", "MSFT", "1h"], ["data", "coverage", "MSFT", "1h"]):
        run = await ktrdr(api_url, *args)  # 200 empty, or 404 with a hint: either says it
        assert "`ktrdr data load MSFT 1h`" in run.err, (args, run.err)


@pytest.mark.integration
async def test_showing_a_job_exits_with_how_it_ended_and_tables_fit_80_columns(
    api_url: str, js: JetStreamContext
) -> None:
    failed, cancelled, done = "f" * 32, "c" * 32, "d" * 32
    why = JobFailed(job_id=failed, code="unknown_symbol", message="IB: no AAPLX")
    await publish_all(js, [*load_events(failed)[:2], why])
    await publish_all(js, [*load_events(cancelled)[:2], JobCancelled(job_id=cancelled)])
    await publish_all(js, load_events(done))
    expected = {failed: ExitCode.JOB_FAILED, cancelled: ExitCode.JOB_CANCELLED, done: ExitCode.OK}
    for job, code in expected.items():
        assert (await ktrdr(api_url, "jobs", "show", job)).code == code
    listed = await ktrdr(api_url, "jobs", "ls", env=cli_env() | {"COLUMNS": "80"})
    assert listed.code == ExitCode.OK, listed.err
    lines = listed.out.splitlines()
    assert all(len(line) <= 80 for line in lines), listed.out
    assert all(job in listed.out for job in expected)
    assert "2024-06-28 22:00" in listed.out and "…" not in listed.out


@pytest.mark.integration
@pytest.mark.e2e
async def test_validate_prints_no_empty_field_and_fits_80_columns(
    connector: ServiceApp, api_url: str
) -> None:
    run = await ktrdr(api_url, "ib", "validate", "ES", env=cli_env() | {"COLUMNS": "80"})
    assert run.code == ExitCode.OK, run.err
    assert not [line for line in run.out.splitlines() if re.fullmatch(r"\w+:\s*", line)]
    assert "head_timestamp: " in run.out  # a time, or why there is none
    assert all(len(line) <= 80 for line in run.out.splitlines()), run.out  # trading hours wrap


@pytest.mark.integration
@pytest.mark.e2e
async def test_a_tail_load_and_a_show_before_the_data_say_what_is_stored(
    connector: ServiceApp, data_store: ServiceApp, api_url: str
) -> None:
    first = await ktrdr(api_url, "data", "load", "AAPL", "1h", "--start", "2024-06-17")
    assert first.code == ExitCode.OK, first.err
    [dataset] = json.loads((await ktrdr(api_url, "data", "ls", "--json")).out)["datasets"]

    tail = await ktrdr(api_url, "data", "load", "AAPL", "1h", "--mode", "tail")
    assert tail.code == ExitCode.OK, tail.err
    planned = next(line for line in tail.err.splitlines() if line.startswith("planned: "))
    assert re.fullmatch(
        r"planned: (nothing|\d+ segments?) to fetch from \d{4}-\d\d-\d\d \d\d:\d\d "
        r"to \d{4}-\d\d-\d\d \d\d:\d\d UTC[:;] .*",
        planned,
    ), planned
    # the old line counted only the bars inside the tail's range as if they were the dataset's
    assert re.search(r"of that range already stored|none of it stored", planned), planned
    assert not re.search(r"\b1 bars\b", tail.err) and "segment(s)" not in tail.err
    assert "extended hours" in tail.err  # AAPL 1h without --rth: said by the plan or the CLI
    total = f"AAPL 1h: {dataset['rows']:,} bars stored, from 2024-06-17"
    assert total in tail.err, tail.err

    shown = await ktrdr(api_url, "data", "show", "AAPL", "1h", "--start", "2024-06-10")
    assert shown.code == ExitCode.OK, shown.err
    assert "stored data of AAPL 1h begins 2024-06-17" in shown.err, shown.err
    assert (
        "nothing stored from 2024-06-10: load it with "
        "`ktrdr data load AAPL 1h --start 2024-06-10`" in shown.err
    )
    inside = await ktrdr(
        api_url, "data", "show", "AAPL", "1h", "--start", "2024-06-18", "--limit", "5"
    )
    assert inside.err == "", inside.err  # stored from there on: nothing to say


TRAINING_RESULT = {
    "kind": "training", "model_id": "AAPL-1h-ba7c0ee2912c", "device": "cpu",
    "metrics": {"samples": 281, "accuracy": 0.4164, "majority_class": "buy",
                "majority_baseline_accuracy": 0.4484, "best_epoch": 2, "epochs_run": 7,
                "stopped_early": True, "split_samples": {"train": 1306, "validation": 276,
                                                          "test": 281},
                "backtest": {"bars": 281, "strategy": {"total_return": 0.0844, "sharpe": 3.49},
                             "buy_and_hold": {"total_return": 0.1606, "sharpe": 6.13}}},
}  # fmt: skip


@pytest.mark.unit
def test_a_training_result_below_the_majority_baseline_says_so_before_its_backtest() -> None:
    """Issue 16 item 11 in the CLI: `ktrdr train start` printed the whole result as one JSON
    blob, a Sharpe of 3.49 beside a model worse than always predicting 'buy'."""
    lines = dict(render.result_lines(TRAINING_RESULT))
    assert lines["verdict"] == (
        "does not beat always predicting the most common class "
        "(0.416 < 0.448): treat its backtest as noise"
    )
    assert lines["accuracy"] == "0.416 on the 281 test samples; always predicting buy scores 0.448"
    assert lines["backtest"].startswith(
        "test split only (281 bars), signals only, no costs: return +8.4%, Sharpe 3.490; "
        "buy and hold +16.1%"
    )
    assert lines["epochs"] == "7 run, stopped early: best epoch 2"
    better = json.loads(json.dumps(TRAINING_RESULT))
    better["metrics"]["accuracy"] = 0.51
    verdict = dict(render.result_lines(better))["verdict"]
    assert verdict == "beats always predicting the most common class (0.510 > 0.448)"


@pytest.mark.unit
def test_a_load_result_reads_as_a_sentence_not_json() -> None:
    missed = {
        "segment_id": "s0001",
        "start": "2024-03-01T00:00:00Z",
        "end": "2024-03-02T00:00:00Z",
        "code": "ib_timeout",
        "message": "no answer",
    }
    result = {
        "kind": "data_load",
        "fetched_bars": 1252,
        "cached_before": 0,
        "gaps_analyzed": 1,
        "segments_fetched": 1,
        "ib_requests_made": 1,
        "failed_segments": [missed],
    }
    assert render.result_lines(result) == [
        ("fetched", "1,252 bars in 1 IB request (1 segment)"),
        ("missed", "2024-03-01 00:00 to 2024-03-02 00:00 UTC: ib_timeout: no answer"),
    ]
