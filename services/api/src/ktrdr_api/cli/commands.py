"""The ``ktrdr`` commands: status, ib, data, jobs (train and models: ``training``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ktrdr_api.cli import render
from ktrdr_api.cli.api_client import DEFAULT_URL, ApiClient, CliError, ExitCode
from ktrdr_api.cli.follow import JobFollower, job_exit_code

F = TypeVar("F", bound=Callable[..., Any])
TIMEFRAMES = ["1s", "5s", "15s", "30s", "1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]
TYPES = click.Choice(["STK", "CASH", "FUT", "IND"], case_sensitive=False)
SHOWS = click.Choice(["TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK"], case_sensitive=False)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def json_option(command: F) -> F:
    """Add ``--json`` (machine-readable output on stdout) to a command."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON on stdout (for scripts).")(command)  # fmt: skip


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
    """Drive ktrdr through its REST API (exit codes: see the api README)."""  # fmt: skip
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
def ib() -> None:
    """The IB connection and symbol discovery."""


@ib.command("status")
@json_option
@click.pass_context
def ib_status(ctx: click.Context, as_json: bool) -> int:
    """The IB connection, as the connector holds it."""
    value = client_of(ctx).get("/api/v1/ib/status")
    render.print_json(value) if as_json else render.fields(value)
    return ExitCode.OK if value.get("connected") else ExitCode.DEGRADED


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
    render.print_json(value) if as_json else render.fields(value)
    return ExitCode.OK


@ib.command("head-timestamp")
@click.argument("symbol")
@click.option("--type", "instrument_type", type=TYPES)
@click.option("--what-to-show", type=SHOWS)
@json_option
@click.pass_context
def ib_head(ctx: click.Context, symbol: str, instrument_type: str | None,
            what_to_show: str | None, as_json: bool) -> int:  # fmt: skip
    """The earliest bar IB has for SYMBOL."""
    value = client_of(ctx).get(
        "/api/v1/ib/head-timestamp",
        symbol=symbol,
        instrument_type=instrument_type,
        what_to_show=what_to_show,
    )
    render.print_json(value) if as_json else render.fields(value)
    return ExitCode.OK


# ---------------------------------------------------------------- data


@cli.group()
def data() -> None:
    """Load, list and show stored bars."""


@data.command("load")
@click.argument("symbol")
@click.argument("timeframe", type=click.Choice(TIMEFRAMES))
@click.option(
    "--mode",
    type=click.Choice(["tail", "backfill", "full"]),
    default="tail",
    show_default=True,
    help="After the last bar, before the first, or both plus gaps.",
)
@click.option("--start", help="RFC 3339 (or a date: 00:00 UTC).")
@click.option("--end", help="RFC 3339 (or a date: 00:00 UTC), exclusive.")
@click.option("--type", "instrument_type", type=TYPES)
@click.option("--what-to-show", type=SHOWS)
@click.option(
    "--rth",
    "use_rth",
    is_flag=True,
    help="Regular trading hours only (default: with extended hours).",
)
@click.option("--currency", help="The contract's currency, e.g. USD (a stock listed twice).")
@click.option("--primary-exchange", help="The listing exchange, e.g. NASDAQ (routing stays SMART).")
@click.option("--exchange", help="The exchange, e.g. CME for a future.")
@click.option("--contract-month", help="A future's expiry: YYYYMM or YYYYMMDD.")
@click.option("--con-id", type=int, help="IB's contract id: exactly this contract.")
@click.option("--detach", is_flag=True, help="Print the job and return at once.")
@json_option
@click.pass_context
def data_load(ctx: click.Context, symbol: str, timeframe: str, mode: str, start: str | None,
              end: str | None, instrument_type: str | None, what_to_show: str | None,
              use_rth: bool, currency: str | None, primary_exchange: str | None,
              exchange: str | None, contract_month: str | None, con_id: int | None,
              detach: bool, as_json: bool) -> int:  # fmt: skip
    """Load SYMBOL's TIMEFRAME bars, with a live progress bar; Ctrl-C asks to cancel.

    Without contract options a future is the contract whose expiry covers the range, a
    range over a roll is fetched from each front month in turn.
    """
    spec = {"currency": currency and currency.upper(),
            "primary_exchange": primary_exchange and primary_exchange.upper(),
            "exchange": exchange and exchange.upper(), "contract_month": contract_month,
            "con_id": con_id}  # fmt: skip
    body = {"symbol": symbol, "timeframe": timeframe, "mode": mode, "start": timestamp(start),
            "end": timestamp(end), "instrument_type": instrument_type and instrument_type.upper(),
            "what_to_show": what_to_show and what_to_show.upper(), "use_rth": use_rth,
            "contract": {k: v for k, v in spec.items() if v} or None}  # fmt: skip
    job = client_of(ctx).post("/api/v1/data/load", {k: v for k, v in body.items() if v})
    return follow_or_detach(ctx, job, detach=detach, as_json=as_json)


@data.command("ls")
@click.option("--coverage", is_flag=True, help="Add stored ranges and gaps.")
@json_option
@click.pass_context
def data_ls(ctx: click.Context, coverage: bool, as_json: bool) -> int:
    """Every stored dataset."""
    value = client_of(ctx).get("/api/v1/data", coverage=str(coverage).lower())
    if as_json:
        render.print_json(value)
        return ExitCode.OK
    rows = [(d["symbol"], d["timeframe"], d["rows"], d.get("first"), d.get("last"),
             len((d.get("coverage") or {}).get("gaps", [])) if coverage else None,
             d.get("damaged"))
            for d in value["datasets"]]  # fmt: skip
    render.table(None, ["symbol", "timeframe", "rows", "first", "last", "gaps", "damaged"], rows)
    return ExitCode.OK


@data.group("quarantine", invoke_without_command=True)
@json_option
@click.pass_context
def data_quarantine(ctx: click.Context, as_json: bool) -> int:
    """Every bar batch ingest rejected and kept, newest first, with its reason.

    ``release ID`` sends one through ingest again (after a fix); ``delete ID`` forgets it.
    """
    if ctx.invoked_subcommand is not None:
        return ExitCode.OK
    value = client_of(ctx).get("/api/v1/quarantine")
    if as_json:
        render.print_json(value)
        return ExitCode.OK
    rows = [(q["id"], q["received"], q["subject"], q["code"], q["bytes"], q.get("job_id"),
             q["message"]) for q in value["entries"]]  # fmt: skip
    render.table(None, ["id", "received", "subject", "code", "bytes", "job", "message"], rows)
    return ExitCode.OK


@data_quarantine.command("release")
@click.argument("entry_id", metavar="ID")
@json_option
@click.pass_context
def data_quarantine_release(ctx: click.Context, entry_id: str, as_json: bool) -> int:
    """Republish quarantined batch ID on its subject: ingest checks it again."""
    value = client_of(ctx).post(f"/api/v1/quarantine/{entry_id}/release")
    if as_json:
        render.print_json(value)
    else:
        render.out.print(f"released {value['id']} on {value['subject']}; if it still fails, "
                         "it is quarantined again")  # fmt: skip
    return ExitCode.OK


@data_quarantine.command("delete")
@click.argument("entry_id", metavar="ID")
@click.pass_context
def data_quarantine_delete(ctx: click.Context, entry_id: str) -> int:
    """Forget quarantined batch ID (its bytes are deleted)."""
    client_of(ctx).call("DELETE", f"/api/v1/quarantine/{entry_id}")
    render.out.print(f"deleted {entry_id}")
    return ExitCode.OK


@data.command("repair")
@click.argument("symbol")
@click.argument("timeframe", type=click.Choice(TIMEFRAMES))
@click.option("--detach", is_flag=True, help="Print what was done and the job; do not follow.")
@json_option
@click.pass_context
def data_repair(ctx: click.Context, symbol: str, timeframe: str, detach: bool,
                as_json: bool) -> int:  # fmt: skip
    """Move SYMBOL TIMEFRAME's unreadable files aside, forget their range and reload it."""
    value = client_of(ctx).post(f"/api/v1/data/{symbol}/{timeframe}/repair")
    if as_json and (detach or not value.get("job_id")):
        render.print_json(value)
        return ExitCode.OK
    if not as_json:
        out = render.out if detach or not value.get("job_id") else render.err
        for name in value["moved"]:
            out.print(f"moved {name} to damaged/")
        for r in value["forgotten"]:
            out.print(f"forgot answered {r['start']} .. {r['end']}")
        if not value["moved"]:
            out.print(f"{value['symbol']} {value['timeframe']}: nothing unreadable, nothing to do")
        elif value.get("job_id"):
            out.print(f"reload job {value['job_id']}")
    if not value.get("job_id") or detach:
        return ExitCode.OK
    return _follow(ctx, value["job_id"], as_json=as_json)


@data.command("show")
@click.argument("symbol")
@click.argument("timeframe", type=click.Choice(TIMEFRAMES))
@click.option("--start", help="RFC 3339 (or a date: 00:00 UTC).")
@click.option("--end", help="RFC 3339 (or a date: 00:00 UTC), exclusive.")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000_000),
    default=100,
    show_default=True,
    help="At most this many bars (pages are followed).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@json_option
@click.pass_context
def data_show(ctx: click.Context, symbol: str, timeframe: str, start: str | None,
              end: str | None, limit: int, fmt: str, as_json: bool) -> int:  # fmt: skip
    """Stored bars of SYMBOL and TIMEFRAME as a table, CSV or JSON."""
    client = client_of(ctx)
    fmt = "json" if as_json else fmt
    params: dict[str, Any] = {"start": timestamp(start), "end": timestamp(end)}
    path = f"/api/v1/data/{symbol.upper()}/{timeframe}"
    if fmt == "csv":
        _print_csv(client, path, params, limit)
        return ExitCode.OK
    bars: list[dict[str, Any]] = []
    cursor = None
    while len(bars) < limit:
        page = client.get(path, **params, limit=min(10_000, limit - len(bars)), cursor=cursor)
        bars += page["bars"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if fmt == "json":
        render.print_json({"symbol": symbol.upper(), "timeframe": timeframe, "bars": bars})
    else:
        columns = ["ts", "open", "high", "low", "close", "volume"]
        render.table(f"{symbol.upper()} {timeframe}", columns,
                     [[b.get(c) for c in columns] for b in bars])  # fmt: skip
    return ExitCode.OK


def _print_csv(client: ApiClient, path: str, params: dict[str, Any], limit: int) -> None:
    printed, cursor, header = 0, None, True
    while printed < limit:
        response = client.call("GET", path, accept="text/csv", params={
            **params, "limit": min(10_000, limit - printed), "cursor": cursor})  # fmt: skip
        lines = response.text.splitlines()
        rows = lines[1:]
        click.echo("\n".join(lines if header else rows), nl=bool(lines if header else rows))
        header = False
        printed += len(rows)
        cursor = response.headers.get("X-Next-Cursor")
        if not cursor:
            break


@data.command("coverage")
@click.argument("symbol")
@click.argument("timeframe", type=click.Choice(TIMEFRAMES))
@json_option
@click.pass_context
def data_coverage(ctx: click.Context, symbol: str, timeframe: str, as_json: bool) -> int:
    """What is stored and what is missing for SYMBOL and TIMEFRAME."""
    value = client_of(ctx).get(f"/api/v1/data/{symbol.upper()}/{timeframe}/coverage")
    render.print_json(value) if as_json else render.fields(value)
    return ExitCode.OK


# ---------------------------------------------------------------- jobs


@cli.group()
def jobs() -> None:
    """Data loads and training runs."""


@jobs.command("ls")
@click.option("--kind", type=click.Choice(["data_load", "training"]))
@click.option("--status", type=click.Choice(["accepted", "running", "cancelling", "completed",
                                             "failed", "cancelled"]))  # fmt: skip
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def jobs_ls(ctx: click.Context, kind: str | None, status: str | None, limit: int,
            as_json: bool) -> int:  # fmt: skip
    """Jobs in the event log, newest first."""
    value = client_of(ctx).get("/api/v1/jobs", kind=kind, status=status, limit=limit)
    render.print_json(value) if as_json else render.jobs(value["jobs"])
    return ExitCode.OK


@jobs.command("show")
@click.argument("job_id")
@json_option
@click.pass_context
def jobs_show(ctx: click.Context, job_id: str, as_json: bool) -> int:
    """A job's state, folded from its events."""
    value = client_of(ctx).get(f"/api/v1/jobs/{job_id}")
    render.print_json(value) if as_json else render.job(value)
    return ExitCode.OK


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
    return _follow(ctx, job_id, as_json=as_json)


# ---------------------------------------------------------------- following a job


def follow_or_detach(ctx: click.Context, job: dict[str, Any], *, detach: bool,
                      as_json: bool) -> int:  # fmt: skip
    if detach:
        render.print_json(job) if as_json else render.out.print(job["job_id"])
        return ExitCode.OK
    if not as_json:
        render.err.print(f"job {job['job_id']} submitted")
    return _follow(ctx, job["job_id"], as_json=as_json)


def _follow(ctx: click.Context, job_id: str, *, as_json: bool) -> int:
    follower = JobFollower(client_of(ctx), job_id, console=render.err, show=not as_json)
    final = follower.run()
    if as_json:
        render.print_json(final)
    else:
        render.job(final)
    return job_exit_code(final)


__all__ = ["CliError", "cli"]
