"""A tiny HTTP/1.1 JSON control port on loopback, so other processes can read and steer the sim.

Routes::

    GET  /health                      {"ok": true, "port": ..., "listening": ...}
    GET  /counters                    counters and live state
    GET  /ledger[?since=SEQ]          {"counters": {...}, "records": [...]}
    POST /ledger/reset                zero counters, forget records
    POST /faults/drop                 close every client connection now
    POST /faults/restart?down_s=N     go away for N seconds (answers at once, 202)
    POST /faults/farm?state=down|up   HMDS farm down (2105, 162 no data) or back up (2106)
    POST /faults/farm?farm=F&state=S[&requests=no_data|hold]
                                      farm market|hmds|secdef to ok|up|down|inactive
    POST /faults/link?state=lost      1100 to every client, answers held, sockets stay up
    POST /faults/link?state=restored&data=lost|maintained    1101 or 1102
    POST /faults/stall?n=N            hold the next N historical requests unanswered
    POST /faults/slow?n=N&s=S         the next N historical answers S real seconds slower
    POST /clock?now=ISO-8601          move the data clock there (futures roll as it passes)

Only what the simulator needs: one request per connection, no body parsing, no keep-alive.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from ktrdr_ib_sim.server import IBGatewaySimulator

logger = logging.getLogger(__name__)

Reply = tuple[HTTPStatus, dict[str, Any]]
Route = Callable[["IBGatewaySimulator", dict[str, str]], Awaitable[Reply]]
_MAX_HEADER_BYTES = 16_384


class BadRequest(Exception):
    """A control request with a missing or malformed parameter."""


def _number(query: dict[str, str], name: str, cast: Callable[[str], Any]) -> Any:
    if name not in query:
        raise BadRequest(f"missing query parameter {name!r}")
    try:
        return cast(query[name])
    except ValueError as e:
        raise BadRequest(f"query parameter {name}={query[name]!r} is not a number") from e


async def _health(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    return HTTPStatus.OK, {"ok": True, "port": sim.port, "listening": sim.listening}


async def _counters(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    return HTTPStatus.OK, sim.counters()


async def _ledger(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    since = _number(query, "since", int) if "since" in query else 0
    return HTTPStatus.OK, {"counters": sim.counters(), "records": sim.records(since)}


async def _reset(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    sim.ledger.reset()
    return HTTPStatus.OK, {"reset": True}


async def _drop(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    return HTTPStatus.OK, {"dropped": await sim.drop_all_connections()}


async def _restart(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    down_s = _number(query, "down_s", float)
    if down_s < 0:
        raise BadRequest(f"down_s must be >= 0, got {down_s}")
    sim.begin_restart(down_s)
    return HTTPStatus.ACCEPTED, {"restarting": True, "down_s": down_s}


async def _farm(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    farm, state = query.get("farm", "hmds"), query.get("state", "")
    if state not in ("down", "up", "ok", "inactive"):
        raise BadRequest(f"state must be 'down', 'up' or 'inactive', got {state!r}")
    try:
        changed = sim.set_farm(farm, "ok" if state == "up" else state, query.get("requests"))
    except ValueError as e:
        raise BadRequest(str(e)) from e
    return HTTPStatus.OK, {
        "farm": farm,
        "state": state,
        "changed": changed,
        "farms": sim.ops.farms,
        "requests": sim.ops.hmds_outage,
    }


async def _link(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    state = query.get("state", "")
    if state == "lost":
        return HTTPStatus.OK, {"link": "lost", "changed": sim.lose_link()}
    if state != "restored":
        raise BadRequest(f"state must be 'lost' or 'restored', got {state!r}")
    data = query.get("data", "")
    if data not in ("lost", "maintained"):
        raise BadRequest(f"data must be 'lost' or 'maintained', got {data!r}")
    changed = sim.restore_link(data_lost=data == "lost")
    return HTTPStatus.OK, {"link": "restored", "data": data, "changed": changed}


async def _slow(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    count = _number(query, "n", int) if "n" in query else 1
    seconds = _number(query, "s", float)
    if count < 0 or seconds < 0:
        raise BadRequest(f"n and s must be >= 0, got n={count} s={seconds}")
    sim.slow_next(count, seconds)
    return HTTPStatus.OK, {"slow_armed": sim.counters()["slow_armed"]}


async def _stall(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    count = _number(query, "n", int) if "n" in query else 1
    if count < 0:
        raise BadRequest(f"n must be >= 0, got {count}")
    sim.stall_next_historical(count)
    return HTTPStatus.OK, {"stalls_armed": sim.counters()["stalls_armed"]}


async def _clock(sim: IBGatewaySimulator, query: dict[str, str]) -> Reply:
    text = query.get("now", "")
    try:
        instant = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise BadRequest(f"now must be an ISO-8601 instant, got {text!r}") from e
    sim.set_now(instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC))
    return HTTPStatus.OK, {"now": sim.now_s()}


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/health"): _health,
    ("GET", "/counters"): _counters,
    ("GET", "/ledger"): _ledger,
    ("POST", "/ledger/reset"): _reset,
    ("POST", "/faults/drop"): _drop,
    ("POST", "/faults/restart"): _restart,
    ("POST", "/faults/farm"): _farm,
    ("POST", "/faults/stall"): _stall,
    ("POST", "/faults/link"): _link,
    ("POST", "/faults/slow"): _slow,
    ("POST", "/clock"): _clock,
}


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str]:
    """Return (method, target) of one request and skip its headers."""
    request_line = (await reader.readline()).decode("latin-1").strip()
    consumed = len(request_line)
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        consumed += len(line)
        if consumed > _MAX_HEADER_BYTES:
            raise BadRequest("request headers too large")
    parts = request_line.split()
    if len(parts) != 3:
        raise BadRequest(f"malformed request line {request_line[:80]!r}")
    return parts[0].upper(), parts[1]


async def dispatch(sim: IBGatewaySimulator, method: str, target: str) -> Reply:
    """Route one control request and return its status and JSON body."""
    url = urlsplit(target)
    route = ROUTES.get((method, url.path))
    if route is None:
        known = sorted(f"{m} {p}" for m, p in ROUTES)
        return HTTPStatus.NOT_FOUND, {"error": f"no route {method} {url.path}", "routes": known}
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    try:
        return await route(sim, query)
    except BadRequest as e:
        return HTTPStatus.BAD_REQUEST, {"error": str(e)}


class ControlServer:
    """Serves the control routes for one simulator."""

    def __init__(self, sim: IBGatewaySimulator) -> None:
        self._sim = sim
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 picks a free one, readable from ``self.port``)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target = await _read_head(reader)
            status, body = await dispatch(self._sim, method, target)
        except BadRequest as e:
            status, body = HTTPStatus.BAD_REQUEST, {"error": str(e)}
        except (ConnectionError, asyncio.IncompleteReadError) as e:
            logger.debug("control client left: %s", e)
            writer.close()
            return
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        try:
            await writer.drain()
        except ConnectionError as e:
            logger.debug("control client left before the answer: %s", e)
        writer.close()
