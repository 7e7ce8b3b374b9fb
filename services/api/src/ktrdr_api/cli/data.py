"""The ``ktrdr data`` commands: load, ls, show, coverage, quarantine and repair."""

from __future__ import annotations

from typing import Any

import click

from ktrdr_api.cli import hints, render
from ktrdr_api.cli.api_client import ApiClient, CliError, ExitCode
from ktrdr_api.cli.commands import (
    SHOWS,
    TIMEFRAMES,
    TYPES,
    cli,
    client_of,
    follow_job,
    follow_or_detach,
    json_anywhere,
    json_option,
    timestamp,
)


@cli.group()
@json_anywhere
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
def data_load(
    ctx: click.Context,
    symbol: str,
    timeframe: str,
    mode: str,
    start: str | None,
    end: str | None,
    instrument_type: str | None,
    what_to_show: str | None,
    use_rth: bool,
    currency: str | None,
    primary_exchange: str | None,
    exchange: str | None,
    contract_month: str | None,
    con_id: int | None,
    detach: bool,
    as_json: bool,
) -> int:
    """Load SYMBOL's TIMEFRAME bars, with a live progress bar; Ctrl-C asks to cancel.

    Without --start a tail load begins at the last stored bar (nothing stored: the
    data-store's default range for TIMEFRAME); the plan's lines say which range it took.
    Without contract options a future is the contract whose expiry covers the range, a
    range over a roll is fetched from each front month in turn.
    """
    spec = {
        "currency": currency and currency.upper(),
        "primary_exchange": primary_exchange and primary_exchange.upper(),
        "exchange": exchange and exchange.upper(),
        "contract_month": contract_month,
        "con_id": con_id,
    }
    body = {
        "symbol": symbol,
        "timeframe": timeframe,
        "mode": mode,
        "start": timestamp(start),
        "end": timestamp(end),
        "instrument_type": instrument_type and instrument_type.upper(),
        "what_to_show": what_to_show and what_to_show.upper(),
        "use_rth": use_rth,
        "contract": {k: v for k, v in spec.items() if v} or None,
    }
    job = client_of(ctx).post("/api/v1/data/load", {k: v for k, v in body.items() if v})
    code = follow_or_detach(ctx, job, detach=detach, as_json=as_json)
    if not (detach or as_json):
        _say_what_is_stored(client_of(ctx), symbol.upper(), timeframe)
    return code


def _say_what_is_stored(client: ApiClient, symbol: str, timeframe: str) -> None:
    """Print what the dataset holds after a load (the plan counts only its own range)."""
    try:
        listed = client.get("/api/v1/data")["datasets"]
    except CliError as e:  # a courtesy line: the load's own result stands
        render.hint(f"(could not list the stored datasets: {e.message})")
        return
    for dataset in listed:
        if (dataset["symbol"], dataset["timeframe"]) == (symbol, timeframe):
            render.hint(hints.stored_line(dataset))


@data.command("ls")
@click.option("--coverage", is_flag=True, help="Add stored ranges and gaps.")
@json_option
@click.pass_context
def data_ls(ctx: click.Context, coverage: bool, as_json: bool) -> int:
    """Every stored dataset (a damaged one is listed, with how to repair it)."""
    value = client_of(ctx).get("/api/v1/data", coverage=str(coverage).lower())
    if as_json:
        render.print_json(value)
        return ExitCode.OK
    datasets = value["datasets"]
    if not datasets:
        render.hint(hints.no_datasets())
        return ExitCode.OK
    columns = ["symbol", "timeframe", "bars", "first (UTC)", "last (UTC)"]
    columns += ["gaps"] if coverage else []
    damaged = [d for d in datasets if d.get("damaged")]
    columns += ["damaged"] if damaged else []
    rows = [
        [
            d["symbol"],
            d["timeframe"],
            f"{d['rows']:,}",
            hints.when(d.get("first")),
            hints.when(d.get("last")),
            *([len((d.get("coverage") or {}).get("gaps", []))] if coverage else []),
            *([d.get("damaged")] if damaged else []),
        ]
        for d in datasets
    ]
    render.table(None, columns, rows, whole=["first (UTC)", "last (UTC)"])
    for dataset in damaged:
        render.hint(hints.damaged(dataset))
    return ExitCode.OK  # a listing answers what was asked, damage included: see the README


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
    elif not value["entries"]:
        render.hint("nothing quarantined: ingest has rejected no bar batch")
    else:
        rows = [
            (
                q["id"],
                hints.when(q["received"], minute=True),
                q["subject"],
                q["code"],
                q["bytes"],
                q.get("job_id"),
                q["message"],
            )
            for q in value["entries"]
        ]
        render.table(
            None,
            ["id", "received (UTC)", "subject", "code", "bytes", "job", "message"],
            rows,
            whole=["id"],
        )
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
        render.out.print(
            f"released {value['id']} on {value['subject']}; if it still fails, "
            "it is quarantined again"
        )
    return ExitCode.OK


@data_quarantine.command("delete")
@click.argument("entry_id", metavar="ID")
@json_option
@click.pass_context
def data_quarantine_delete(ctx: click.Context, entry_id: str, as_json: bool) -> int:
    """Forget quarantined batch ID (its bytes are deleted)."""
    client_of(ctx).call("DELETE", f"/api/v1/quarantine/{entry_id}")
    render.print_json({"deleted": entry_id}) if as_json else render.out.print(f"deleted {entry_id}")
    return ExitCode.OK


@data.command("repair")
@click.argument("symbol")
@click.argument("timeframe", type=click.Choice(TIMEFRAMES))
@click.option("--detach", is_flag=True, help="Print what was done and the job; do not follow.")
@json_option
@click.pass_context
def data_repair(
    ctx: click.Context, symbol: str, timeframe: str, detach: bool, as_json: bool
) -> int:
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
    return follow_job(ctx, value["job_id"], as_json=as_json)


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
def data_show(
    ctx: click.Context,
    symbol: str,
    timeframe: str,
    start: str | None,
    end: str | None,
    limit: int,
    fmt: str,
    as_json: bool,
) -> int:
    """Stored bars of SYMBOL and TIMEFRAME as a table, CSV or JSON.

    When stored bars begin after --start (or none answer), stderr says where they begin
    and the load command that fetches the rest.
    """
    client = client_of(ctx)
    symbol = symbol.upper()
    params: dict[str, Any] = {"start": timestamp(start), "end": timestamp(end)}
    path = f"/api/v1/data/{symbol}/{timeframe}"
    if fmt == "csv" and not as_json:
        first_bar, more = _print_csv(client, path, params, limit)
        said = None
    else:
        bars, said, more = _bars(client, path, params, limit)
        first_bar = bars[0]["ts"] if bars else None
        if as_json or fmt == "json":
            render.print_json({"symbol": symbol, "timeframe": timeframe, "bars": bars})
        elif bars:
            columns = ["open", "high", "low", "close", "volume"]
            render.table(
                f"{symbol} {timeframe}",
                ["ts (UTC)", *columns],
                [[hints.when(b["ts"]), *(b.get(c) for c in columns)] for b in bars],
                whole=["ts (UTC)"],
            )
    if not as_json:
        _say_what_was_left_out(client, symbol, timeframe, start, end, first_bar, said)
        if more and ctx.get_parameter_source("limit") is click.core.ParameterSource.DEFAULT:
            render.hint(
                f"the first {hints.count(limit, 'bar')} shown (--limit {limit}); "
                "--limit or --start shows more"
            )
    return ExitCode.OK


def _say_what_was_left_out(
    client: ApiClient,
    symbol: str,
    timeframe: str,
    start: str | None,
    end: str | None,
    first_bar: str | None,
    said: str | None,
) -> None:
    """Say where stored bars begin when they begin after ``start`` or none answered."""
    if said:  # the API's own words
        render.hint(said)
        return
    asked = hints.moment(f"{timestamp(start)}") if start else None
    if first_bar is not None and (asked is None or hints.moment(first_bar) <= asked):
        return
    coverage = client.get(f"/api/v1/data/{symbol}/{timeframe}/coverage")
    words = hints.show_hint(
        symbol,
        timeframe,
        start=start,
        end=end,
        asked_start=asked,
        first_bar=first_bar,
        coverage=coverage,
    )
    if words:
        render.hint(words)


def _bars(
    client: ApiClient, path: str, params: dict[str, Any], limit: int
) -> tuple[list[dict[str, Any]], str | None, bool]:
    """Return up to ``limit`` bars (cursors followed), the API's hint, and whether more are."""
    bars: list[dict[str, Any]] = []
    cursor, said = None, None
    while len(bars) < limit:
        page = client.get(path, **params, limit=min(10_000, limit - len(bars)), cursor=cursor)
        bars += page["bars"]
        said = said or page.get("hint")
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return bars, said, bool(cursor)


def _print_csv(
    client: ApiClient, path: str, params: dict[str, Any], limit: int
) -> tuple[str | None, bool]:
    """Print up to ``limit`` bars as CSV (cursors followed); return the first stamp, more?"""
    printed, cursor, header, first_bar = 0, None, True, None
    while printed < limit:
        response = client.call(
            "GET",
            path,
            accept="text/csv",
            params={**params, "limit": min(10_000, limit - printed), "cursor": cursor},
        )
        lines = response.text.splitlines()
        rows = lines[1:]
        click.echo("\n".join(lines if header else rows), nl=bool(lines if header else rows))
        if rows and first_bar is None:
            first_bar = rows[0].split(",", 1)[0]
        header = False
        printed += len(rows)
        cursor = response.headers.get("X-Next-Cursor")
        if not cursor:
            break
    return first_bar, bool(cursor)


@data.command("coverage")
@click.argument("symbol")
@click.argument("timeframe", type=click.Choice(TIMEFRAMES))
@json_option
@click.pass_context
def data_coverage(ctx: click.Context, symbol: str, timeframe: str, as_json: bool) -> int:
    """What is stored and what is missing for SYMBOL and TIMEFRAME."""
    symbol = symbol.upper()
    value = client_of(ctx).get(f"/api/v1/data/{symbol}/{timeframe}/coverage")
    if as_json:
        render.print_json(value)
        return ExitCode.OK
    render.coverage(value)
    if value.get("hint"):
        render.hint(value["hint"])
    elif not value.get("rows"):
        render.hint(
            f"nothing stored for {symbol} {timeframe}: load it with "
            f"`{hints.load_command(symbol, timeframe)}`"
        )
    return ExitCode.OK
