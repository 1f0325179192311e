"""Message templates of alert/event/webhook actions: `{device}: {value:.1f}% full`.

Templates use `str.format` syntax, which can reach attributes (`{value.__class__}`) and build
huge strings (`{value:>1000000000}`); `check_template` refuses both at compile time, and
`render_template` never fails an action over a format that does not fit the value. What the fields
hold is only known when a message is rendered (a template `{payload}{payload}…` quoting a large
payload a thousand times): the rendered size is estimated from the fields first, and a message
that would pass MAX_MESSAGE characters raises `LimitExceeded` before anything is formatted.
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any

from rules.expr import ExprError
from rules.guards import MAX_INT_BITS, MAX_SEQUENCE, LimitExceeded, value_size

MAX_MESSAGE = MAX_SEQUENCE  # characters of one rendered message
_SPEC_RE = re.compile(r"^[<>^=]?[+\- ]?#?0?\d{0,2}[,_]?(\.\d{1,2})?[bdeEfFgGnosxX%]?\Z")
TEMPLATE_FIELDS = frozenset(
    {
        "value",
        "prev",
        "point",
        "device",
        "name",
        "ts",
        "time",
        "rule",
        "rule_name",
        "quality",
        "kind",
        "source",
        "severity",
        "payload",
        "state",
    }
)


def check_template(template: str, *, rule: str = "", field: str = "message") -> None:
    """Refuse templates that could reach attributes or build huge strings (`{value.__class__}`)."""
    if len(template) > MAX_SEQUENCE:
        raise ExprError(
            f"the template is too long; at most {MAX_SEQUENCE} characters", rule=rule, field=field
        )
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ExprError(f"bad template: {exc}", rule=rule, field=field) from None
    col = 1
    for literal, fname, spec, conv in parts:
        col += len(literal)
        if fname is None:
            continue
        base, _, key = fname.partition("[")
        if base not in TEMPLATE_FIELDS or "." in fname or (key and not re.fullmatch(r"[A-Za-z0-9_]+\]", key)):
            raise ExprError(
                f"unknown template field {{{fname}}}; fields: {', '.join(sorted(TEMPLATE_FIELDS))} "
                "(and payload[key])",
                rule=rule,
                field=field,
                column=col,
            )
        if spec and ("{" in spec or not _SPEC_RE.match(spec)):
            raise ExprError(
                f"format spec {spec!r} is not accepted (e.g. .1f, >8, d)", rule=rule, field=field, column=col
            )
        if conv not in (None, "r", "s"):
            raise ExprError(f"conversion !{conv} is not accepted", rule=rule, field=field, column=col)
        col += len(fname) + 2 + (len(spec) + 1 if spec else 0)


@functools.lru_cache(maxsize=1024)
def _fields(template: str) -> tuple[int, tuple[tuple[str, str], ...]]:
    """(characters of literal text and widths, (field, payload key) of each replacement field)."""
    fixed, fields = 0, []
    for literal, fname, spec, _conv in string.Formatter().parse(template):
        fixed += len(literal)
        if fname is not None:
            base, _, key = fname.partition("[")
            fields.append((base, key.rstrip("]")))
            fixed += int(re.sub(r"\D", "", (spec or "").partition(".")[0]) or 0)  # a checked width: <= 99
    return fixed, tuple(fields)


def _check_size(template: str, fields: dict[str, Any]) -> None:
    size, wanted = _fields(template)
    for base, key in wanted:
        v = fields.get(base)
        if key and isinstance(v, dict):
            v = v.get(key)
        if isinstance(v, int) and v.bit_length() > MAX_INT_BITS:
            raise LimitExceeded(
                "integer size",
                f"the message quotes a number of {v.bit_length()} bits; the limit is {MAX_INT_BITS}",
            )
        size += value_size(v, MAX_MESSAGE)
        if size > MAX_MESSAGE:
            raise LimitExceeded(
                "message size", f"the message would be over {size} characters; the limit is {MAX_MESSAGE}"
            )


def render_template(template: str, fields: dict[str, Any]) -> str:
    """Fill a checked template; a field whose format does not fit its value is printed plainly.
    Raises LimitExceeded when the message would be longer than MAX_MESSAGE characters."""
    _check_size(template, fields)
    try:
        return template.format_map(fields)
    except (ValueError, TypeError, KeyError, IndexError):
        plain = {k: ("" if v is None else v) for k, v in fields.items()}
        out = []
        for literal, fname, _spec, _conv in string.Formatter().parse(template):
            out.append(literal)
            if fname is not None:
                base, _, key = fname.partition("[")
                v = plain.get(base, "")
                if key and isinstance(v, dict):
                    v = v.get(key.rstrip("]"), "")
                out.append(str(v))
        return "".join(out)
