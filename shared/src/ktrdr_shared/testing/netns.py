"""Hosts on one machine: network namespaces on a private bridge, for multi-host tests.

``hosts(n)`` creates a bridge with the address ``10.213.<x>.1/24`` (this machine: the NATS and
object-store servers listen there) and ``n`` namespaces, each joined to the bridge by a veth
pair with the address ``10.213.<x>.<10+i>``. A namespace has its own loopback, so a process
inside it reaches this machine only through the bridge, as another host would. Everything is
removed afterwards. It needs root and iproute2; without them the test is skipped.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

__all__ = ["Netns", "hosts", "ip"]


@dataclass(frozen=True)
class Netns:
    """A network namespace: another host, reached at ``inner_ip``; this machine at ``host_ip``."""

    name: str
    host_ip: str  # this machine's address on the link (servers listen here)
    inner_ip: str  # the namespace's address

    def exec(self, *command: str) -> list[str]:
        """Return ``command`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *command]


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; return what it did."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


def _require_root() -> None:
    if shutil.which("ip") is None:
        pytest.skip("no `ip` binary (iproute2): cannot create a network namespace")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")


@contextmanager
def hosts(count: int) -> Iterator[list[Netns]]:
    """Create ``count`` namespaces on one bridge (see the module docstring); remove them after."""
    _require_root()
    used = ip("-4", "-o", "addr").stdout
    x = secrets.choice([n for n in range(256) if f"10.213.{n}." not in used])
    tag = secrets.token_hex(3)
    bridge, host_ip = f"ktb{tag}", f"10.213.{x}.1"
    made: list[tuple[str, str]] = []  # (namespace, host end)
    try:
        setup: tuple[tuple[str, ...], ...] = (
            ("link", "add", bridge, "type", "bridge"),
            ("addr", "add", f"{host_ip}/24", "dev", bridge),
            ("link", "set", bridge, "up"),
        )
        for args in setup:
            _or_skip(args)
        spaces = []
        for i in range(count):
            name, host_end, inner_end = f"ktrdr-h{i}-{tag}", f"kth{i}{tag}", f"ktn{i}{tag}"
            added = ip("netns", "add", name)
            if added.returncode != 0:
                pytest.skip(f"cannot create a network namespace: {added.stderr.strip()}")
            made.append((name, host_end))
            inner_ip = f"10.213.{x}.{10 + i}"
            steps: tuple[tuple[str, ...], ...] = (
                ("link", "add", host_end, "type", "veth", "peer", "name", inner_end),
                ("link", "set", inner_end, "netns", name),
                ("link", "set", host_end, "master", bridge),
                ("link", "set", host_end, "up"),
                ("-n", name, "addr", "add", f"{inner_ip}/24", "dev", inner_end),
                ("-n", name, "link", "set", inner_end, "up"),
                ("-n", name, "link", "set", "lo", "up"),
            )
            for step in steps:
                _or_skip(step)
            spaces.append(Netns(name=name, host_ip=host_ip, inner_ip=inner_ip))
        yield spaces
    finally:
        for name, host_end in made:
            ip("netns", "del", name)  # takes the inner end, and with it the pair, along
            ip("link", "del", host_end)  # in case the pair outlived it
        ip("link", "del", bridge)


def _or_skip(args: tuple[str, ...]) -> None:
    done = ip(*args)
    if done.returncode != 0:
        pytest.skip(f"cannot set up the hosts' network: ip {' '.join(args)}: {done.stderr}")
