"""Message templates of alert/event/webhook actions: `{device}: {value:.1f}% full`.

Templates use `str.format` syntax, which can reach attributes (`{value.__class__}`) and build
huge strings (`{value:>1000000000}`); `check_template` refuses both at compile time, and
`render_template` never fails an action over a format that does not fit the value.
"""

from __future__ import annotations

import re
import string
from typing import Any

from rules.expr import MAX_SEQUENCE, ExprError

_SPEC_RE = re.compile(r"^[<>^=]?[+\- ]?#?0?\d{0,2}[,_]?(\.\d{1,2})?[bdeEfFgGnosxX%]?$")
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


def render_template(template: str, fields: dict[str, Any]) -> str:
    """Fill a checked template; a field whose format does not fit its value is printed plainly."""
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
