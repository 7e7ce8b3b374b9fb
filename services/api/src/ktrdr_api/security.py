"""The API key: required on every route but ``/health`` once one is configured.

Sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` and compared
in constant time. Whether the gateway may start without one is decided in
``config.check_exposure`` (loopback only).
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.types import ASGIApp, Receive, Scope, Send

from ktrdr_api.errors import ApiError, problem_response

OPEN_PATHS = ("/health",)

COMPONENTS = Components(security_schemes={
    "apiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header",
                             description="The gateway's KTRDR_API_KEY."),
    "bearer": SecurityScheme(type="http", scheme="bearer",
                             description="The gateway's KTRDR_API_KEY as a bearer token."),
})  # fmt: skip
REQUIREMENTS: list[SecurityRequirement] = [{"apiKey": []}, {"bearer": []}]


def presented_key(headers: Any) -> str | None:
    """Return the key a request carries, if any."""
    key = headers.get("x-api-key")
    if key:
        return str(key)
    scheme, _, token = str(headers.get("authorization", "")).partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class ApiKeyMiddleware(ASGIMiddleware):
    """Answer 401 to any HTTP request without the right key (``/health`` excepted)."""

    scopes = (ScopeType.HTTP,)

    @staticmethod
    def should_bypass_for_scope(scope: Scope) -> bool:
        """Let ``/health`` through: monitors must see it without the key."""
        return scope["path"] in OPEN_PATHS

    def __init__(self, key: str) -> None:
        self.key = key.encode()

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Pass the request on when its key matches; otherwise answer a 401 problem."""
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        key = presented_key(request.headers)
        if key is not None and hmac.compare_digest(key.encode(), self.key):
            await next_app(scope, receive, send)
            return
        detail = ("this gateway requires its API key on every route but /health: send "
                  "'X-API-Key: <key>' or 'Authorization: Bearer <key>'" if key is None else
                  "the API key sent does not match the gateway's KTRDR_API_KEY")  # fmt: skip
        response = problem_response(request, ApiError(401, "unauthorized", detail))
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)
