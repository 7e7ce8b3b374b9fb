"""Command line: ``python -m ktrdr_ib_sim --port 4002`` (or the ``ktrdr-ib-sim`` script)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import signal
from collections.abc import Sequence

from ktrdr_ib_sim.config import SimulatorConfig
from ktrdr_ib_sim.server import IBGatewaySimulator

logger = logging.getLogger("ktrdr_ib_sim")


def _utc_instant(text: str) -> dt.datetime:
    """Parse an ISO-8601 instant for ``--now``; a naive one is taken as UTC."""
    try:
        instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--now wants an ISO-8601 instant, got {text!r}") from e
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (one flag per ``SimulatorConfig`` field people change)."""
    p = argparse.ArgumentParser(
        prog="ktrdr-ib-sim",
        description="Offline IB Gateway/TWS simulator speaking the real TWS socket protocol.",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    p.add_argument("--port", type=int, default=4002, help="TWS API port (0: any free port)")
    p.add_argument(
        "--control-port",
        type=int,
        default=None,
        help="HTTP control port on --host (0: any free port; default: none)",
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply every IB window and delay by this (0.01: 10 min -> 6 s)",
    )
    p.add_argument("--latency-ms", type=float, default=300.0, help="base answer delay (IB ms)")
    p.add_argument("--per-bar-us", type=float, default=1500.0, help="extra delay per bar (IB us)")
    p.add_argument(
        "--slow-fraction", type=float, default=0.02, help="share of answers drawn to be slow"
    )
    p.add_argument("--slow-ms", type=float, default=30_000.0, help="extra delay of a slow answer")
    p.add_argument(
        "--hmds-at-connect",
        choices=("ok", "inactive"),
        default="ok",
        help="HMDS farm at start: ok (2106) or inactive (2107, woken by the first request)",
    )
    p.add_argument(
        "--futures-listing",
        choices=("front", "live"),
        default="live",
        help="ES: every live quarter (live) or only the front month (front)",
    )
    p.add_argument(
        "--daily-reset",
        choices=("north_america", "europe", "asia"),
        default=None,
        help="play this region's daily reset windows on the time-scaled clock (default: none)",
    )
    p.add_argument(
        "--reset-outage-s", type=float, default=180.0, help="link down per reset (IB seconds)"
    )
    p.add_argument(
        "--reset-data",
        choices=("lost", "maintained"),
        default="lost",
        help="a scheduled reset ends with 1101 (lost) or 1102 (maintained)",
    )
    p.add_argument(
        "--soft-delay-ms",
        type=float,
        default=1000.0,
        help="delay for 1 min+ bar requests that break a pacing rule",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the deterministic prices")
    p.add_argument(
        "--bar-tz",
        default="instrument",
        help="zone of intraday formatDate=1 dates: instrument, utc, or an IANA name",
    )
    p.add_argument(
        "--login-tz",
        default="US/Eastern",
        help="zone assumed for end times given without one (warning 2174)",
    )
    p.add_argument("--accounts", default="DU1234567", help="comma-separated managed accounts")
    p.add_argument(
        "--max-bars",
        type=int,
        default=200_000,
        help="most bars per request before 162 'Time length exceed max.'",
    )
    p.add_argument(
        "--empty-as-data",
        action="store_true",
        help="answer empty results with an empty historicalData, not 162 no data",
    )
    p.add_argument(
        "--now",
        type=_utc_instant,
        default=None,
        help="freeze the data clock at this ISO-8601 instant (default: wall clock)",
    )
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ...")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Turn parsed arguments into a simulator configuration."""
    return SimulatorConfig(
        host=args.host,
        port=args.port,
        control_port=args.control_port,
        time_scale=args.time_scale,
        latency_ms=args.latency_ms,
        per_bar_us=args.per_bar_us,
        slow_fraction=args.slow_fraction,
        slow_ms=args.slow_ms,
        hmds_at_connect=args.hmds_at_connect,
        futures_listing=args.futures_listing,
        daily_reset=args.daily_reset,
        reset_outage_s=args.reset_outage_s,
        reset_data_lost=args.reset_data == "lost",
        soft_delay_ms=args.soft_delay_ms,
        seed=args.seed,
        bar_tz=args.bar_tz,
        login_tz=args.login_tz,
        accounts=tuple(a for a in args.accounts.split(",") if a),
        max_bars=args.max_bars,
        empty_as_error=not args.empty_as_data,
        now_utc=args.now,
    )


async def serve(config: SimulatorConfig) -> None:
    """Run a simulator until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with IBGatewaySimulator(config) as sim:
        control = ""
        if sim.control_port:
            control = f", control on http://{config.host}:{sim.control_port}"
        # One machine-readable line so scripts that start us with port 0 can find the ports.
        print(f"ktrdr-ib-sim listening on {config.host}:{sim.port}{control}", flush=True)
        await stop.wait()
        logger.info("stopping")


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, configure logging and serve."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as e:
        raise SystemExit(f"ktrdr-ib-sim: {e}") from e
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
