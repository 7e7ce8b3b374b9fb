"""The ``ktrdr`` commands: status, ib, jobs (data: ``data``; train and models: ``training``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ktrdr_api.cli import hints, render
from ktrdr_api.cli.api_client import DEFAULT_URL, ApiClient, CliError, ExitCode
from ktrdr_api.cli.follow import JobFollower, job_exit_code

F = TypeVar("F", bound=Callable[..., Any])
TIMEFRAMES = ["1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]
TYPES = click.Choice(["STK", "CASH", "FUT", "IND"], case_sensitive=False)
SHOWS = click.Choice(["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"], case_sensitive=False)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


JSON_HELP = "Print JSON on stdout (for scripts); allowed anywhere on the command line."


def _json_wanted(ctx: click.Context, _: click.Parameter, value: bool) -> bool:
    """Remember ``--json`` for the whole invocation (``ctx.meta`` is shared by every level)."""
    if value:
        ctx.meta["ktrdr.json"] = True
    return bool(ctx.meta.get("ktrdr.json", False))


def json_option(command: F) -> F:
    """Add ``--json`` (machine-readable output on stdout) to a command."""
    return click.option("--json", "as_json", is_flag=True, callback=_json_wanted, help=JSON_HELP)(
        command
    )


def json_anywhere(group: F) -> F:
    """Let a group take ``--json`` for the command under it (``ktrdr --json status``)."""
    return click.option(
        "--json", is_flag=True, expose_value=False, callback=_json_wanted, help=JSON_HELP
    )(group)


def client_of(ctx: click.Context) -> ApiClient:
    """Return the API client of this invocation."""
    client: ApiClient = ctx.obj["client"]
    return client


def timestamp(value: str | None) -> str | None:
    """Pass an RFC 3339 timestamp through; a bare date means 00:00 UTC of that day."""
    if value is None:
        return None
    return f"{value}T00:00:00Z" if _DATE.match(value) else value


@click.group()
@json_anywhere
@click.option(
    "--url",
    envvar="KTRDR_API_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="The API's base URL (env KTRDR_API_URL).",
)
@click.option(
    "--api-key",
    envvar="KTRDR_API_KEY",
    default=None,
    help="The API key, when the gateway has one (env KTRDR_API_KEY).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds to wait for an answer.",
)
@click.pass_context
def cli(ctx: click.Context, url: str, api_key: str | None, timeout_s: float) -> None:
    """Drive ktrdr through its REST API (exit codes: see the api README)."""
    ctx.obj = {"client": ApiClient(url, api_key, timeout_s)}
    ctx.call_on_close(ctx.obj["client"].close)


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> int:
    """Health of the gateway, NATS and every service."""
    report = client_of(ctx).get("/health")
    render.print_json(report) if as_json else render.health(report)
    if report["status"] == "down":
        return ExitCode.UNAVAILABLE
    return ExitCode.OK if report["status"] == "ok" else ExitCode.DEGRADED


# ---------------------------------------------------------------- ib


@cli.group()
@json_anywhere
def ib() -> None:
    """The IB connection and symbol discovery."""


@ib.command("status")
@json_option
@click.pass_context
def ib_status(ctx: click.Context, as_json: bool) -> int:
    """The IB connection, as the connector holds it."""
    value = client_of(ctx).get("/api/v1/ib/status")
    render.print_json(value) if as_json else render.fields(value)
    return ib_exit_code(value)


def ib_exit_code(value: dict[str, Any]) -> int:
    """Return 8 (degraded) for the IB states ``status`` calls degraded, else 0.

    Not connected, the gateway's link to IB lost, or a data farm broken.
    """
    farms = value.get("farms") or {}
    if value.get("connected") and value.get("link_ok", True) and "broken" not in farms.values():
        return ExitCode.OK
    return ExitCode.DEGRADED


@ib.command("validate")
@click.argument("symbol")
@click.option("--type", "instrument_type", type=TYPES, help="Skip discovery (CASH, STK, FUT).")
@json_option
@click.pass_context
def ib_validate(ctx: click.Context, symbol: str, instrument_type: str | None, as_json: bool) -> int:
    """Look SYMBOL up at IB: instrument type, exchange, currency, trading hours."""
    body = {
        "symbol": symbol,
        "instrument_type": instrument_type.upper() if instrument_type else None,
    }
    value = client_of(ctx).post("/api/v1/ib/symbols/validate", {k: v for k, v in body.items() if v})
    if as_json:
        render.print_json(value)
    else:
        render.fields(value, unknown={"head_timestamp": "unknown: IB did not report one"})
    return ExitCode.OK


@ib.command("head-timestamp")
@click.argument("symbol")
@click.option("--type", "instrument_type", type=TYPES)
@click.option("--what-to-show", type=SHOWS)
@json_option
@click.pass_context
def ib_head(
    ctx: click.Context,
    symbol: str,
    instrument_type: str | None,
    what_to_show: str | None,
    as_json: bool,
) -> int:
    """The earliest bar IB has for SYMBOL."""
    value = client_of(ctx).get(
        "/api/v1/ib/head-timestamp",
        symbol=symbol,
        instrument_type=instrument_type,
        what_to_show=what_to_show,
    )
    render.print_json(value) if as_json else render.fields(value)
    return ExitCode.OK


# ---------------------------------------------------------------- jobs


@cli.group()
@json_anywhere
def jobs() -> None:
    """Data loads and training runs."""


@jobs.command("ls")
@click.option("--kind", type=click.Choice(["data_load", "training"]))
@click.option(
    "--status",
    type=click.Choice(["accepted", "running", "cancelling", "completed", "failed", "cancelled"]),
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def jobs_ls(
    ctx: click.Context, kind: str | None, status: str | None, limit: int, as_json: bool
) -> int:
    """Jobs in the event log, newest first."""
    value = client_of(ctx).get("/api/v1/jobs", kind=kind, status=status, limit=limit)
    if as_json:
        render.print_json(value)
    elif value["jobs"]:
        render.jobs(value["jobs"])
    else:
        render.hint(hints.no_jobs(kind, status))
    return ExitCode.OK


@jobs.command("show")
@click.argument("job_id")
@json_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str, as_json: bool) -> int:
    """A job's state, folded from its events (the exit code says how an ended job ended)."""
    value = client_of(ctx).get(f"/api/v1/jobs/{job_id}")
    render.print_json(value) if as_json else render.job(value)
    return job_exit_code(value)


@jobs.command("cancel")
@click.argument("job_id")
@click.option("--reason", default="cancelled from the ktrdr CLI", show_default=True)
@json_option
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: str, reason: str, as_json: bool) -> int:
    """Ask a job to stop."""
    value = client_of(ctx).post(f"/api/v1/jobs/{job_id}/cancel", {"reason": reason})
    render.print_json(value) if as_json else render.err.print(f"cancel requested for {job_id}")
    return ExitCode.OK


@jobs.command("follow")
@click.argument("job_id")
@json_option
@click.pass_context
def jobs_follow(ctx: click.Context, job_id: str, as_json: bool) -> int:
    """Follow a job until it ends (Ctrl-C asks to cancel it)."""
    return follow_job(ctx, job_id, as_json=as_json)


# ---------------------------------------------------------------- following a job


def follow_or_detach(
    ctx: click.Context, job: dict[str, Any], *, detach: bool, as_json: bool
) -> int:
    """Print a submitted job's id and return (``--detach``), or follow it to its end."""
    if detach:
        render.print_json(job) if as_json else render.out.print(job["job_id"])
        return ExitCode.OK
    if not as_json:
        render.err.print(f"job {job['job_id']} submitted")
    return follow_job(ctx, job["job_id"], as_json=as_json)


def follow_job(ctx: click.Context, job_id: str, *, as_json: bool) -> int:
    """Follow a job to its end; print its final state; return its exit code."""
    follower = JobFollower(client_of(ctx), job_id, console=render.err, show=not as_json)
    final = follower.run()
    if as_json:
        render.print_json(final)
    else:
        render.job(final)
    return job_exit_code(final)


__all__ = ["CliError", "cli"]
