"""Root conftest: every test directory in the repo shares ktrdr's fixtures."""

from hypothesis import settings

# nats_server/nats_url/nc/js, and the simulator with a connector on it (sim/connector).
pytest_plugins = ["ktrdr_shared.testing.pytest_plugin", "ktrdr_ib_connector.testing"]

# CI machines are small and shared: a property test's example may be slow
# without being wrong, so hypothesis must not fail on time.
settings.register_profile("ktrdr", deadline=None)
settings.load_profile("ktrdr")
