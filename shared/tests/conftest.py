"""Fixtures of shared's tests: a nats-server per test and a client on it."""

from ktrdr_shared.testing.pytest_plugin import *  # noqa: F403 - the plugin's fixtures
