"""Query- and path-parameter parsing for the APIs: a clear 400 naming the parameter and what is accepted."""

from __future__ import annotations

import math

from aiohttp import web

from edge.api.problem import Problem

MAX_SEQ = 2**62  # SQLite integers are 64-bit; anything past this is a client mistake


def int_param(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not lo <= int(raw) <= hi:
        raise Problem(
            400,
            "Invalid parameter",
            f"{name}={raw[:40]!r}: expected an integer from {lo} to {hi}",
            parameter=name,
        )
    return int(raw)


def path_int(request: web.Request, name: str, title: str, meaning: str, hi: int = MAX_SEQ) -> int:
    """The path parameter `name` as an integer from 1 to `hi`, else a 400 titled `title` whose
    detail is `meaning` ("the version is a number"), with the range when the number is outside it."""
    try:
        value = int(request.match_info[name])
    except ValueError:
        raise Problem(400, title, meaning) from None
    if not 1 <= value <= hi:  # SQLite integers stop at 64 bits
        raise Problem(400, title, f"{meaning} from 1 to {hi}")
    return value


def float_param(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not lo <= value <= hi:
        raise Problem(
            400,
            "Invalid parameter",
            f"{name}={raw[:40]!r}: expected a number from {lo:g} to {hi:g}",
            parameter=name,
        )
    return value


def bool_param(request: web.Request, name: str, default: bool = False) -> bool:
    """`true`/`1` or `false`/`0` (absent or empty: `default`)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise Problem(
        400,
        "Invalid parameter",
        f"{name}={raw[:40]!r}: expected true or false",
        parameter=name,
    )
