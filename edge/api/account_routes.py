"""HTTP side of accounts: first-run setup, login/logout, the session's own state, users, audit log.

`/api/v1/auth/state`, `/setup` and `/login` are public (they are how a session starts); everything
else calls `require`. Every change is written to the audit log, and so is every wrong password; the
logins the per-source limit refuses (and those of an attempt already being checked) are counted and
written as one entry per source and minute (`RefusedLogins`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import unicodedata
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from aiohttp import web

from edge import audit
from edge.api import accounts as acc
from edge.api import keys, privacy
from edge.api.auth import Principal, authenticators, principal_of, require
from edge.api.params import MAX_SEQ, int_param
from edge.api.problem import Problem, json_response, read_json
from edge.api.refused_logins import RefusedLogins
from edge.model import PRIVACY_RANK, Privacy

if TYPE_CHECKING:
    from edge.runtime import Runtime
    from edge.state import StateDB

ACCOUNTS_KEY: web.AppKey[acc.Accounts] = web.AppKey("accounts", acc.Accounts)


class AccountWork:
    """What the account handlers of one app share besides the accounts."""

    def __init__(self, refused: RefusedLogins) -> None:
        self.refused = refused
        self.setup_lock = asyncio.Lock()  # two browsers racing with the right code must not make two admins
        # Password hashing runs on one thread of its own (accounts.py); a request waiting for it
        # would otherwise hold one of the few threads of the executor the rest of the API shares.
        self.hashing = asyncio.Semaphore(2)

    async def hashed(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with self.hashing:
            return await asyncio.to_thread(fn, *args, **kwargs)


ACCOUNT_WORK_KEY: web.AppKey[AccountWork] = web.AppKey("account_work", AccountWork)


def _address(request: web.Request) -> str:
    return request.remote or ""


def _set_cookie(response: web.Response, request: web.Request, sid: str) -> None:
    response.set_cookie(
        acc.COOKIE,
        sid,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=acc.SESSION_MAX,
    )


# One slash, then anything but another slash or a backslash: browsers read //host and /\\host
# (and /<tab>/host, since they drop tabs and newlines) as another site.
_SAME_ORIGIN_PATH = re.compile(r"/(?![/\\])")


def _unsafe_char(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch).startswith("C")


def safe_next(value: Any) -> str:
    """`value` if it is a path on this gateway to go to after login, else "/".

    Accepted: one leading "/" followed by anything but "/" or "\\" (also once percent-decoded),
    no whitespace or control character anywhere and no encoded control character; so no scheme
    and no other host. login.js applies the same rule before it follows the value."""
    if not isinstance(value, str) or len(value) > 2048:
        return "/"
    # byte-wise, as a URL parser sees %xx; a decoded space is harmless, a decoded control is not
    decoded = unquote_to_bytes(value).decode("latin-1")
    if not (_SAME_ORIGIN_PATH.match(value) and _SAME_ORIGIN_PATH.match(decoded)):
        return "/"
    if any(map(_unsafe_char, value)) or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        return "/"
    return value


def _refused(exc: acc.LoginRefused, title: str) -> web.Response:
    """The problem response for a refused login or setup; a 429 says when to come back, in the
    Retry-After header and as `retry_after` in the body (the login page reads the body)."""
    wait = exc.retry_after_header
    if not wait:
        return Problem(exc.status, title, str(exc)).response()
    return Problem(
        exc.status, title, str(exc), headers={"Retry-After": wait}, retry_after=int(wait)
    ).response()


def _fields(body: Any, *names: str) -> list[Any]:
    if not isinstance(body, dict):
        raise Problem(400, "Expected a JSON object", f"with the fields: {', '.join(names)}")
    return [body.get(n) for n in names]


def _bad(exc: acc.AccountError) -> Problem:
    return Problem(422, "Invalid account data", str(exc), message_key=exc.key, args=exc.params)


def _me(principal: Principal | None) -> dict[str, Any] | None:
    if principal is None:
        return None
    return {
        "name": principal.name,
        "kind": principal.kind,
        "role": principal.role,
        "scopes": sorted(principal.scopes),
    }


async def auth_state(request: web.Request) -> web.Response:
    principal: Principal | None = principal_of(request)
    runtime = keys.get_runtime(request)
    accounts = request.app[ACCOUNTS_KEY]
    return json_response(
        {
            "setup_required": accounts.setup_code is not None and acc.user_count(accounts.state) == 0,
            "user": _me(principal),
            "csrf": principal.csrf if principal else None,
            "site": {
                "id": runtime.site.site.id,
                "name": runtime.site.site.name,
                "timezone": runtime.site.site.timezone,
            },
        }
    )


async def first_setup(request: web.Request) -> web.Response:
    accounts = request.app[ACCOUNTS_KEY]
    state, guard = accounts.state, accounts.guard
    body = await read_json(request, 4096)
    code, name, password, nxt = _fields(body, "code", "name", "password", "next")
    try:
        guard.check_address(_address(request))
    except acc.LoginRefused as exc:
        return _refused(exc, "Too many attempts")
    async with request.app[ACCOUNT_WORK_KEY].setup_lock:
        if accounts.setup_code is None or acc.user_count(state) > 0:
            raise Problem(409, "Setup already done", "an admin exists; log in instead")
        if not accounts.setup_code.matches(code or ""):
            audit.record(state, str(name or "?")[:64], "setup_failed", "", address=_address(request))
            raise Problem(403, "Wrong setup code", "the code is printed in the gateway's log at start")
        try:
            await request.app[ACCOUNT_WORK_KEY].hashed(
                acc.add_user, state, name, "admin", password, created_by="setup"
            )
        except acc.AccountError as exc:
            raise _bad(exc) from None
        accounts.setup_code.consume()
    audit.record(state, name, "setup", name, role="admin", address=_address(request))
    sid, csrf = acc.sign_in(state, name, _address(request))
    response = json_response(
        {"user": {"name": name, "role": "admin"}, "csrf": csrf, "next": safe_next(nxt)}, status=201
    )
    _set_cookie(response, request, sid)
    return response


async def login(request: web.Request) -> web.Response:
    state, guard = request.app[ACCOUNTS_KEY].state, request.app[ACCOUNTS_KEY].guard
    name, password, nxt = _fields(await read_json(request, 4096), "name", "password", "next")
    if not isinstance(name, str) or not isinstance(password, str):
        raise Problem(400, "Missing credentials", "send a JSON object with name and password")
    try:
        role = await request.app[ACCOUNT_WORK_KEY].hashed(
            acc.verify_login, state, guard, name, password, _address(request)
        )
    except acc.LoginRefused as exc:
        request.app[ACCOUNT_WORK_KEY].refused.note(_address(request), name, exc)
        if exc.audited_each:  # the others are counted per source, not one entry each
            audit.record(
                state, name[:64], "login_failed", name[:64], reason=str(exc), address=_address(request)
            )
        return _refused(exc, "Login failed" if exc.status == 401 else "Too many attempts")
    audit.record(state, name, "login", name, address=_address(request))
    sid, csrf = acc.sign_in(state, name, _address(request))
    response = json_response({"user": {"name": name, "role": role}, "csrf": csrf, "next": safe_next(nxt)})
    _set_cookie(response, request, sid)
    return response


async def logout(request: web.Request) -> web.Response:
    state = request.app[ACCOUNTS_KEY].state
    principal = require(request)
    if principal.session:
        acc.end_session(state, principal.session)
        audit.record(state, principal.name, "logout", principal.name)
    response = json_response({"ok": True})
    response.del_cookie(acc.COOKIE, path="/")
    return response


async def change_password(request: web.Request) -> web.Response:
    state, guard = request.app[ACCOUNTS_KEY].state, request.app[ACCOUNTS_KEY].guard
    principal = require(request)
    if principal.kind != "user":
        raise Problem(400, "Not a user session", "API tokens have no password")
    old, new = _fields(await read_json(request, 4096), "old", "new")
    if not isinstance(old, str):  # argon2 verifies str or bytes only
        raise Problem(400, "Missing current password", 'send {"old": "...", "new": "..."} as strings')
    try:
        await request.app[ACCOUNT_WORK_KEY].hashed(
            acc.verify_login, state, guard, principal.name, old, _address(request)
        )
        await request.app[ACCOUNT_WORK_KEY].hashed(acc.update_user, state, principal.name, password=new or "")
    except acc.LoginRefused as exc:
        return _refused(exc, "Current password is wrong" if exc.status == 401 else "Too many attempts")
    except acc.AccountError as exc:
        raise _bad(exc) from None
    audit.record(state, principal.name, "password_change", principal.name)
    # every session of the user ended; start a fresh one for this browser
    sid, csrf = acc.sign_in(state, principal.name, _address(request))
    response = json_response({"ok": True, "csrf": csrf})
    _set_cookie(response, request, sid)
    return response


async def users(request: web.Request) -> web.Response:
    state = request.app[ACCOUNTS_KEY].state
    require(request, "admin")
    return json_response({"users": acc.list_users(state)})


async def add_user(request: web.Request) -> web.Response:
    state = request.app[ACCOUNTS_KEY].state
    principal = require(request, "admin")
    name, role, password = _fields(await read_json(request, 4096), "name", "role", "password")
    if role in (None, ""):  # only an absent role defaults; `{}` or `false` is a mistake
        role = "viewer"
    try:
        await request.app[ACCOUNT_WORK_KEY].hashed(
            acc.add_user, state, name, role, password, created_by=principal.name
        )
    except acc.AccountError as exc:
        raise _bad(exc) from None
    audit.record(state, principal.name, "user_add", name, role=role)
    return json_response({"name": name, "role": role}, status=201)


async def change_user(request: web.Request) -> web.Response:
    state = request.app[ACCOUNTS_KEY].state
    principal = require(request, "admin")
    name = request.match_info["name"]
    body = await read_json(request, 4096)
    if not isinstance(body, dict) or not set(body) <= {"role", "password", "disabled", "unlock"}:
        raise Problem(400, "Unknown fields", "accepted: role, password, disabled, unlock")
    for flag in ("disabled", "unlock"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise Problem(
                422,
                "Invalid account data",
                f"{flag} is true or false",
                message_key="msg.account.not_boolean",
                args={"field": flag},
            )
    if (
        all(body.get(k) in (None, False) for k in ("role", "password", "unlock"))
        and body.get("disabled") is None
    ):
        raise Problem(
            422,
            "Nothing to change",
            "send at least one of: role, password, disabled (true or false), unlock (true)",
        )
    try:
        revoked = await request.app[ACCOUNT_WORK_KEY].hashed(
            acc.update_user,
            state,
            name,
            role=body.get("role"),
            password=body.get("password"),
            disabled=body.get("disabled"),
            unlock=bool(body.get("unlock")),
        )
    except acc.AccountError as exc:
        raise _bad(exc) from None
    detail = {k: v for k, v in body.items() if k != "password"}
    if "password" in body:
        detail["password"] = "changed"
    why = "its owner was disabled" if body.get("disabled") else f"its owner's role is now {body.get('role')}"
    return _changed(state, principal, "user_update", name, revoked, why, **detail)


async def delete_user(request: web.Request) -> web.Response:
    state = request.app[ACCOUNTS_KEY].state
    principal = require(request, "admin")
    name = request.match_info["name"]
    try:
        revoked = acc.delete_user(state, name)
    except acc.AccountError as exc:
        raise _bad(exc) from None
    return _changed(state, principal, "user_delete", name, revoked, "its owner was deleted")


def _changed(
    state: StateDB,
    principal: Principal,
    action: str,
    name: str,
    revoked: list[dict[str, Any]],
    why: str,
    **detail: Any,
) -> web.Response:
    """Audit a user's change and each API token it revoked; the answer lists those tokens."""
    audit.record(state, principal.name, action, name, **detail, tokens_revoked=len(revoked))
    for token in revoked:
        audit.record(
            state,
            principal.name,
            "token_revoke",
            str(token["id"]),
            name=token["name"],
            owner=name,
            reason=why,
        )
    return json_response({"ok": True, "tokens_revoked": len(revoked), "revoked_tokens": revoked})


def _session_user(request: web.Request) -> Principal:
    principal = require(request)
    if principal.kind != "user" and "admin" not in principal.scopes:
        raise Problem(403, "Not a user session", "sessions belong to users; an API token needs scope admin")
    return principal


def _public(session: dict[str, Any], principal: Principal) -> dict[str, Any]:
    out = {k: v for k, v in session.items() if k != "_hash"}
    out["current"] = session["_hash"] == principal.session
    return out


async def sessions(request: web.Request) -> web.Response:
    """Everyone's sessions for an admin (or one user's with ?user=), otherwise the caller's own."""
    state = request.app[ACCOUNTS_KEY].state
    principal = _session_user(request)
    wanted = request.query.get("user") or None
    if "admin" not in principal.scopes:
        if wanted not in (None, principal.name):
            raise Problem(403, "Forbidden", "only an admin sees other users' sessions")
        wanted = principal.name
    rows = acc.list_sessions(state, wanted)
    return json_response({"sessions": [_public(s, principal) for s in rows]})


async def end_session(request: web.Request) -> web.Response:
    state = request.app[ACCOUNTS_KEY].state
    principal = _session_user(request)
    own_only = None if "admin" in principal.scopes else principal.name
    session = acc.find_session_by_id(state, request.match_info["id"], own_only)
    if session is None:  # another user's session is as unknown to a non-admin as a wrong id
        raise Problem(404, "No such session", "list the live sessions with GET /api/v1/sessions")
    acc.end_session(state, session["_hash"])
    audit.record(
        state,
        principal.name,
        "session_end",
        session["user"],
        session=session["id"],
        address=session["address"],
    )
    return json_response({"ok": True})


async def audit_log(request: web.Request) -> web.Response:
    """The audit log, newest first. Who did what is personal data: a caller below the `personal`
    class (an API token without `admin`, as everywhere in the API) gets each entry with its actor,
    target and text withheld (`audit.withheld`), and may not filter by actor (a match would tell)."""
    state = request.app[ACCOUNTS_KEY].state
    principal = require(request, "admin", "write")
    # bounded: SQLite integers stop at 64 bits and a negative LIMIT means "no limit"
    limit = int_param(request, "limit", 200, 1, 1000)
    before = int_param(request, "before", None, 1, MAX_SEQ)
    assert limit is not None
    actor, action = (request.query.get(key) or None for key in ("actor", "action"))
    personal = privacy.limit_for(principal) >= PRIVACY_RANK[Privacy.PERSONAL]
    if actor is not None and not personal:
        raise Problem(
            403,
            "Forbidden",
            "who did what is personal data: filtering the audit log by actor needs a technician's or "
            "admin's session, or a token with the admin scope",
            parameter="actor",
        )
    # in a thread: a filter that matches few entries reads the log back to its start
    rows = await asyncio.to_thread(audit.entries, state, limit, before, actor=actor, action=action)
    return json_response({"entries": rows if personal else [audit.withheld(row) for row in rows]})


ROUTES = [
    web.get("/api/v1/auth/state", auth_state),
    web.post("/api/v1/auth/setup", first_setup),
    web.post("/api/v1/auth/login", login),
    web.post("/api/v1/auth/logout", logout),
    web.post("/api/v1/auth/password", change_password),
    web.get("/api/v1/users", users),
    web.post("/api/v1/users", add_user),
    web.patch("/api/v1/users/{name}", change_user),
    web.delete("/api/v1/users/{name}", delete_user),
    web.get("/api/v1/sessions", sessions),
    web.delete("/api/v1/sessions/{id}", end_session),
    web.get("/api/v1/audit", audit_log),
]


async def _refusals_writer(app: web.Application) -> AsyncIterator[None]:
    """The task that writes the refused logins' entries; what is still open is written at stop."""
    refused = app[ACCOUNT_WORK_KEY].refused
    task = asyncio.create_task(refused.run(), name="login-refusals")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    refused.flush()


def setup(app: web.Application, runtime: Runtime) -> None:
    state = runtime.state
    assert state is not None, "the state DB opens before the web server"
    app[ACCOUNTS_KEY] = acc.open_accounts(state)
    app[ACCOUNT_WORK_KEY] = AccountWork(RefusedLogins(state))
    app.cleanup_ctx.append(_refusals_writer)
    authenticators(app).append(acc.session_authenticator(state))
    app.router.add_routes(ROUTES)
