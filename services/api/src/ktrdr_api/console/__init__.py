"""The web console: plain HTML, CSS and JavaScript modules served by the gateway itself.

``GET /`` answers the console's one page; ``/console/static/...`` its scripts, styles and the
vendored libraries (``vendor.json`` names them; no CDN, no build step, no Node.js on the user's
machine). Both are open without the API key: the page holds no data, and it asks for the key
before it asks the API for anything. The page's Content-Security-Policy lets it talk to its
own origin only, so a stray script could not send anything elsewhere either.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from litestar import Response, get
from litestar.datastructures import CacheControlHeader
from litestar.router import Router
from litestar.static_files import create_static_files_router

STATIC = Path(str(files("ktrdr_api.console") / "static"))
STATIC_PATH = "/console/static"
#: Paths served without the API key (the page itself asks for it).
OPEN_PREFIXES = (f"{STATIC_PATH}/",)
OPEN_EXACT = ("/",)

CSP = "; ".join(
    [
        "default-src 'self'",
        "connect-src 'self'",
        "img-src 'self' data: blob:",
        "style-src 'self' 'unsafe-inline'",  # the chart library sets element styles
        "script-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'none'",
    ]
)
#: The swagger page's favicon (Litestar's default comes from a CDN).
FAVICON = f'<link rel="icon" type="image/svg+xml" href="{STATIC_PATH}/favicon.svg">'
SWAGGER = f"{STATIC_PATH}/vendor/swagger-ui"


@get("/", include_in_schema=False, sync_to_thread=False)
def index() -> Response[bytes]:
    """Answer the console's page (the same bytes for every route: it routes by URL hash)."""
    return Response(
        (STATIC / "index.html").read_bytes(),
        media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": CSP,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def static_router() -> Router:
    """Return the router serving the console's files (revalidated on each load)."""
    return create_static_files_router(
        path=STATIC_PATH,
        directories=[STATIC],
        include_in_schema=False,
        cache_control=CacheControlHeader(no_cache=True),
    )


def is_open(path: str) -> bool:
    """Return whether ``path`` is one of the console's files, served without the key."""
    return path in OPEN_EXACT or path.startswith(OPEN_PREFIXES)
