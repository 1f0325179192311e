"""What a rule names that the site does not have, said when the rule is validated or saved on a
running gateway: warnings, not refusals (a device may register its points only at its first
packet, a virtual point only when a rule first sets it).

A trigger pattern that matches no point leaves the rule ok and silent for good; a `p('…')` of a
misspelt point gives None to a comparison that fails without naming it; a `write:` to a point
that is not writable fails every time it fires. Each is named with the field it sits in, as a
compile error is (`ExprError.as_dict`), so the editor places it on its line.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Iterable, Mapping

from edge.model import PointInfo
from rules.expr import ExprError
from rules.model import CompiledRule, KeyedError, Rule, SetAction, WriteAction

#: how a warning ends when the point may still come: which devices register their points late
NOT_YET = "(a device that registers its points at its first packet has none before it reports)"


def set_targets(rules: Iterable[Rule]) -> set[str]:
    """The virtual points `rules` set by name (a `{device}` target is known only when it fires)."""
    return {
        a.set.point
        for rule in rules
        for a in (*rule.then, *rule.else_)
        if a.set is not None and "{device}" not in a.set.point
    }


def rule_warnings(
    compiled: CompiledRule, points: Mapping[str, PointInfo], virtual: Collection[str]
) -> list[ExprError]:
    """The points `compiled` names that `points` (the hub's) and `virtual` (the points rules set)
    do not have, and its writes to a point that is not writable."""
    rule = compiled.rule
    known = set(points) | set(virtual) | set_targets([rule])
    out: list[ExprError] = []
    for i, trigger in enumerate(rule.when):
        for kind, pattern in (("point", trigger.point), ("no_data", trigger.no_data)):
            if pattern is not None and not any(fnmatch.fnmatchcase(p, pattern) for p in known):
                out.append(
                    KeyedError(
                        f"no point of this site matches {pattern}: the rule is never evaluated "
                        f"until one does {NOT_YET}",
                        message_key="msg.rule.warn_no_point_matches",
                        args={"pattern": pattern},
                        rule=rule.id,
                        field=f"when[{i}].{kind}",
                    )
                )
    reading = [("if", compiled.cond), ("clear_if", compiled.clear)]
    reading += [(f"{where}.{_kind(rule, where)}.expr", expr) for where, expr in compiled.exprs.items()]
    for field, expr in reading:
        for point in sorted(expr.points if expr is not None else ()):
            if point not in known:
                out.append(
                    KeyedError(
                        f"{point} is no point of this site: p() of it fails naming it, age() of "
                        f"it is inf and its windows stay empty {NOT_YET}",
                        message_key="msg.rule.warn_unknown_point",
                        args={"point": point},
                        rule=rule.id,
                        field=field,
                    )
                )
    for section, actions in (("then", rule.then), ("else", rule.else_)):
        for i, action in enumerate(actions):
            spec = action.spec
            if not isinstance(spec, WriteAction) or isinstance(spec, SetAction) or "{device}" in spec.point:
                continue
            info = points.get(spec.point)
            if info is not None and info.writable:
                continue
            why = "is no point of this site" if info is None else "is not writable"
            out.append(
                KeyedError(
                    f"{spec.point} {why}: the write fails each time the rule fires "
                    "(rule_action_failed); write a point the site file declares `writable: true`",
                    message_key="msg.rule.warn_write_unknown"
                    if info is None
                    else "msg.rule.warn_not_writable",
                    args={"point": spec.point},
                    rule=rule.id,
                    field=f"{section}[{i}].write.point",
                )
            )
    return out


def _kind(rule: Rule, where: str) -> str:
    """The action kind at `where` ("then[0]"): the field of its expression is `then[0].write.expr`."""
    section, _, rest = where.partition("[")
    actions = rule.then if section == "then" else rule.else_
    return actions[int(rest.rstrip("]"))].kind
