"""Who is calling: bearer tokens (pull consumers from the site file, API tokens) and UI sessions.

The auth middleware asks each of `authenticators(app)` in turn and puts the first `Principal`
(or None) into `request[PRINCIPAL]` (`principal_of(request)`); handlers call `require(request, scope)`. Scopes: `read`
(status, points, history), `write` (commands), `rules` (edit rules), `admin` (accounts, tokens),
`pull` (the stream and acks of one consumer).

Cross-site request forgery: a browser sends the session cookie by itself, so every
state-changing request authenticated by a cookie must also carry the session's CSRF token in the
`X-CSRF-Token` header (a page on another site cannot read it), and any unsafe request that names
a foreign `Origin` is refused. Bearer-token requests are not cookie-borne and need neither.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from edge.config import resolve_secret
from edge.web.problem import Problem

if TYPE_CHECKING:
    from edge.runtime import Runtime

#: the authenticators asked in turn (each: request -> Principal | None)
AUTHENTICATORS: web.AppKey[list[Any]] = web.AppKey("authenticators", list)
#: the caller of a request, set by the middleware
PRINCIPAL: web.RequestKey[Any] = web.RequestKey("principal", object)


def authenticators(app: web.Application) -> list[Any]:
    """The app's authenticator list (created on first use); append to add a way to log in."""
    if AUTHENTICATORS not in app:
        app[AUTHENTICATORS] = []
    return app[AUTHENTICATORS]


def principal_of(request: web.Request) -> Any:
    """The request's Principal, or None when nobody is logged in."""
    return request.get(PRINCIPAL)


ROLE_SCOPES = {
    "viewer": frozenset({"read"}),
    "technician": frozenset({"read", "write", "rules"}),
    "admin": frozenset({"read", "write", "rules", "admin"}),
}
PUBLIC_PATHS = {"/healthz"}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True)
class Principal:
    kind: str  # "user", "token" or "consumer"
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    role: str | None = None
    consumer: str | None = None  # for kind == "consumer": the consumer id
    session: str | None = None  # kind == "user": hash of the session id (to log out)
    csrf: str | None = None  # kind == "user": the token unsafe requests must echo


def require(request: web.Request, *scopes: str) -> Principal:
    """The caller, if it holds at least one of `scopes`; else 401 (no credential) or 403."""
    principal: Principal | None = request.get(PRINCIPAL)
    if principal is None:
        raise Problem(401, "Authentication required", "send a bearer token or log in")
    if scopes and not (principal.scopes & set(scopes)):
        raise Problem(403, "Forbidden", f"this needs one of the scopes: {', '.join(scopes)}")
    return principal


class ConsumerTokens:
    """Bearer tokens of the pull consumers declared in the site file (scope `pull`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.tokens: list[tuple[bytes, str]] = []
        for c in runtime.site.consumers:
            secret = resolve_secret(c.token_env, c.token_file, f"consumer {c.id} token")
            if secret:
                self.tokens.append((secret.encode(), c.id))

    def lookup(self, token: str) -> Principal | None:
        raw = token.encode()
        found = None
        for secret, cid in self.tokens:  # compare against all: constant time per token
            if hmac.compare_digest(secret, raw):
                found = cid
        if found is None:
            return None
        return Principal("consumer", found, frozenset({"pull"}), consumer=found)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return None


def setup(app: web.Application, runtime: Runtime) -> None:
    consumers = ConsumerTokens(runtime)
    auths = authenticators(app)

    def by_consumer_token(request: web.Request) -> Principal | None:
        token = bearer(request)
        return consumers.lookup(token) if token else None

    auths.append(by_consumer_token)


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    principal = None
    for authenticate in request.app.get(AUTHENTICATORS, []):
        principal = authenticate(request)
        if principal is not None:
            break
    if request.method in UNSAFE_METHODS and bearer(request) is None:
        check_origin(request)
        if principal is not None and principal.csrf is not None:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), principal.csrf.encode()):
                raise Problem(
                    403,
                    "CSRF token missing or wrong",
                    f"a request authenticated by the session cookie must send the {CSRF_HEADER} header",
                )
    request[PRINCIPAL] = principal
    return await handler(request)


def check_origin(request: web.Request) -> None:
    """Refuse an unsafe request that a page on another origin sent (browsers set Origin on them)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    parts = urlsplit(origin)
    if origin == "null" or parts.netloc.lower() != request.host.lower():
        raise Problem(403, "Cross-site request refused", f"origin {origin} is not this gateway")
