"""How the CLI prints answers: JSON for scripts (``--json``), rich tables for people."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ktrdr_api.cli.explain import PHRASES, counts, explain
from ktrdr_api.cli.hints import when

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (the ``--json`` form of every command)."""
    print(json.dumps(value, indent=2, sort_keys=False))


def hint(text: str) -> None:
    """Print what was assumed or what to do next on stderr (stdout keeps the answer)."""
    err.print(text, markup=False)


def table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    whole: Sequence[str] = (),
) -> None:
    """Print rows as a table on stdout, as wide as the terminal and no wider.

    Args:
        title: a line above the table, or None.
        columns: the column headers.
        rows: the cells (None prints empty).
        whole: columns never wrapped nor cut (ids, times); the others wrap to fit.
    """
    t = Table(
        title=title, box=box.SIMPLE, pad_edge=False, collapse_padding=True, header_style="bold"
    )
    for column in columns:
        t.add_column(column, no_wrap=column in whole, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def fields(
    value: dict[str, Any], keys: Sequence[str] | None = None, unknown: dict[str, str] | None = None
) -> None:
    """Print a resource's fields, one per line (wrapped to the terminal); an empty one is left out.

    Args:
        value: the resource.
        keys: the fields to print, in order (default: all).
        unknown: what to print for a field that is empty, where leaving it out would hide
            something (``{"head_timestamp": "unknown: IB did not report one"}``).
    """
    unknown = unknown or {}
    for key in keys or list(value):
        item = value.get(key)
        if item is None or item == "":
            if key in unknown:
                field(key, unknown[key])
            continue
        if isinstance(item, dict | list):
            item = json.dumps(item) if item else "none"
        field(key, str(item))


def field(key: str, text: str) -> None:
    """Print ``key: text``, wrapped to the terminal's width, continued lines indented."""
    lines = textwrap.wrap(
        f"{key}: {text}", width=max(out.width, 40), subsequent_indent="  ", break_on_hyphens=False
    )
    first, *rest = lines or [f"{key}:"]
    out.print(f"[bold]{escape(key)}[/bold]:{escape(first[len(key) + 1 :])}")
    for line in rest:
        out.print(line, markup=False)


def health(report: dict[str, Any]) -> None:
    """Print the ``/health`` report."""
    out.print(
        f"[bold]overall[/bold]: {report['status']}   gateway {report['version']}   "
        f"NATS {report['nats']['status']} {report['nats'].get('server') or ''}"
    )
    table(
        None,
        ["service", "status", "version", "detail"],
        [(s["name"], s["status"], s.get("version"), s.get("detail")) for s in report["services"]],
        whole=["service"],
    )


def coverage(value: dict[str, Any]) -> None:
    """Print a dataset's coverage: counts, then each list of ranges one range a line (UTC)."""
    fields(value, ["symbol", "timeframe", "rows"])
    for key in ("first", "last"):
        if value.get(key):
            out.print(f"[bold]{key}[/bold]: {when(value[key])} UTC")
    for key in ("stored", "gaps", "answered_empty"):
        ranges = [f"{when(r['start'])} to {when(r['end'])}" for r in value.get(key) or []]
        if len(ranges) == 1:
            out.print(f"[bold]{key}[/bold]: {ranges[0]} UTC")
        else:
            out.print(f"[bold]{key}[/bold]: {f'{len(ranges)} ranges (UTC)' if ranges else 'none'}")
            for line in ranges:
                out.print(f"  {line}")


def job(value: dict[str, Any]) -> None:
    """Print a job's state."""
    progress = value.get("progress") or {}
    shown = {
        k: value.get(k)
        for k in (
            "job_id",
            "kind",
            "status",
            "created",
            "updated",
            "execution_time_s",
            "segments_planned",
            "segments_fetched",
            "segments_failed",
            "bars_fetched",
            "ib_requests",
            "cancel_reason",
        )
    }
    line = progress_line(progress)
    if line:
        shown["progress"] = line
    if value.get("status") == "cancelled" and counts(progress):
        shown["did"] = counts(progress)  # what a cancelled job did before it stopped
    if value.get("notes"):
        shown["notes"] = "; ".join(value["notes"])
    if value.get("error"):
        shown["error"] = value["error"]
    fields({k: v for k, v in shown.items() if v is not None})
    if value.get("result"):
        for key, text in result_lines(value["result"]):
            field(key, text)


def result_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Return a job's result as ``(label, text)`` lines a person reads (``--json``: all of it).

    A training result says whether the model beats always predicting the most common
    class before it shows a backtest, and what the backtest is computed on, so a high
    Sharpe next to a model worse than that baseline is not misread.
    """
    kind = result.get("kind")
    if kind == "data_load":
        failed = result.get("failed_segments") or []
        lines = [
            (
                "fetched",
                f"{_count(result.get('fetched_bars'), 'bar')} in "
                f"{_count(result.get('ib_requests_made'), 'IB request')} "
                f"({_count(result.get('segments_fetched'), 'segment')})",
            )
        ]
        for f in failed:
            lines.append(
                (
                    "missed",
                    f"{when(f.get('start'))} to {when(f.get('end'))} UTC: "
                    f"{f.get('code')}: {f.get('message')}",
                )
            )
        return lines
    if kind == "training":
        return training_lines(result)
    return [("result", json.dumps(result))]


def training_lines(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Return a training result's lines: model, the baseline check, then the backtest."""
    metrics = result.get("metrics") or {}
    split = metrics.get("split_samples") or {}
    accuracy, baseline = metrics.get("accuracy"), metrics.get("majority_baseline_accuracy")
    lines = [("model", f"{result.get('model_id')} (trained on {result.get('device')})")]
    epochs = metrics.get("epochs_run")
    if epochs is not None:
        early = (
            f", stopped early: best epoch {metrics.get('best_epoch')}"
            if metrics.get("stopped_early")
            else ""
        )
        lines.append(("epochs", f"{epochs} run{early}"))
    if isinstance(accuracy, int | float):
        lines.append(
            (
                "accuracy",
                f"{accuracy:.3f} on the {split.get('test', '?')} test samples; "
                f"always predicting {metrics.get('majority_class', '?')} "
                f"scores {_num(baseline)}",
            )
        )
        lines.append(("verdict", verdict(accuracy, baseline)))
    backtest = metrics.get("backtest") or {}
    strategy, hold = backtest.get("strategy") or {}, backtest.get("buy_and_hold") or {}
    if strategy:
        lines.append(
            (
                "backtest",
                f"test split only ({backtest.get('bars', '?')} bars), signals "
                "only, no costs: return "
                f"{_pct(strategy.get('total_return'))}, Sharpe "
                f"{_num(strategy.get('sharpe'))}; buy and hold "
                f"{_pct(hold.get('total_return'))}, Sharpe "
                f"{_num(hold.get('sharpe'))} (Sharpe annualised from one "
                "short period: it swings widely)",
            )
        )
    return lines


def verdict(accuracy: float, baseline: Any) -> str:
    """Return whether a model beats always predicting the most common class, in words."""
    if not isinstance(baseline, int | float):
        return "no majority-class baseline to compare with: treat the backtest as unverified"
    if accuracy <= baseline:
        return (
            f"does not beat always predicting the most common class ({accuracy:.3f} "
            f"{'<' if accuracy < baseline else '='} {baseline:.3f}): treat its backtest "
            "as noise"
        )
    return f"beats always predicting the most common class ({accuracy:.3f} > {baseline:.3f})"


def _count(n: Any, noun: str) -> str:
    if not isinstance(n, int):
        return f"? {noun}s"
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _num(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, int | float) else "?"


def _pct(x: Any) -> str:
    return f"{x:+.1%}" if isinstance(x, int | float) else "?"


def progress_line(progress: dict[str, Any]) -> str:
    """Return a job's progress as one line: how far, then why and when (``explain``)."""
    parts = []
    if progress.get("total"):
        parts.append(
            f"{progress.get('done') or 0:g}/{progress['total']:g} "
            f"{progress.get('unit') or ''}".rstrip()
        )
    words = explain(progress)
    if words:
        parts.append(words)
    if progress.get("message") and not words:
        parts.append(progress["message"])
    return " · ".join(parts)


def jobs(items: list[dict[str, Any]]) -> None:
    """Print a list of jobs: id, what, created (UTC, to the minute), status and progress."""
    table(
        None,
        ["job", "what", "created (UTC)", "status"],
        [
            (
                j["job_id"],
                _what(j),
                when(j.get("created"), minute=True),
                f"{j['status']} {_percent(j.get('progress') or {})}".strip(),
            )
            for j in items
        ],
        whole=["job", "created (UTC)"],
    )


def _what(job: dict[str, Any]) -> str:
    kind = {"data_load": "load", "training": "train"}.get(job.get("kind") or "", job.get("kind"))
    return " ".join(str(w) for w in (kind, job.get("symbol"), job.get("timeframe")) if w)


def _percent(progress: dict[str, Any]) -> str:
    percent = progress.get("percent")
    shown = "" if percent is None else f"{percent:g}%"
    reason = progress.get("reason")
    if reason == "done" and (percent is None or percent >= 100):
        return ""  # "completed" says it already
    return f"{shown} {PHRASES.get(reason, reason)}".strip() if reason else shown
