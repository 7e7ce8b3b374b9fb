"""Declare ktrdr's JetStream streams, consumers and buckets: the NATS admin's step.

    python -m ktrdr_shared.declare           # create what is missing, put back what drifted
    python -m ktrdr_shared.declare --check   # only report the differences (exit 1 if any)

It connects with the usual ``KTRDR_NATS_*`` settings, which must name a user
allowed to manage streams (``admin`` in ``infra/nats/auth.conf``); ``just up
--secure`` and the deploy files run it before the services start, and a
service that finds something missing or drifted names this command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import nats.errors

from ktrdr_shared import streams
from ktrdr_shared.config import Settings
from ktrdr_shared.errors import ConfigError
from ktrdr_shared.runtime import connect


async def declare(settings: Settings, *, check: bool, timeout_s: float = 10.0) -> int:
    """Declare (or with ``check`` only verify) everything; print what differed.

    Returns:
        the exit status: 0 when the server is as declared at the end, 1 otherwise.
    """
    async with asyncio.timeout(timeout_s):
        nc = await connect(
            settings,
            name="ktrdr-declare",
            max_reconnect_attempts=0,
            allow_reconnect=False,
            connect_timeout=timeout_s,
        )
    try:
        js = nc.jetstream(timeout=timeout_s)
        before = await streams.verify(js, streams.CONSUMERS, buckets=True)
        for problem in before:
            print(f"{'differs' if check else 'fixing'}: {problem}")
        if check:
            return 1 if before else 0
        await streams.ensure_all(js)
        after = await streams.verify(js, streams.CONSUMERS, buckets=True)
        for problem in after:
            print(f"still differs: {problem}", file=sys.stderr)
        if not after:
            print(
                f"declared: {len(streams.STREAMS)} streams, {len(streams.CONSUMERS)} "
                f"consumers, 2 buckets ({len(before)} fixed)"
            )
        return 1 if after else 0
    finally:
        await nc.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m ktrdr_shared.declare [--check]``."""
    parser = argparse.ArgumentParser(
        prog="python -m ktrdr_shared.declare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        return asyncio.run(declare(settings, check=args.check))
    except ConfigError as e:
        print(f"declare: configuration error: {e.message}", file=sys.stderr)
        return 2
    except (nats.errors.Error, OSError, TimeoutError) as e:
        # No server answers within the timeout, or a user without the right gets a
        # permissions violation and then a timeout.
        print(f"declare: failed: {e!r} (is NATS up, and is this its admin user?)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
