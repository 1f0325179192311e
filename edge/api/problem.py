"""Errors as `application/problem+json` (RFC 9457), for every API.

Beside the English `title` and `detail`, a problem people meet in the UI carries `message_key` and
`args`: the UI words it from its catalogue (`edge/web/static/i18n/messages.<lang>.json`, a flat
object of key -> template with `{arg}` placeholders) in the reader's language. A raiser names the
key (`Problem(..., message_key="rules.not_found", args={"id": ...})`); a problem raised without
one gets the key its title has in `TITLE_KEYS`, with its numeric and text extra fields as args
(`retry_after`, `max_bytes`); for a title in `REASON_TITLES` the `detail` is the device's or
driver's own reason ("cannot connect to 127.0.0.1:502 (tcp)") and is the arg `reason` too, since
without it the message says only that something failed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

PROBLEM = "application/problem+json"


# the message key of a problem by its title, for the problems raised without one: refusals of
# authentication and permission, not-found, rate limits, bodies refused, commissioning reads
TITLE_KEYS: dict[str, str] = {
    "Authentication required": "msg.auth.required",
    "Invalid credential": "msg.auth.invalid_credential",
    "Forbidden": "msg.auth.forbidden",
    "CSRF token missing or wrong": "msg.auth.csrf",
    "Cross-site request refused": "msg.auth.cross_site",
    "Login failed": "msg.auth.login_failed",
    "Current password is wrong": "msg.auth.password_wrong",
    "Too many attempts": "msg.rate.too_many_attempts",
    "Too many dry runs": "msg.rate.too_many_dry_runs",
    "YAML helper busy": "msg.rate.yaml_busy",
    "YAML helper unavailable": "msg.yaml.unavailable",
    "YAML text too large": "msg.yaml.too_large",
    "YAML nested too deep": "msg.yaml.too_deep",
    "Not Found": "msg.http.not_found",
    "Not found": "msg.http.not_found",
    "Method Not Allowed": "msg.http.method_not_allowed",
    "Unknown device": "msg.device.unknown",
    "Unknown point": "msg.point.unknown",
    "No such event": "msg.event.unknown",
    "No such token": "msg.token.unknown",
    "No such session": "msg.session.unknown",
    "Request body too large": "msg.body.too_large",
    "Request body too slow": "msg.body.too_slow",
    "Malformed JSON body": "msg.body.malformed_json",
    "JSON body nested too deep": "msg.body.too_deep",
    "Unsupported media type": "msg.body.media_type",
    "Internal error": "msg.http.internal",
    "Not a Modbus device": "msg.commission.not_modbus",
    "Device did not answer": "msg.commission.no_answer",
    "Read failed": "msg.commission.read_failed",
    "Bad table": "msg.commission.bad_table",
    "Bad range": "msg.commission.bad_range",
    "Bad type": "msg.commission.bad_type",
    "Nothing to read": "msg.commission.nothing_to_read",
    "Dry run over its budget": "msg.rules.dry_run_budget",
    "Dry run failed": "msg.rules.dry_run_failed",
}

#: titles whose `detail` is the reason a device or driver gave, passed to the message as `reason`
REASON_TITLES = frozenset({"Device did not answer", "Read failed"})


def problem(
    status: int,
    title: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
    *,
    message_key: str | None = None,
    args: dict[str, Any] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    key = message_key or TITLE_KEYS.get(title)
    if key is not None:
        plain = {
            k: v for k, v in extra.items() if isinstance(v, str | int | float) and not isinstance(v, bool)
        }
        reason = {"reason": detail} if title in REASON_TITLES and message_key is None else {}
        body["message_key"] = key
        body["args"] = {**plain, **reason, **(args or {})}
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM, headers=headers)


class Problem(web.HTTPException):
    """Raise from a handler; the error middleware turns it into problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status_code = status
        super().__init__(reason=title)
        self.title = title
        self.detail = detail
        self.extra = extra
        self.problem_headers = headers

    def response(self) -> web.Response:
        return problem(self.status_code, self.title, self.detail, self.problem_headers, **self.extra)


def json_body(data: Any, *, str_keys: bool = False) -> bytes:
    """`data` as the JSON every API answers with (also for encoding in a thread). An integer
    beyond 64 bits (a uint64 register's top half, a large constant: orjson refuses it) is written
    as the journal keeps it (`fit_payload`): the nearest float. `str_keys`: every dict key is a
    string (records), so the encoder need not look (OPT_NON_STR_KEYS doubles its time)."""
    option = 0 if str_keys else orjson.OPT_NON_STR_KEYS
    try:
        return orjson.dumps(data, default=str, option=option)
    except TypeError:
        from edge.store.rows import fit_payload

        return orjson.dumps(fit_payload(data, [], ""), default=str, option=option)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json_body(data), content_type="application/json", headers=headers)


MAX_DEPTH = 64  # nesting of a JSON body: deeper documents would exhaust recursion further on
BODY_TIMEOUT = 10.0  # seconds to send a request body once its headers are in


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether `value` nests lists and objects more than `limit` levels deep (iterative: a deep
    value must not exhaust the recursion it is checked to protect)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, or a 413 saying the cap, or a 408 when it does not arrive in time."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise Problem(413, "Request body too large", f"at most {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            while chunk := await request.content.read(max_bytes + 1 - size):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise Problem(413, "Request body too large", f"at most {max_bytes} bytes")
    except TimeoutError:
        raise Problem(
            408, "Request body too slow", f"the body must arrive within {BODY_TIMEOUT:g} s"
        ) from None
    return b"".join(chunks)


async def read_json(request: web.Request, max_bytes: int = 1024 * 1024) -> Any:
    """The request body as JSON, or a 400/408/413/415/422 problem saying what is wrong."""
    ctype = request.content_type
    if ctype not in ("application/json", "application/merge-patch+json", ""):
        raise Problem(415, "Unsupported media type", f"send application/json, not {ctype}")
    raw = await read_body(request, max_bytes)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth limit" in str(exc) or "recursion" in str(exc).lower():
            raise _depth_problem() from None
        raise Problem(400, "Malformed JSON body", str(exc)) from None
    # a body cannot nest deeper than it has brackets: the walk is only for the few that could
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and too_deep(data):
        raise _depth_problem()
    return data


def _depth_problem() -> Problem:
    return Problem(
        422,
        "JSON body nested too deep",
        f"lists and objects may nest at most {MAX_DEPTH} levels deep",
        max_depth=MAX_DEPTH,
    )
