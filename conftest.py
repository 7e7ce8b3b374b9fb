"""Root conftest: settings for every test directory; no fixtures.

Fixtures are opt-in per test directory: each ``tests/conftest.py`` imports the ones it uses
from the packages' plugin modules (pytest honours ``pytest_plugins`` only here, and a plugin
listed here would load into every package's tests, with everything it imports):

* ``ktrdr_shared.testing.pytest_plugin`` - ``nats_server``, ``nats_url``, ``nc``, ``js``;
* ``ktrdr_ib_sim.pytest_plugin`` - ``sim_defaults``, ``start_sim``, ``sim``;
* ``ktrdr_ib_connector.testing`` - the services' ``sim_defaults`` and ``connector``;
* ``ktrdr_data_store.testing`` - ``data_dir`` and ``start_store``.

Each package's ``testing`` extra installs what its fixtures and tests import.
"""

from hypothesis import settings

# CI machines are small and shared: a property test's example may be slow
# without being wrong, so hypothesis must not fail on time.
settings.register_profile("ktrdr", deadline=None)
settings.load_profile("ktrdr")
