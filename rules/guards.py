"""What a compiled rule expression calls at run time (`rules.expr` compiles into these names).

The compiler rewrites every operation whose cost grows with its operands' sizes into a guarded
call here, which works out the size of its result before computing it and raises
`LimitExceeded` past MAX_INT_BITS bits or MAX_SEQUENCE characters/items; `safe_builtins()` is
the whole global namespace of a compiled expression (no Python builtins at all).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

MAX_SEQUENCE = 10_000  # characters / items a constant may fold to
MAX_INT_BITS = 4096  # bits an integer constant may fold to
# int() of a text longer than this could only give a number past MAX_INT_BITS (about 0.3 digits a bit)
MAX_INT_TEXT = MAX_INT_BITS // 3


class LimitExceeded(Exception):
    """An evaluation refused to build a value past one of the limits; `limit` names which one
    ("integer size", "sequence size", "string formatting", "sum start", "time")."""

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


_CONTAINERS: frozenset[type] = frozenset(
    (
        tuple,
        list,
        dict,
        set,
        frozenset,
        type({}.keys()),
        type({}.values()),
        type({}.items()),
    )
)


def value_size(value: Any, limit: int = MAX_SEQUENCE) -> int:
    """Characters and items in `value`, nested containers counted through (as `str()` would print
    them, a shared element once per place it appears); an int counts its decimal digits. Stops
    counting once past `limit`, so the cost is bounded by the limit, not by the value."""
    total = 0
    stack: list[Any] = [value]
    while stack:
        v: Any = stack.pop()
        t = type(v)
        if t is str or t is bytes:
            total += len(v)
        elif t is int:
            total += v.bit_length() // 3 + 1
        elif t in _CONTAINERS:
            total += len(v)
            if total > limit:
                return total
            stack.extend(itertools.chain.from_iterable(v.items()) if isinstance(v, dict) else v)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _too_long(what: str, size: int) -> LimitExceeded:
    return LimitExceeded(
        "sequence size",
        f"{what} would build a value of {size} characters or items; the limit is {MAX_SEQUENCE}",
    )


def _too_big(what: str, bits: int) -> LimitExceeded:
    return LimitExceeded(
        "integer size", f"{what} would make a number of about {bits} bits; the limit is {MAX_INT_BITS} bits"
    )


def _pow(base: Any, exp: int) -> Any:
    if isinstance(base, int) and base.bit_length() * exp > MAX_INT_BITS:
        raise _too_big("**", base.bit_length() * exp)
    return base**exp


def _mul(a: Any, b: Any) -> Any:
    if type(a) is float or type(b) is float:
        return a * b
    if isinstance(a, int) and isinstance(b, int):
        if a.bit_length() + b.bit_length() > MAX_INT_BITS:
            raise _too_big("*", a.bit_length() + b.bit_length())
        return a * b
    seq, n = (a, b) if isinstance(b, int) else (b, a)
    if isinstance(n, int) and n > 0 and isinstance(seq, str | bytes | tuple | list):
        size = value_size(seq)
        if size and size * n > MAX_SEQUENCE:
            raise _too_long("repeating", min(size * n, 10**12))
    return a * b


def _add(a: Any, b: Any) -> Any:
    ta = type(a)
    if ta is str and type(b) is str:
        if len(a) + len(b) > MAX_SEQUENCE:
            raise _too_long("+", len(a) + len(b))
    elif ta is type(b) and (ta is tuple or ta is list or ta is bytes):
        size = value_size(a) + value_size(b)
        if size > MAX_SEQUENCE:
            raise _too_long("+", size)
    return a + b


def _mod(a: Any, b: Any) -> Any:
    if isinstance(a, str | bytes):
        # '%0999999999d' % 1 builds a gigabyte; a message template formats text safely
        raise LimitExceeded(
            "string formatting",
            "string formatting with % is not allowed; use a message template in an action",
        )
    return a % b


def _str(x: Any) -> str:
    t = type(x)
    if t is str:
        return x
    if t is int:
        if x.bit_length() > MAX_INT_BITS:
            raise _too_big("str()", x.bit_length())
    elif t in _CONTAINERS:
        size = value_size(x)
        if size > MAX_SEQUENCE:
            raise _too_long("str()", size)
    return str(x)


def _int(x: Any) -> int:
    if isinstance(x, str | bytes) and len(x) > MAX_INT_TEXT:
        raise LimitExceeded(
            "integer size",
            f"int() of a text of {len(x)} characters; the limit is {MAX_INT_TEXT} ({MAX_INT_BITS} bits)",
        )
    return int(x)


def _round(x: Any, n: Any = 0) -> Any:
    if not n:
        return round(x)
    # round(int, -k) computes 10**k
    if isinstance(x, int) and isinstance(n, int) and n < 0 and -n * 10 // 3 > MAX_INT_BITS:
        raise _too_big("round()", -n * 10 // 3)
    return round(x, n)


def _sum(seq: Any, start: Any = 0) -> Any:
    if type(start) not in (int, float, bool):
        # sum(items, ()) or sum(items, '') concatenates: quadratic in the number of items
        raise LimitExceeded("sum start", f"sum() takes a number as its start, not {type(start).__name__}")
    return sum(seq, start)


def safe_builtins() -> dict[str, Any]:
    """The plain functions an expression may call, under their rewritten names, and the guarded
    operations the compiler rewrites size-growing operators into."""

    def _min(*a: Any) -> Any:
        return min(*a) if len(a) > 1 else min(a[0])

    def _max(*a: Any) -> Any:
        return max(*a) if len(a) > 1 else max(a[0])

    return {
        "__builtins__": {},
        "_abs": abs,
        "_round": _round,
        "_int": _int,
        "_float": float,
        "_str": _str,
        "_bool": bool,
        "_len": len,
        "_any": any,
        "_all": all,
        "_min": _min,
        "_max": _max,
        "_sum": _sum,
        "_nan": math.nan,
        "_pow": _pow,
        "_mul": _mul,
        "_add": _add,
        "_mod": _mod,
    }
