"""What a web page must not be able to do through the gateway.

A browser lets any page send "simple" requests to any address, the user's
loopback included, and DNS rebinding lets a page's own name resolve to
127.0.0.1. The gateway therefore answers only requests whose ``Host`` is on
its allow-list (loopback names, the bind host, ``KTRDR_API_ALLOWED_HOSTS``),
refuses any request that a page of another origin sent (its ``Origin`` is
not the gateway's own), and accepts only JSON bodies on a state-changing
method, which a page cannot send cross-site without a CORS preflight the
gateway never grants. All of it runs before any route.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request
from litestar.datastructures import Headers
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from ktrdr_api.errors import ApiError, problem_response

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANY_HOST = "*"


def allowed_hosts(bind_host: str, extra: tuple[str, ...]) -> frozenset[str]:
    """Return the host names the gateway answers to: loopback, the bind host, and ``extra``."""
    names = set(LOOPBACK_NAMES) | {h.strip().lower() for h in extra if h.strip()}
    if bind_host not in ("0.0.0.0", "::", "[::]", ""):  # a wildcard is no one's name
        names.add(bind_host.lower())
        if ":" in bind_host and not bind_host.startswith("["):
            names.add(f"[{bind_host.lower()}]")
    return frozenset(names)


def host_name(host: str) -> str:
    """Return ``host`` (a ``Host`` header or netloc) without its port, lower-cased."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def refusal(method: str, headers: Any, allowed: frozenset[str]) -> ApiError | None:
    """Return why the gateway refuses this request before any route runs, or None.

    Args:
        method: the HTTP method.
        headers: the request's headers (case-insensitive ``get``).
        allowed: the host names the gateway answers to (``*`` for any).
    """
    host = str(headers.get("host") or "")
    if ANY_HOST not in allowed and host_name(host) not in allowed:
        return ApiError(
            421,
            "unknown_host",
            f"this gateway does not answer to Host {host!r}; use one of "
            f"{' '.join(sorted(allowed))}, or add the name to "
            "KTRDR_API_ALLOWED_HOSTS",
        )
    origin = headers.get("origin")
    if origin is not None and urlsplit(str(origin)).netloc.lower() != host.lower():
        return ApiError(
            403,
            "cross_origin",
            f"a request from the web page {origin!r} is refused: the gateway "
            "serves its own origin only (no CORS)",
        )
    if method in STATE_CHANGING:
        return _body_refusal(method, headers)
    return None


def _body_refusal(method: str, headers: Any) -> ApiError | None:
    content_type = str(headers.get("content-type") or "")
    media_type = content_type.partition(";")[0].strip().lower()
    has_body = (
        headers.get("content-length") not in (None, "0")
        or headers.get("transfer-encoding") is not None
    )
    if media_type == "application/json" or (not media_type and not has_body):
        return None
    shown = f"Content-Type {content_type!r}" if media_type else "a body without a Content-Type"
    return ApiError(
        415,
        "unsupported_media_type",
        f"{method} takes a JSON body only; {shown} is refused: send "
        "'Content-Type: application/json'",
    )


class BrowserGuardMiddleware(ASGIMiddleware):
    """Answer a problem to a foreign ``Host``, a foreign ``Origin`` or a non-JSON body."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, allowed: frozenset[str]) -> None:
        self.allowed = allowed

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Pass the request on, or answer why it is refused."""
        error = refusal(str(scope.get("method", "GET")), Headers.from_scope(scope), self.allowed)
        if error is None:
            await next_app(scope, receive, send)
            return
        request: Request[Any, Any, Any] = Request(scope, receive, send)
        response = problem_response(request, error)
        await response.to_asgi_response(app=None, request=request)(scope, receive, send)
