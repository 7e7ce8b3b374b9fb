"""ktrdr's offline IB Gateway/TWS simulator: the real socket protocol, IB's rules, faults on demand.

Public API:

* :class:`IBGatewaySimulator` and :class:`SimulatorConfig`: run a gateway in-process;
* :func:`expected_bars` and :func:`generate_bars`: the exact bars it serves (ground truth);
* :func:`build_catalogue` / :func:`find_instrument`: the contracts it knows;
* :class:`RawTwsClient`: a bare wire client that bypasses ib_async's own throttling.
"""

from ktrdr_ib_sim.catalogue import Instrument, build_catalogue
from ktrdr_ib_sim.config import SimulatorConfig
from ktrdr_ib_sim.rawclient import RawTwsClient
from ktrdr_ib_sim.series import Bars, expected_bars, find_instrument, generate_bars
from ktrdr_ib_sim.server import IBGatewaySimulator

__all__ = [
    "Bars",
    "IBGatewaySimulator",
    "Instrument",
    "RawTwsClient",
    "SimulatorConfig",
    "build_catalogue",
    "expected_bars",
    "find_instrument",
    "generate_bars",
]
