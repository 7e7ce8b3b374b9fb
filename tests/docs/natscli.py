"""A stand-in for the `nats` CLI commands the README's tour types, for tests only.

The real `nats` CLI (github.com/nats-io/natscli, a Go binary) cannot be
installed from the package registries this project's machines reach, so the
README test puts this script on ``PATH`` as ``nats`` and runs the README's
lines exactly as written. It implements only what the tour uses, with the
real CLI's argument shapes and (close to) its output:

    nats pub SUBJECT BODY        publish once
    nats sub SUBJECT             print each message until interrupted
    nats req SUBJECT BODY        one request; print the reply
    nats micro ls                list the nats.micro services ($SRV.PING)

The server comes from ``NATS_URL`` (as for the real CLI). A bad command line
exits 2 with a usage line; a request with no responder exits 1.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import nats
import nats.errors

USAGE = "usage: nats pub SUBJECT BODY | sub SUBJECT | req SUBJECT BODY | micro ls"


async def main(argv: list[str]) -> int:
    """Run one command; return the exit status."""
    url = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    match argv:
        case ["pub", subject, body]:
            nc = await nats.connect(url)
            await nc.publish(subject, body.encode())
            await nc.flush()
            print(f'Published {len(body)} bytes to "{subject}"')
        case ["sub", subject]:
            nc = await nats.connect(url)
            print(f"Subscribing on {subject}", flush=True)
            sub = await nc.subscribe(subject)
            async for msg in sub.messages:
                print(
                    f'[#] Received on "{msg.subject}"\n{msg.data.decode(errors="replace")}\n',
                    flush=True,
                )
        case ["req", subject, body]:
            nc = await nats.connect(url)
            try:
                reply = await nc.request(subject, body.encode(), timeout=5)
            except nats.errors.NoRespondersError:
                print(f"nats: error: no responders are available for {subject}", file=sys.stderr)
                return 1
            print(reply.data.decode(errors="replace"))
        case ["micro", "ls"]:
            nc = await nats.connect(url)
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish("$SRV.PING", b"", reply=inbox)
            found = []
            try:
                while True:
                    msg = await sub.next_msg(timeout=0.5)
                    found.append(json.loads(msg.data))
            except nats.errors.TimeoutError:
                pass
            print(f"{'Name':<16} {'Version':<10} ID")
            for service in sorted(found, key=lambda s: s["name"]):
                print(f"{service['name']:<16} {service['version']:<10} {service['id']}")
        case _:
            print(USAGE, file=sys.stderr)
            return 2
    await nc.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
