"""The ``ktrdr train`` and ``ktrdr models`` commands."""

from __future__ import annotations

from pathlib import Path

import click

from ktrdr_api.cli import hints, render
from ktrdr_api.cli.api_client import ExitCode
from ktrdr_api.cli.commands import (
    TIMEFRAMES,
    cli,
    client_of,
    follow_or_detach,
    json_anywhere,
    json_option,
    timestamp,
)
from ktrdr_api.cli.follow import job_exit_code


@cli.group()
@json_anywhere
def train() -> None:
    """Training runs."""


@train.command("start")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--timeframe", type=click.Choice(TIMEFRAMES), required=True)
@click.option("--start", help="RFC 3339 (or a date: 00:00 UTC).")
@click.option("--end", help="RFC 3339 (or a date: 00:00 UTC), exclusive.")
@click.option("--model", type=click.Choice(["mlp", "lstm"]), default="mlp", show_default=True)
@click.option(
    "--label",
    type=click.Choice(["forward_return", "zigzag"]),
    default="forward_return",
    show_default=True,
)
@click.option("--epochs", type=click.IntRange(1, 10_000), default=20, show_default=True)
@click.option(
    "--device", type=click.Choice(["auto", "cuda", "mps", "cpu"]), default="auto", show_default=True
)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--detach", is_flag=True, help="Print the run and return at once.")
@json_option
@click.pass_context
def train_start(
    ctx: click.Context,
    symbols: tuple[str, ...],
    timeframe: str,
    start: str | None,
    end: str | None,
    model: str,
    label: str,
    epochs: int,
    device: str,
    seed: int,
    detach: bool,
    as_json: bool,
) -> int:
    """Train a model on SYMBOLS' stored bars (follows the run; Ctrl-C asks to cancel)."""
    body = {
        "symbols": list(symbols),
        "timeframe": timeframe,
        "start": timestamp(start),
        "end": timestamp(end),
        "model": {"kind": model},
        "label": {"kind": label},
        "epochs": epochs,
        "device": device,
        "seed": seed,
    }
    run = client_of(ctx).post("/api/v1/training/runs", {k: v for k, v in body.items() if v})
    return follow_or_detach(ctx, run, detach=detach, as_json=as_json)


@train.command("show")
@click.argument("job_id")
@json_option
@click.pass_context
def train_show(ctx: click.Context, job_id: str, as_json: bool) -> int:
    """A training run's state (the exit code says how an ended run ended)."""
    value = client_of(ctx).get(f"/api/v1/training/runs/{job_id}")
    render.print_json(value) if as_json else render.job(value)
    return job_exit_code(value)


@cli.group()
@json_anywhere
def models() -> None:
    """Trained models."""


@models.command("ls")
@json_option
@click.pass_context
def models_ls(ctx: click.Context, as_json: bool) -> int:
    """Every stored model."""
    value = client_of(ctx).get("/api/v1/models")
    if as_json:
        render.print_json(value)
    elif not value["models"]:
        render.hint(hints.no_models())
    else:
        rows = [
            (
                m["model_id"],
                ",".join(m["symbols"]),
                m["timeframe"],
                hints.when(m["created"], minute=True),
                m["device"],
            )
            for m in value["models"]
        ]
        render.table(
            None,
            ["model", "symbols", "timeframe", "created (UTC)", "device"],
            rows,
            whole=["model", "created (UTC)"],
        )
    return ExitCode.OK


@models.command("show")
@click.argument("model_id")
@json_option
@click.pass_context
def models_show(ctx: click.Context, model_id: str, as_json: bool) -> int:
    """A stored model's metadata."""
    value = client_of(ctx).get(f"/api/v1/models/{model_id}")
    render.print_json(value) if as_json else render.fields(value)
    return ExitCode.OK


@models.command("download")
@click.argument("model_id")
@click.option("--part", help="One object (weights.pt, manifest.json, ...); default: a zip of all.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def models_download(
    ctx: click.Context, model_id: str, part: str | None, output: Path | None, as_json: bool
) -> int:
    """Save a model's artifact (default: <model_id>.zip)."""
    response = client_of(ctx).call(
        "GET", f"/api/v1/models/{model_id}/download", params={"part": part}
    )
    target = output or Path(f"{model_id}-{part}" if part else f"{model_id}.zip")
    target.write_bytes(response.content)
    summary = {"model_id": model_id, "path": str(target), "bytes": len(response.content)}
    render.print_json(summary) if as_json else render.err.print(f"saved {target}")
    return ExitCode.OK
