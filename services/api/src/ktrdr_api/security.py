"""The API key: required on every route but ``/health`` and the console's files once one is set.

Sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` and compared
in constant time. Whether the gateway may start without one, or with a weak
one, is decided in ``config.check_exposure`` (loopback only). Failed keys are
slowed per client address: after ``FREE_FAILURES`` wrong keys, each further one
locks the address out for twice as long as the last (up to ``MAX_LOCKOUT_S``),
and a request from a locked-out address is answered 429 with ``Retry-After``
without its key being looked at. The count is per worker process.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from ktrdr_api import console
from ktrdr_api.errors import ApiError, problem_response

OPEN_PATHS = ("/health",)
FREE_FAILURES = 5
FIRST_LOCKOUT_S = 0.5
MAX_LOCKOUT_S = 60.0
MAX_CLIENTS = 10_000  # addresses remembered; the oldest are forgotten past this

COMPONENTS = Components(
    security_schemes={
        "apiKey": SecurityScheme(
            type="apiKey",
            name="X-API-Key",
            security_scheme_in="header",
            description="The gateway's KTRDR_API_KEY.",
        ),
        "bearer": SecurityScheme(
            type="http",
            scheme="bearer",
            description="The gateway's KTRDR_API_KEY as a bearer token.",
        ),
    }
)
REQUIREMENTS: list[SecurityRequirement] = [{"apiKey": []}, {"bearer": []}]


def presented_key(headers: Any) -> str | None:
    """Return the key a request carries, if any."""
    key = headers.get("x-api-key")
    if key:
        return str(key)
    scheme, _, token = str(headers.get("authorization", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def key_matches(headers: Any, key: str | None) -> bool:
    """Return True when no key is configured or ``headers`` carry the right one."""
    if key is None:
        return True
    presented = presented_key(headers)
    return presented is not None and hmac.compare_digest(presented.encode(), key.encode())


class FailedKeyThrottle:
    """Lock out a client address for exponentially longer after repeated wrong keys."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.clients: dict[str, tuple[int, float]] = {}  # address -> (failures, locked until)

    def retry_after_s(self, client: str) -> float:
        """Return how long ``client`` is still locked out (0 when it is not)."""
        _, until = self.clients.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> None:
        """Count one wrong key from ``client`` and lock it out once past the free ones."""
        failures = self.clients.pop(client, (0, 0.0))[0] + 1
        extra = failures - FREE_FAILURES
        lockout = min(MAX_LOCKOUT_S, FIRST_LOCKOUT_S * 2 ** (extra - 1)) if extra > 0 else 0.0
        self.clients[client] = (failures, self.clock() + lockout)
        while len(self.clients) > MAX_CLIENTS:
            del self.clients[next(iter(self.clients))]

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        self.clients.pop(client, None)


class ApiKeyMiddleware(ASGIMiddleware):
    """Answer 401 to any HTTP request without the right key (``/health`` excepted)."""

    scopes = (ScopeType.HTTP,)

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        """Let ``/health`` (monitors) and the console's page and files (it asks for the key
        itself) through without the key."""
        path: str = scope["path"]
        return path in OPEN_PATHS or console.is_open(path)

    def __init__(self, key: str, throttle: FailedKeyThrottle | None = None) -> None:
        self.key = key
        self.throttle = throttle or FailedKeyThrottle()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Pass the request on when its key matches; otherwise answer a 401 (or 429) problem."""
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        client = request.client.host if request.client else "unknown"
        wait_s = self.throttle.retry_after_s(client)
        if wait_s <= 0 and key_matches(request.headers, self.key):
            self.throttle.succeeded(client)
            await next_app(scope, receive, send)
            return
        if wait_s > 0:
            error = ApiError(
                429,
                "too_many_failures",
                f"too many wrong API keys from {client}: try again in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )
        else:
            self.throttle.failed(client)
            error = ApiError(401, "unauthorized", _why_unauthorized(request.headers))
        response = problem_response(request, error)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)


def _why_unauthorized(headers: Any) -> str:
    if presented_key(headers) is None:
        return (
            "this gateway requires its API key on every route but /health: send "
            "'X-API-Key: <key>' or 'Authorization: Bearer <key>'"
        )
    return "the API key sent does not match the gateway's KTRDR_API_KEY"
