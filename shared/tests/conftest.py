"""Fixtures of shared's tests: a nats-server per test and a client on it."""

from ktrdr_shared.testing.pytest_plugin import js, nats_server, nats_url, nc

__all__ = ["js", "nats_server", "nats_url", "nc"]
