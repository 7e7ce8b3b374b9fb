"""Fixtures for load tests: a nats-server, the simulator, a connector, data-stores on a temp dir.

They come from ``ktrdr_data_store.testing`` (which passes on ``ktrdr_ib_connector.testing``'s).
"""

from ktrdr_data_store.testing import *  # noqa: F403 - the plugin's fixtures
