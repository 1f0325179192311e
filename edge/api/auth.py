"""Who is calling: bearer tokens (pull consumers from the site file, API tokens) and UI sessions.

A request is authenticated by exactly one credential. One that carries an `Authorization` header
is authenticated by that header alone: the middleware asks each of `bearer_authenticators(app)`
(pull consumers, API tokens), and a token none of them knows is a 401, never a fall-through to
the session cookie. Any other request is asked of `authenticators(app)` (the session cookie).
`authenticate(request)` is that lookup, the one place of its order: the middleware puts its
`Principal` (or None) into `request[PRINCIPAL]` (`principal_of(request)`), and an open live stream
asks it again with `touch=False` (a look that is not a use: a session's idle time goes on). So is
a page's own periodic refresh: the UI marks it with the `X-Edge-Background: 1` header, and a GET
so marked is authenticated with `touch=False` (a page left open is not the user's activity; a
click of theirs, which the UI sends unmarked, is). Handlers call `require(request, scope)`. Scopes: `read` (status, points, history), `write` (commands),
`rules` (edit rules), `admin` (accounts, tokens), `pull` (the stream and acks of one consumer).

Cross-site request forgery: a browser sends the session cookie by itself, so every
state-changing request authenticated by a cookie must also carry the session's CSRF token in the
`X-CSRF-Token` header (a page on another site cannot read it), and any unsafe request that names
an `Origin` other than this server's own scheme, host and port is refused. A bearer token is not
sent by a browser on its own (a page on another origin cannot set `Authorization` without CORS,
which this server does not answer), so bearer requests need neither, and their cookie is ignored.
Behind a reverse proxy that terminates TLS or rewrites Host the Origin check refuses every unsafe
cookie request: a proxy is not supported.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from edge.api.problem import Problem
from edge.validation import resolve_secret

if TYPE_CHECKING:
    from edge.runtime import Runtime

#: the authenticators asked in turn for a request without an Authorization header (the cookie);
#: each: (request, *, touch) -> Principal | None, `touch` False when the look is not a use
AUTHENTICATORS: web.AppKey[list[Any]] = web.AppKey("authenticators", list)
#: the authenticators asked in turn for a bearer token (each: (request, token) -> Principal | None)
BEARER_AUTHENTICATORS: web.AppKey[list[Any]] = web.AppKey("bearer_authenticators", list)
#: the caller of a request, set by the middleware
PRINCIPAL: web.RequestKey[Any] = web.RequestKey("principal", object)


def authenticators(app: web.Application) -> list[Any]:
    """The app's list of ways to log in without an Authorization header (created on first use)."""
    if AUTHENTICATORS not in app:
        app[AUTHENTICATORS] = []
    return app[AUTHENTICATORS]


def bearer_authenticators(app: web.Application) -> list[Any]:
    """The app's list of bearer-token lookups, `(request, token) -> Principal | None`."""
    if BEARER_AUTHENTICATORS not in app:
        app[BEARER_AUTHENTICATORS] = []
    return app[BEARER_AUTHENTICATORS]


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
#: the header the UI sets on a page's own periodic refresh (`1`): not the user's activity
BACKGROUND_HEADER = "X-Edge-Background"
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Principal:
    kind: str  # "user", "token" or "consumer"
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    role: str | None = None
    consumer: str | None = None  # for kind == "consumer": the consumer id
    session: str | None = None  # kind == "user": hash of the session id (to log out)
    csrf: str | None = None  # kind == "user": the token unsafe requests must echo
    token_id: int | None = None  # kind == "token": its id among the API tokens


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

    def by_consumer_token(request: web.Request, token: str) -> Principal | None:
        return consumers.lookup(token)

    bearer_authenticators(app).append(by_consumer_token)


def by_bearer(request: web.Request) -> Principal | None:
    """The principal of the request's Authorization header; 401 when it does not verify."""
    token = bearer(request)
    if token:
        for lookup in request.app.get(BEARER_AUTHENTICATORS, []):
            principal = lookup(request, token)
            if principal is not None:
                return principal  # type: ignore[no-any-return]
    if request.path in PUBLIC_PATHS:
        return None
    raise Problem(
        401,
        "Invalid credential",
        "the Authorization header is not a valid bearer token (unknown, revoked or mistyped); "
        "a request that sends one is authenticated by it alone",
    )


def authenticate(request: web.Request, *, touch: bool = True) -> Principal | None:
    """The caller as the request's credential says now: the bearer token when the request sends an
    Authorization header (a Problem 401 when it does not verify: never a fall-through to the
    cookie), else the first authenticator (the session cookie) that knows it; None when nobody is
    logged in. `touch=False` asks without it counting as the caller's activity: a session's last
    use is not moved, so it still ends at its idle timeout (a token's last use is a note of when
    it was presented, and is kept as usual)."""
    if "Authorization" in request.headers:
        return by_bearer(request)
    for authenticator in request.app.get(AUTHENTICATORS, []):
        principal: Principal | None = authenticator(request, touch=touch)
        if principal is not None:
            return principal
    return None


def is_background(request: web.Request) -> bool:
    """Whether the request is a page's own periodic refresh (a GET the UI marks with
    `BACKGROUND_HEADER`), which is not the user's activity: a state-changing request always is."""
    return request.method in SAFE_METHODS and request.headers.get(BACKGROUND_HEADER) == "1"


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    principal = authenticate(request, touch=not is_background(request))
    if "Authorization" not in request.headers:
        if request.method in UNSAFE_METHODS:
            check_origin(request)
        if request.method in UNSAFE_METHODS and principal is not None and principal.csrf is not None:
            given = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), principal.csrf.encode()):
                raise Problem(
                    403,
                    "CSRF token missing or wrong",
                    f"a request authenticated by the session cookie must send the {CSRF_HEADER} header",
                )
    request[PRINCIPAL] = principal
    return await handler(request)


DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an origin or a `scheme://host[:port]`; None when malformed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else DEFAULT_PORTS[scheme]


def check_origin(request: web.Request) -> None:
    """Refuse an unsafe request that a page on another origin sent (browsers set Origin on them):
    its scheme, host and port must be this server's own (the scheme is https exactly when this
    connection is TLS)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    own = _origin_of(f"{'https' if request.secure else 'http'}://{request.host}")
    if origin == "null" or own is None or _origin_of(origin) != own:
        raise Problem(
            403,
            "Cross-site request refused",
            f"origin {origin} is not this gateway; the page must be served from "
            f"{'https' if request.secure else 'http'}://{request.host}",
        )
