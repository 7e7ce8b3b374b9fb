"""The wire details in the spec were verified against ib_async 2.1.0: fail loudly if that moves."""

import ib_async
import pytest
from ib_async.client import Client
from ktrdr_ib_sim.config import MIN_CLIENT_VERSION, SERVER_VERSION

pytestmark = pytest.mark.unit


def test_ib_async_is_the_verified_minor_version() -> None:
    assert ib_async.__version__.startswith("2.1"), (
        f"ib_async {ib_async.__version__} is installed; the simulator and the connector were "
        "verified against 2.1.x. Re-verify tws-simulator.md before moving the pin."
    )


def test_client_version_range_is_the_verified_one() -> None:
    assert (Client.MinClientVersion, Client.MaxClientVersion) == (157, 178), (
        "ib_async now asks for a different client version range; the message layouts in "
        "tws-simulator.md (server version 178) may no longer hold."
    )
    assert (MIN_CLIENT_VERSION, SERVER_VERSION) == (157, 178)
