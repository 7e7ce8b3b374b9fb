"""Test helpers: a real nats-server per test, as a pytest plugin.

Enable with ``pytest_plugins = ["ktrdr_shared.testing.pytest_plugin"]``.
"""
