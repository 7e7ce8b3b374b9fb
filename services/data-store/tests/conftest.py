"""Fixtures for load tests: the simulator, a connector, and data-stores on a temporary dir.

``nats_url``/``nc``/``js`` come from ``ktrdr_shared.testing.pytest_plugin``, ``sim``/``start_sim``
from ``ktrdr_ib_sim.pytest_plugin``, ``connector`` and the services' ``sim_defaults`` from
``ktrdr_ib_connector.testing``, ``data_dir``/``start_store`` from ``ktrdr_data_store.testing``.
"""

from ktrdr_data_store.testing import data_dir, start_store
from ktrdr_ib_connector.testing import connector, sim_defaults
from ktrdr_ib_sim.pytest_plugin import sim, start_sim
from ktrdr_shared.testing.pytest_plugin import js, nats_server, nats_url, nc

__all__ = [
    "connector",
    "data_dir",
    "js",
    "nats_server",
    "nats_url",
    "nc",
    "sim",
    "sim_defaults",
    "start_sim",
    "start_store",
]
