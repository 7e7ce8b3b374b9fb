"""IB's error answers on the wire: codes, the request they name, and the ledger's count."""

from __future__ import annotations

import pytest
from ktrdr_ib_sim.rawclient import error_code, historical_request

pytestmark = pytest.mark.integration

END = "20240628 16:00:00 US/Eastern"


def is_answer_to(req_id: int):
    """Match the message that ends a historical request: bars (17) or an error for it."""
    return lambda m: (m[0] == "17" and m[1] == str(req_id)) or (m[0] == "4" and m[2] == str(req_id))


@pytest.mark.parametrize(
    ("overrides", "code", "text"),
    [
        ({"duration": "1 X"}, 321, "integer{SPACE}unit"),
        ({"duration": ""}, 321, "duration not specified"),
        ({"duration": "400 D"}, 321, "365 days must be made in years"),
        ({"duration": "90000 S"}, 321, "greater than 86400 seconds"),
        ({"bar_size": "1 sec"}, 321, "bar size setting is invalid"),
        ({"format_date": 3}, 321, "Date formatting selection of 3 rejected."),
        ({"what_to_show": "PRICE"}, 321, "whatToShow is invalid"),
        ({"end": "2024-06-28 16:00"}, 10314, "End Date/Time"),
        ({"end": "20240628 16:00:00 Nowhere/City"}, 10314, "End Date/Time"),
        ({"bar_size": "1 secs", "duration": "1 D"}, 162, "Time length exceed max."),
        ({"bar_size": "5 secs", "duration": "2 D"}, 162, "Time length exceed max."),
        ({"keep_up_to_date": True}, 321, "End date not supported with live updates"),
        ({"symbol": "NOPE"}, 200, "No security definition"),
        ({"symbol": "EUR", "sec_type": "CASH", "exchange": "IDEALPRO"}, 162,
         "No historical market data for EUR/CASH@FXSUBPIP Last 60"),
        ({"end": "20000101 12:00:00 UTC", "what_to_show": "BID"}, 162,
         "HMDS query returned no data"),
        ({"end": "20231201 12:00:00 UTC", "bar_size": "5 secs", "duration": "3600 S"}, 162,
         "HMDS query returned no data"),  # bars of 30 secs or less are kept six months
    ],
)  # fmt: skip
async def test_bad_requests_get_ibs_code(sim, connect_raw, overrides, code, text) -> None:
    client = await connect_raw(sim.port)
    fields = {
        "symbol": "AAPL",
        "end": END,
        "bar_size": "1 min",
        "duration": "1 D",
        "format_date": 1,
        **overrides,
    }
    client.send(*historical_request(5, **fields))
    answer = await client.recv_until(is_answer_to(5))
    assert (error_code(answer), text in answer[4]) == (code, True), answer
    counters = await sim.wait_until(lambda c: c["errors_by_code"].get(str(code)) == 1)
    assert counters["open_requests"] == 0


async def test_end_time_without_zone_warns_2174_and_answers(sim, connect_raw) -> None:
    client = await connect_raw(sim.port)
    client.send(
        *historical_request(
            5, "AAPL", end="20240628 16:00:00", bar_size="1 hour", duration="1 D", use_rth=True
        )
    )
    warning = await client.recv_until(lambda m: m[0] == "4")
    bars = await client.recv_until(lambda m: m[0] == "17")
    assert error_code(warning) == 2174
    assert bars[4] == "7"  # 09:30, 10:00 ... 15:00 in the login zone (US/Eastern)


async def test_empty_answer_can_be_an_empty_message(start_sim, connect_raw) -> None:
    sim = await start_sim(empty_as_error=False)
    client = await connect_raw(sim.port)
    client.send(
        *historical_request(
            5, "AAPL", end="20240706 12:00:00 UTC", duration="86400 S", bar_size="1 hour"
        )
    )  # fmt: skip  (a Saturday)
    answer = await client.recv_until(is_answer_to(5))
    assert answer[0] == "17" and answer[4] == "0"


async def test_cancel_of_a_running_query_gets_162_and_of_an_unknown_one_366(
    sim, connect_raw
) -> None:
    client = await connect_raw(sim.port)
    sim.stall_next_historical(1)
    client.send(*historical_request(5, "AAPL", end=END, bar_size="1 hour", duration="1 D"))
    await sim.wait_until(lambda c: c["open_requests"] == 1)
    client.send(25, 1, 5)
    cancelled = await client.recv_until(lambda m: m[0] == "4")
    client.send(25, 1, 5)
    unknown = await client.recv_until(lambda m: m[0] == "4")
    assert (error_code(cancelled), cancelled[4].endswith("query cancelled: 5")) == (162, True)
    assert error_code(unknown) == 366
    [record] = sim.records()
    assert (record["outcome"], record["stalled"]) == ("cancelled", True)


async def test_the_51st_open_request_gets_322(start_sim, connect_raw) -> None:
    sim = await start_sim(soft_delay_ms=0)  # 52 requests for one series would be slowed down
    client = await connect_raw(sim.port)
    sim.stall_next_historical(50)
    for req_id in range(1, 52):
        client.send(
            *historical_request(req_id, "AAPL", end=END, bar_size="1 hour", duration=f"{req_id} D")
        )
    refused = await client.recv_until(lambda m: m[0] == "4")
    assert (error_code(refused), refused[2]) == (322, "51")
    assert "Only 50 simultaneous" in refused[4]
    assert sim.counters()["open_requests"] == 50
    client.send(25, 1, 1)  # one slot frees up ...
    await client.recv_until(lambda m: m[0] == "4")
    client.send(*historical_request(52, "AAPL", end=END, bar_size="1 hour", duration="1 W"))
    answer = await client.recv_until(is_answer_to(52))
    assert answer[0] == "17"  # ... and the next request is served


async def test_a_reused_open_request_id_gets_322(sim, connect_raw) -> None:
    client = await connect_raw(sim.port)
    sim.stall_next_historical(1)
    client.send(*historical_request(5, "AAPL", end=END, bar_size="1 hour", duration="1 D"))
    client.send(*historical_request(5, "MSFT", end=END, bar_size="1 hour", duration="1 D"))
    refused = await client.recv_until(lambda m: m[0] == "4")
    assert error_code(refused) == 322 and "Duplicate ticker ID" in refused[4]


async def test_keep_up_to_date_streams_updates_until_cancelled(start_sim, connect_raw) -> None:
    sim = await start_sim(time_scale=0.01)  # one update every 50 ms
    client = await connect_raw(sim.port)
    client.send(
        *historical_request(5, "AAPL", bar_size="1 min", duration="3600 S", keep_up_to_date=True)
    )
    first = await client.recv_until(lambda m: m[0] == "17")
    update = await client.recv_until(lambda m: m[0] == "90")
    last_bar_date = first[5 + (int(first[4]) - 1) * 8]
    assert (update[1], update[3]) == ("5", last_bar_date)
    assert sim.counters()["open_requests"] == 1  # a live subscription stays open
    client.send(25, 1, 5)
    await client.recv_until(lambda m: m[0] == "4" and m[3] == "162")
    assert (await sim.wait_until(lambda c: c["open_requests"] == 0))["open_requests"] == 0
