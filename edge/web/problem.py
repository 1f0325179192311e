"""Errors as `application/problem+json` (RFC 9457), for every API."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

PROBLEM = "application/problem+json"


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM)


class Problem(web.HTTPException):
    """Raise from a handler; the error middleware turns it into problem+json."""

    def __init__(self, status: int, title: str, detail: str = "", **extra: Any) -> None:
        self.status_code = status
        super().__init__(reason=title)
        self.title = title
        self.detail = detail
        self.extra = extra

    def response(self) -> web.Response:
        return problem(self.status_code, self.title, self.detail, **self.extra)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS),
        content_type="application/json",
        headers=headers,
    )


async def read_json(request: web.Request, max_bytes: int = 1024 * 1024) -> Any:
    """The request body as JSON, or a 400/413/415 problem saying what is wrong."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise Problem(413, "Request body too large", f"at most {max_bytes} bytes")
    ctype = request.content_type
    if ctype not in ("application/json", "application/merge-patch+json", ""):
        raise Problem(415, "Unsupported media type", f"send application/json, not {ctype}")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise Problem(413, "Request body too large", f"at most {max_bytes} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, "Malformed JSON body", str(exc)) from None
