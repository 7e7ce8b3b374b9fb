"""Farm notices, link codes and sleep/wake detection (pure parts, clocks injected)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from ktrdr_ib_connector.client import ConnectionOptions, IbConnection, SleepWatch
from ktrdr_ib_connector.farms import Farms, farm_name
from ktrdr_shared.messages import IbLinkLost, IbLinkRestored
from ktrdr_shared.messages.base import Event

pytestmark = pytest.mark.unit

# The texts a real gateway sends (tws-simulator.md §2.1 and §5.6).
MARKET_OK = (2104, "Market data farm connection is OK:usfarm")
HMDS_OK = (2106, "HMDS data farm connection is OK:ushmds")
HMDS_BROKEN = (2105, "HMDS data farm connection is broken:ushmds")
HMDS_INACTIVE = (
    2107,
    "HMDS data farm connection is inactive but should be available upon demand.ushmds",
)
SECDEF_OK = (2158, "Sec-def data farm connection is OK:secdefnj")


@pytest.mark.parametrize(
    ("notice", "name"),
    [(MARKET_OK, "usfarm"), (HMDS_OK, "ushmds"), (HMDS_INACTIVE, "ushmds"),
     (SECDEF_OK, "secdefnj"), ((2105, "HMDS data farm connection is broken"), "hmds")],
)  # fmt: skip
def test_farm_name_is_read_from_the_notice(notice: tuple[int, str], name: str) -> None:
    assert farm_name(*notice) == name


def test_inactive_on_demand_is_not_an_outage_but_broken_is() -> None:
    farms = Farms()
    for notice in (MARKET_OK, HMDS_INACTIVE, SECDEF_OK):
        assert farms.note(*notice)
    assert farms.states == {"usfarm": "ok", "ushmds": "inactive", "secdefnj": "ok"}
    assert farms.hmds_ok
    farms.note(*HMDS_BROKEN)
    farms.note(*HMDS_BROKEN)  # repeated: one outage
    assert not farms.hmds_ok
    assert farms.broken() == ["ushmds"]
    assert farms.hmds_outages == 1
    farms.note(*HMDS_OK)
    assert farms.hmds_ok
    assert farms.broken() == []
    assert not farms.note(162, "not a farm notice")


def test_a_farm_is_in_its_state_since_the_notice_that_changed_it() -> None:
    farms = Farms()
    t0, t1, t2 = (datetime(2024, 6, 3, 9, m, tzinfo=UTC) for m in (0, 1, 2))
    farms.note(*HMDS_OK, t0)
    farms.note(*HMDS_OK, t1)  # IB repeats "is OK": the farm was OK since t0
    assert farms.since == {"ushmds": t0}
    farms.note(*HMDS_BROKEN, t2)
    assert farms.since == {"ushmds": t2}
    farms.reset()  # a new connection reports afresh
    assert farms.since == {}


class Clocks:
    """A wall clock and a monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_700_000_000.0, 100.0

    def tick(self, seconds: float, *, slept: bool = False) -> None:
        self.wall += seconds
        if not slept:  # asleep, the monotonic clock stands still
            self.mono += seconds


def test_sleep_watch_sees_a_wall_clock_jump_and_nothing_else() -> None:
    clocks = Clocks()
    watch = SleepWatch(lambda: clocks.wall, lambda: clocks.mono, threshold_s=5.0)
    clocks.tick(1.0)
    assert watch.jump() is None
    clocks.tick(4.0, slept=True)  # under the threshold
    assert watch.jump() is None
    clocks.tick(600.0, slept=True)  # a laptop lid closed for ten minutes
    assert watch.jump() == pytest.approx(600.0)
    clocks.tick(1.0)
    assert watch.jump() is None  # measured from the last look, not from the start
    clocks.wall -= 3600.0  # the wall clock set back an hour
    assert watch.jump() == pytest.approx(-3600.0)


async def test_link_codes_make_the_connection_not_ready_and_publish_events() -> None:
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    clocks = Clocks()
    connection = IbConnection(
        ConnectionOptions(), publish, wall=lambda: clocks.wall, mono=lambda: clocks.mono
    )
    connection.ready.set()  # as after a connect
    wrapper = connection.ib.wrapper
    data_lost = connection.data_lost
    wrapper.error(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.", "")
    assert not connection.ready.is_set()
    assert not connection.state.link_ok
    assert "1100" in connection.problem
    wrapper.error(
        -1,
        1101,
        "Connectivity between IB and Trader Workstation has been restored - data lost.",
        "",
    )
    assert data_lost.is_set()  # requests in flight learn that IB dropped them
    assert not connection.data_lost.is_set()  # and the next ones get a fresh signal
    assert connection.state.link_ok
    assert connection.state.last_error is None  # the condition ended: no stale error
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [type(e) for e in published] == [IbLinkLost, IbLinkRestored]
    restored = published[1]
    assert isinstance(restored, IbLinkRestored)
    assert restored.data_lost
