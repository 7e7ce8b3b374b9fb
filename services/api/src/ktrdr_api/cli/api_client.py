"""The CLI's HTTP side: one ``httpx`` client, problem bodies turned into exit codes.

The CLI talks only to the REST API (never to NATS), with the base URL and key
from flags or ``KTRDR_API_URL`` / ``KTRDR_API_KEY``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ExitCode:
    """How a ``ktrdr`` command ended (documented in the README)."""

    OK = 0
    JOB_FAILED = 1  # a followed or shown job failed (6 and 7 too: followed or shown)
    USAGE = 2
    REFUSED = 3  # the API answered 4xx: invalid input, unknown symbol/job/model, conflict
    UNAVAILABLE = 4  # the API, NATS or a service is unreachable or too slow (5xx)
    UNAUTHORIZED = 5  # missing or wrong API key (401)
    JOB_CANCELLED = 6
    JOB_PARTIAL = 7  # completed, but some segments could not be fetched
    DEGRADED = 8  # ``status``, ``ib status``: all answers, but something is degraded (IB, a farm)
    INTERRUPTED = 130  # Ctrl-C twice: stopped following before the job ended


class CliError(Exception):
    """A failure the CLI reports in one line and an exit code."""

    def __init__(self, message: str, exit_code: int, problem: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.problem = problem


@dataclass(frozen=True)
class SseEvent:
    """One server-sent event: its id (log sequence), type and JSON data."""

    id: int | None
    event: str
    data: dict[str, Any]


class ApiClient:
    """A synchronous client of the ktrdr REST API."""

    def __init__(self, base_url: str, api_key: str | None, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"User-Agent": "ktrdr-cli"}
        if api_key:
            headers["X-API-Key"] = api_key
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON resource."""
        return self.call("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        """POST a JSON body; return the JSON answer."""
        return self.call("POST", path, json=body, params=params).json()

    def call(
        self, method: str, path: str, *, accept: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """Send a request; raise ``CliError`` for an error answer or no answer."""
        if "params" in kwargs:
            kwargs["params"] = {k: v for k, v in kwargs["params"].items() if v is not None}
        headers = {"Accept": accept} if accept else None
        try:
            response = self.http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as e:
            raise self.unreachable(e) from e
        if response.status_code >= 400:
            raise failure(response)
        return response

    def events(self, path: str, last_event_id: int | None = None) -> Iterator[SseEvent]:
        """Yield the server-sent events of ``path`` until the server ends the stream."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(self.http.timeout.connect, read=90.0)  # heartbeats every 15 s
        try:
            with self.http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise failure(response)
                yield from parse_sse(response.iter_lines())
        except httpx.TransportError as e:
            raise self.unreachable(e) from e

    def unreachable(self, error: Exception) -> CliError:
        """Return the error for an API that does not answer."""
        return CliError(
            f"cannot reach the ktrdr API at {self.base_url} ({error}); is it running "
            "(python -m ktrdr_api)? Set --url or KTRDR_API_URL",
            ExitCode.UNAVAILABLE,
        )


def failure(response: httpx.Response) -> CliError:
    """Return the ``CliError`` of an error answer (problem+json when the API sent one)."""
    try:
        problem = response.json()
    except ValueError:
        problem = {"detail": response.text.strip() or response.reason_phrase}
    if not isinstance(problem, dict):
        problem = {"detail": str(problem)}
    status = response.status_code
    code = (
        ExitCode.UNAUTHORIZED
        if status == 401
        else ExitCode.UNAVAILABLE
        if status >= 500
        else ExitCode.REFUSED
    )
    return CliError(f"{status} {problem.get('detail', response.reason_phrase)}", code, problem)


def parse_sse(lines: Iterator[str]) -> Iterator[SseEvent]:
    """Parse ``text/event-stream`` lines into events (comments are heartbeats: skipped)."""
    event_id: int | None = None
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseEvent(id=event_id, event=kind, data=json.loads("\n".join(data)))
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = int(value) if value.isdigit() else event_id
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
