"""Wait until NATS and ktrdr services answer ``$SRV.PING.<service>``.

    python infra/scripts/wait_ready.py [--timeout 60] [service ...]

With no service named it waits for the four: ib-connector, data-store,
trainer, api. NATS location and credentials come from the usual ``KTRDR_*``
settings (``KTRDR_NATS_URL``, ``KTRDR_NATS_USER`` + ``KTRDR_NATS_PASSWORD[_FILE]``,
``KTRDR_NATS_TLS_CA|CERT|KEY``),
so the same script is ``just up``'s readiness check (as admin) and a
container's health check (as the service itself, which may ping only itself).
Exits 0 when all answer, 1 naming those that did not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from ktrdr_shared.config import Settings
from ktrdr_shared.stack import SERVICES, wait_ready


def nats_settings() -> Settings:
    """Return the NATS settings of this environment, ignoring other services' variables."""
    return Settings.from_env({k: v for k, v in os.environ.items() if k.startswith("KTRDR_NATS_")})


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, wait, print one line per service; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", default=list(SERVICES))
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds in all")
    args = parser.parse_args(argv)
    result = asyncio.run(wait_ready(nats_settings(), args.services, args.timeout))
    for service in result.answered:
        print(f"{service}: up")
    for name, why in result.missing.items():
        print(f"{name}: NOT UP ({why})", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
