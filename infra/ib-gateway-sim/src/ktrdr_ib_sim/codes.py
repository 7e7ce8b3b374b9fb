"""IB error codes and the texts the real gateway sends with them (spec 4.5 and 5.6)."""

from __future__ import annotations

from dataclasses import dataclass

HMDS = "Historical Market Data Service error message:"
_VALIDATION = "Error validating request.-'bM' : cause - "
_PROCESSING = "Error processing request:-'bS' : cause - "

WHAT_TO_SHOW_LABELS = {
    "TRADES": "Trades",
    "MIDPOINT": "Midpoint",
    "BID": "Bid",
    "ASK": "Ask",
    "BID_ASK": "BidAsk",
}


@dataclass
class IBError(Exception):
    """An error message the gateway sends: ``[4, 2, reqId, code, text, ""]``.

    Not frozen: the interpreter sets ``__traceback__`` on exceptions it raises.
    """

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code}: {self.text}"


def validation(cause: str) -> IBError:
    """Return a 321: the gateway refused the request's parameters."""
    return IBError(321, _VALIDATION + cause)


def hmds(detail: str) -> IBError:
    """Return a 162 from the historical data farm."""
    return IBError(162, HMDS + detail)


def no_data(symbol: str, exchange: str, what_to_show: str) -> IBError:
    """Return the 162 IB sends for a query with no bars (also while the HMDS farm is down)."""
    label = WHAT_TO_SHOW_LABELS.get(what_to_show, what_to_show)
    return hmds(f"HMDS query returned no data: {symbol}@{exchange} {label}")


#: IB's internal name of the exchange that serves a contract's history, where it differs.
_HMDS_EXCHANGES = {"IDEALPRO": "FXSUBPIP"}
#: How HMDS names a whatToShow in "No historical market data for ..." (TRADES is "Last").
_HMDS_TICK_TYPES = {
    "TRADES": "Last",
    "MIDPOINT": "Midpoint",
    "BID": "Bid",
    "ASK": "Ask",
    "BID_ASK": "BidAsk",
}


def no_market_data(
    symbol: str, sec_type: str, exchange: str, what_to_show: str, bar_label: str
) -> IBError:
    """Return the 162 for a whatToShow a contract has no history of (forex TRADES).

    Real text: ``No historical market data for EUR/CASH@FXSUBPIP Last 1d`` (daily bars) and
    ``... CHF/CASH@FXSUBPIP Last 300`` (5-minute bars: the bar in seconds).
    """
    where = _HMDS_EXCHANGES.get(exchange, exchange)
    tick = _HMDS_TICK_TYPES.get(what_to_show, what_to_show)
    return hmds(f"No historical market data for {symbol}/{sec_type}@{where} {tick} {bar_label}")


PACING_VIOLATION = hmds("Historical data request pacing violation")
TIME_LENGTH_EXCEEDED = hmds("Time length exceed max.")
NO_HEAD_TIMESTAMP = hmds("No head time stamp")
NO_SECURITY_DEFINITION = IBError(200, "No security definition has been found for the request")
TOO_MANY_OPEN = IBError(
    322, _PROCESSING + "Only 50 simultaneous API historical data requests allowed."
)
DUPLICATE_TICKER = IBError(322, _PROCESSING + "Duplicate ticker ID for API historical data query")
CLIENT_ID_IN_USE = IBError(
    326, "Unable to connect as the client id is already in use. Retry with a unique client id."
)
READ_ERROR = IBError(320, "Server error when reading an API client request.")
BAD_END_DATE = IBError(
    10314,
    "End Date/Time: The date, time, or time-zone entered is invalid. The correct format is "
    "yyyymmdd hh:mm:ss xx/xxxx where yyyymmdd and xx/xxxx are optional. E.g.: 20031126 "
    "15:59:00 US/Eastern  Note that there is a space between the date and time, and between "
    "the time and time-zone.  If no date is specified, current date is assumed. If no "
    "time-zone is specified, local time-zone is assumed(deprecated).  You can also provide "
    "yyyymmddd-hh:mm:ss time is in UTC. Note that there is a dash between the date and time "
    "in UTC notation.",
)
IMPLIED_TIME_ZONE = IBError(
    2174,
    "Warning: You submitted request with date-time attributes without explicit time zone. "
    "Please switch to use yyyymmdd-hh:mm:ss in UTC or use instrument time zone, like "
    "US/Eastern. Implied time zone functionality will be removed in the next API release",
)


def cancelled(req_id: int) -> IBError:
    """Return the 162 that confirms a cancelled historical query."""
    return hmds(f"API historical data query cancelled: {req_id}")


def unknown_query(req_id: int) -> IBError:
    """Return the 366 for a cancel of a request that is not running."""
    return IBError(366, f"No historical data query found for ticker id:{req_id}")


#: Farm notices: (farm, state) -> the notice a real gateway sends. Farm names are those of a US
#: paper login (usfarm, ushmds, secdefnj), as printed in ib_insync/ib_async connect logs.
FARM_NOTICES: dict[tuple[str, str], IBError] = {
    ("market", "ok"): IBError(2104, "Market data farm connection is OK:usfarm"),
    ("market", "down"): IBError(2103, "Market data farm connection is broken:usfarm"),
    ("market", "inactive"): IBError(
        2108, "Market data farm connection is inactive but should be available upon demand.usfarm"
    ),
    ("hmds", "ok"): IBError(2106, "HMDS data farm connection is OK:ushmds"),
    ("hmds", "down"): IBError(2105, "HMDS data farm connection is broken:ushmds"),
    ("hmds", "inactive"): IBError(
        2107, "HMDS data farm connection is inactive but should be available upon demand.ushmds"
    ),
    ("secdef", "ok"): IBError(2158, "Sec-def data farm connection is OK:secdefnj"),
    ("secdef", "down"): IBError(2157, "Sec-def data farm connection is broken:secdefnj"),
}
MARKET_FARM_OK = FARM_NOTICES["market", "ok"]
HMDS_FARM_OK = FARM_NOTICES["hmds", "ok"]
HMDS_FARM_BROKEN = FARM_NOTICES["hmds", "down"]
SECDEF_FARM_OK = FARM_NOTICES["secdef", "ok"]

# Connectivity between the gateway and IB's servers, with the socket to the client still up.
LINK_LOST = IBError(1100, "Connectivity between IB and Trader Workstation has been lost.")
LINK_RESTORED_DATA_LOST = IBError(
    1101, "Connectivity between IB and TWS has been restored- data lost."
)
LINK_RESTORED_DATA_MAINTAINED = IBError(
    1102, "Connectivity between IB and TWS has been restored- data maintained."
)


#: Not an IB code: the simulator's own notice, sent after the farm notices at connect, saying
#: what it is and which symbols it serves, so a client can name them when a symbol is unknown
#: (the ib-connector does). 2199 sits in IB's informational band (ib_async logs it as a
#: warning, not an error) and is not among the codes IB documents.
SIMULATOR_NOTICE_CODE = 2199
SIMULATOR_MARKER = "ktrdr IB Gateway simulator; it serves:"


def simulator_notice(symbols: list[str]) -> IBError:
    """Return the notice that names the simulator and the symbols it serves."""
    return IBError(SIMULATOR_NOTICE_CODE, f"{SIMULATOR_MARKER} {', '.join(symbols)}")
