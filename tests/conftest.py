"""Fixtures of the cross-service tests (contract, deploy, docs, faults, security, system).

A nats-server and clients, the simulator, a connector and data-stores, from
``ktrdr_data_store.testing`` (which passes on ``ktrdr_ib_connector.testing``'s).
"""

from ktrdr_data_store.testing import *  # noqa: F403 - the plugin's fixtures
