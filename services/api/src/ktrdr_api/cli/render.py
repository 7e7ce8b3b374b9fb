"""How the CLI prints answers: JSON for scripts (``--json``), rich tables for people."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from ktrdr_api.cli.explain import PHRASES, counts, explain

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(value: Any) -> None:
    """Print ``value`` as JSON on stdout (the ``--json`` form of every command)."""
    print(json.dumps(value, indent=2, sort_keys=False))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print rows as a table on stdout."""
    t = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        t.add_column(column)
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out.print(t)


def fields(value: dict[str, Any], keys: Sequence[str] | None = None) -> None:
    """Print a resource's fields, one per line."""
    for key in keys or list(value):
        item = value.get(key)
        if isinstance(item, dict | list):
            item = json.dumps(item)
        out.print(f"[bold]{key}[/bold]: {'' if item is None else item}")


def health(report: dict[str, Any]) -> None:
    """Print the ``/health`` report."""
    out.print(f"[bold]overall[/bold]: {report['status']}   gateway {report['version']}   "
              f"NATS {report['nats']['status']} {report['nats'].get('server') or ''}")  # fmt: skip
    table(
        None,
        ["service", "status", "version", "detail"],
        [(s["name"], s["status"], s.get("version"), s.get("detail")) for s in report["services"]],
    )


def job(value: dict[str, Any]) -> None:
    """Print a job's state."""
    progress = value.get("progress") or {}
    shown = {k: value.get(k) for k in ("job_id", "kind", "status", "created", "updated",
                                       "execution_time_s", "segments_planned",
                                       "segments_fetched", "segments_failed", "bars_fetched",
                                       "ib_requests", "cancel_reason")}  # fmt: skip
    line = progress_line(progress)
    if line:
        shown["progress"] = line
    if value.get("status") == "cancelled" and counts(progress):
        shown["did"] = counts(progress)  # what a cancelled job did before it stopped
    if value.get("notes"):
        shown["notes"] = "; ".join(value["notes"])
    if value.get("result"):
        shown["result"] = value["result"]
    if value.get("error"):
        shown["error"] = value["error"]
    fields({k: v for k, v in shown.items() if v is not None})


def progress_line(progress: dict[str, Any]) -> str:
    """Return a job's progress as one line: how far, then why and when (``explain``)."""
    parts = []
    if progress.get("total"):
        parts.append(f"{progress.get('done') or 0:g}/{progress['total']:g} "
                     f"{progress.get('unit') or ''}".rstrip())  # fmt: skip
    words = explain(progress)
    if words:
        parts.append(words)
    if progress.get("message") and not words:
        parts.append(progress["message"])
    return " · ".join(parts)


def jobs(items: list[dict[str, Any]]) -> None:
    """Print a list of jobs."""
    table(None, ["job", "kind", "status", "symbol", "timeframe", "created", "progress"],
          [(j["job_id"], j.get("kind"), j["status"], j.get("symbol"), j.get("timeframe"),
            j.get("created"), _percent(j.get("progress") or {})) for j in items])  # fmt: skip


def _percent(progress: dict[str, Any]) -> str:
    percent = progress.get("percent")
    shown = "" if percent is None else f"{percent:g}%"
    reason = progress.get("reason")
    return f"{shown} {PHRASES.get(reason, reason)}".strip() if reason else shown
