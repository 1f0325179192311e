"""The technicians' web UI: its pages, static files and security headers, and the UI's own APIs.

The UI is hand-written HTML/JS/CSS under `static/` (ES modules, no build step, no CDN, no external
fonts). Page paths are served by the server, so a page requested without a session redirects to
/login (or /setup on first run) before any script runs; the JSON it then uses is in `ui_api`,
`live` (SSE) and the plugins' routes (the commissioning read comes with a driver's plugin).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from edge.api.account_routes import ACCOUNTS_KEY
from edge.api.accounts import user_count
from edge.api.auth import principal_of
from edge.web import live, ui_api

if TYPE_CHECKING:
    from edge.runtime import Runtime

STATIC = Path(__file__).resolve().parent / "static"
PAGES = [
    "/",
    "/devices",
    "/devices/{id}",
    "/rules",
    "/rules/{id}",
    "/alerts",
    "/kpi",
    "/sync",
    "/audit",
    "/admin",
    "/privacy",
]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("X-Frame-Options", "DENY")
    if not request.path.startswith("/api/"):
        h.setdefault("Content-Security-Policy", CSP)
    if request.path.startswith("/static/"):
        h.setdefault("Cache-Control", "no-cache")  # revalidate: an upgrade must show at once
    if request.secure:
        h.setdefault("Strict-Transport-Security", "max-age=31536000")


def setup_pending(request: web.Request) -> bool:
    """No account yet and a setup code printed: the first visit creates the admin."""
    accounts = request.app.get(ACCOUNTS_KEY)
    return accounts is not None and accounts.setup_code is not None and user_count(accounts.state) == 0


async def page(request: web.Request) -> web.StreamResponse:
    principal = principal_of(request)
    if principal is None or principal.kind != "user":
        target = "/setup" if setup_pending(request) else "/login"
        nxt = request.path_qs if request.path != "/" else ""
        raise web.HTTPFound(target + (f"?next={_quote(nxt)}" if nxt else ""))
    return _html("index.html")


async def login_page(request: web.Request) -> web.StreamResponse:
    if request.path == "/login" and setup_pending(request):
        raise web.HTTPFound("/setup")
    return _html("login.html")


def setup(app: web.Application, runtime: Runtime) -> None:
    for path in PAGES:
        app.router.add_get(path, page)
    app.router.add_get("/login", login_page)
    app.router.add_get("/setup", login_page)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(security_headers)
    ui_api.setup(app, runtime)
    live.setup(app, runtime)


def _html(name: str) -> web.FileResponse:
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
