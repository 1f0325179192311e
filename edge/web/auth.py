"""Who is calling: bearer tokens of pull consumers (from the site file) and, later, UI sessions.

The auth middleware puts a `Principal` (or None) into `request["principal"]`; handlers call
`require(request, scope)`. Scopes: `read` (status, points, history), `write` (commands),
`rules` (edit rules), `admin` (accounts, tokens), `pull` (the stream and acks of one consumer).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.config import resolve_secret
from edge.web.problem import Problem

if TYPE_CHECKING:
    from edge.runtime import Runtime

ROLE_SCOPES = {
    "viewer": frozenset({"read"}),
    "technician": frozenset({"read", "write", "rules"}),
    "admin": frozenset({"read", "write", "rules", "admin"}),
}
PUBLIC_PATHS = {"/healthz"}


@dataclass(frozen=True)
class Principal:
    kind: str  # "user", "token" or "consumer"
    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    role: str | None = None
    consumer: str | None = None  # for kind == "consumer": the consumer id


def require(request: web.Request, *scopes: str) -> Principal:
    """The caller, if it holds at least one of `scopes`; else 401 (no credential) or 403."""
    principal: Principal | None = request.get("principal")
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
    authenticators: list[Any] = app.setdefault("authenticators", [])

    def by_consumer_token(request: web.Request) -> Principal | None:
        token = bearer(request)
        return consumers.lookup(token) if token else None

    authenticators.append(by_consumer_token)


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    principal = None
    for authenticate in request.app.get("authenticators", []):
        principal = authenticate(request)
        if principal is not None:
            break
    request["principal"] = principal
    return await handler(request)
