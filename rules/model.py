"""The rule format (YAML packs and the JSON API share it), its validation and compilation.

A rule document is validated by pydantic (`Rule`), then every expression and message template in
it is compiled (`compile_rule`). Every problem is collected, each naming the rule id, the field
and — for expressions — the line and column, so `edge rules check` and the validate endpoint
report all of them at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.model import PRIVACY_RANK, Privacy, event_privacy
from edge.units import Duration
from edge.yamlpos import Positions, YamlError
from edge.yamlpos import load as load_yaml
from rules.config import allow_entry_for, webhook_allowed
from rules.expr import Compiled, ExprError, compile_expr
from rules.templates import check_template

RULE_ID_RE = re.compile(r"^[a-z0-9_-]{1,64}$")
PATTERN_RE = re.compile(r"^[a-z0-9_*?\[\]-]+\.[a-z0-9_*?\[\]-]+$")
EVENT_KIND_RE = re.compile(r"^[a-z0-9_*-]+$")
POINT_RE = re.compile(r"^[a-z0-9_-]+\.[a-z0-9_-]+$")
Severity = Literal["debug", "info", "warning", "critical"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Trigger(Strict):
    """One entry of `when:`: a point (pattern), an event kind, a cron schedule, or a dead-man."""

    point: str | None = None
    event: str | None = None
    schedule: str | None = None
    no_data: str | None = None
    for_: Duration | None = Field(None, alias="for")

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [k for k in ("point", "event", "schedule", "no_data") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a trigger is one of: a point pattern, event: KIND, schedule: CRON, no_data: PATTERN"
            )
        if self.point is not None and not PATTERN_RE.match(self.point):
            raise ValueError(f"{self.point!r} is not a point or pattern like 'bins-*.fill_pct'")
        if self.no_data is not None:
            if not PATTERN_RE.match(self.no_data):
                raise ValueError(f"{self.no_data!r} is not a point or pattern like 'meter-*.energy_kwh'")
            if not self.for_:
                raise ValueError("no_data needs `for:` (how long without data), e.g. for: 5m")
        if self.event is not None and not EVENT_KIND_RE.match(self.event):
            raise ValueError(f"{self.event!r} is not an event kind ([a-z0-9_-], * allowed)")
        if self.schedule is not None:
            from rules.cron import Cron

            Cron(self.schedule)  # raises ValueError saying what is wrong
        if self.for_ is not None and self.no_data is None:
            raise ValueError(
                "`for:` inside a trigger belongs to no_data; put the rule's `for:` at the top level"
            )
        return self


class WriteAction(Strict):
    point: str
    value: Any = None
    expr: str | None = None

    @field_validator("point")
    @classmethod
    def _point(cls, v: str) -> str:
        if not POINT_RE.match(v.replace("{device}", "d")):
            raise ValueError(
                f"{v!r} is not a point id like 'gate-north.barrier_open' ('{{device}}.barrier_open' "
                "names the triggering device)"
            )
        return v

    @model_validator(mode="after")
    def _value(self) -> WriteAction:
        if self.expr is None and self.value is None:
            raise ValueError("give `value:` (a literal) or `expr:` (an expression)")
        return self


class MessageAction(Strict):
    message: str = "{rule_name}: {point} = {value}"
    severity: Severity | None = None
    kind: str | None = None  # event actions only
    payload: dict[str, Any] = Field(default_factory=dict)


class WebhookAction(Strict):
    url: str
    timeout: Duration | None = None
    retries: int = Field(3, ge=0, le=10)
    message: str = "{rule_name}: {point} = {value}"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s]+$", v):
            raise ValueError("webhook url must start with http:// or https://")
        try:
            host, _ = webhook_target(v)
        except ValueError as exc:
            raise ValueError(f"webhook url {v!r} is not a URL: {exc}") from None
        if not host:
            raise ValueError(f"webhook url {v!r} names no host")
        return v


def webhook_target(url: str) -> tuple[str, int]:
    """(host, port) a webhook URL connects to, parsed as the HTTP client parses it (yarl), so the
    allow-list judges the destination the post really goes to."""
    from yarl import URL

    u = URL(url)
    return (u.host or "").rstrip(".").lower(), u.port or (443 if u.scheme == "https" else 80)


class SnapshotAction(Strict):
    camera: str


class Action(Strict):
    write: WriteAction | None = None
    set: WriteAction | None = None
    alert: MessageAction | None = None
    event: MessageAction | None = None
    webhook: WebhookAction | None = None
    snapshot: SnapshotAction | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("alert", "event"):
                if isinstance(data.get(key), str):
                    data[key] = {"message": data[key]}
            if isinstance(data.get("webhook"), str):
                data["webhook"] = {"url": data["webhook"]}
            if isinstance(data.get("snapshot"), str):
                data["snapshot"] = {"camera": data["snapshot"]}
        return data

    @model_validator(mode="after")
    def _one(self) -> Action:
        given = [k for k in ACTION_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an action is exactly one of: {', '.join(ACTION_KINDS)}")
        if self.event is not None and not self.event.kind:
            raise ValueError("an event action needs `kind:`")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> Any:
        return getattr(self, self.kind)


ACTION_KINDS = ("write", "set", "alert", "event", "webhook", "snapshot")


class Rule(Strict):
    id: str
    name: str = ""
    description: str = ""
    enabled: bool = True
    when: list[Trigger]
    if_: str | None = Field(None, alias="if")
    for_: Duration | None = Field(None, alias="for")
    clear_if: str | None = None
    notify: Literal["once", "toggle", "repeat", "always"] = "once"
    every: Duration | None = None
    severity: Severity = "warning"
    max_actions_per_minute: int | None = Field(None, ge=1, le=10_000)
    then: list[Action] = Field(default_factory=list)
    else_: list[Action] = Field(default_factory=list, alias="else")

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not RULE_ID_RE.match(v):
            raise ValueError(f"rule id {v!r} must be 1-64 characters of [a-z0-9_-]")
        return v

    @field_validator("if_", "clear_if", mode="before")
    @classmethod
    def _expr_text(cls, v: Any) -> Any:
        return str(v).lower() if isinstance(v, bool) else v  # YAML `if: true` -> "True" below

    @field_validator("when", mode="before")
    @classmethod
    def _when(cls, v: Any) -> Any:
        if isinstance(v, str | dict):
            v = [v]
        if not isinstance(v, list) or not v:
            raise ValueError(
                "`when:` needs at least one trigger: a point pattern, event, schedule or no_data"
            )
        return [{"point": t} if isinstance(t, str) else t for t in v]

    @model_validator(mode="after")
    def _modes(self) -> Rule:
        if self.notify == "repeat" and not self.every:
            raise ValueError("notify: repeat needs `every:` (e.g. every: 10m)")
        return self

    def doc(self) -> dict[str, Any]:
        """The rule as a plain document (what export and the API return)."""
        return self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json") | {
            "id": self.id,
            "when": [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in self.when],
        }


# what an edit may change and keep the rule's state (a pending `for:`, an active alert): how the
# rule is shown and what it does when it fires, not when it fires
PRESENTATION_FIELDS = frozenset({"name", "description", "severity", "max_actions_per_minute", "then", "else"})


def same_logic(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two rule documents (`Rule.doc()` form) decide firing the same way: they differ at
    most in presentation and actions. Any other change (triggers, `if`, `for`, `clear_if`,
    `no_data`, `notify`, `every`, `enabled`) changes the logic."""
    return all(old.get(k) == new.get(k) for k in (old.keys() | new.keys()) - PRESENTATION_FIELDS)


@dataclass
class CompiledRule:
    rule: Rule
    cond: Compiled | None
    clear: Compiled | None
    exprs: dict[str, Compiled] = field(default_factory=dict)  # "then[0]" -> value expression
    #: points the expressions read by name (p(), age(), windows), and whether one computes the
    #: point it reads (`p(device + '.x')`), which may then be any point
    reads: frozenset[str] = frozenset()
    reads_any_point: bool = False


def reads_privacy(compiled: CompiledRule, points: Mapping[str, Any]) -> Privacy:
    """The highest class of the points a rule's expressions read: of each point it names, or of
    every known point when it computes which one. `points` maps ids to objects with `.privacy`
    (PointInfo); a point not in it counts as public."""
    if compiled.reads_any_point:
        infos: Any = points.values()
    else:
        infos = (points[p] for p in compiled.reads if p in points)
    return max((Privacy(i.privacy) for i in infos), key=PRIVACY_RANK.__getitem__, default=Privacy.PUBLIC)


def firing_privacy(
    compiled: CompiledRule, args: tuple[Any, ...], points: Mapping[str, Any], read: Privacy | None = None
) -> Privacy:
    """The class of what a firing read: the record that triggered it (an event's class as the
    sinks judge it, `edge.model.event_privacy`; a reading's, or a dead-man's last value's, its
    point's) and every point its expressions read (`read`, when the caller already has
    `reads_privacy` for these points). A message, a `set:` value or a dry-run line made from them
    is at least that private."""
    payload = args[10]
    if isinstance(payload, dict):  # an event trigger (the engine always passes its payload dict)
        trigger = event_privacy(str(args[7]), payload, points)
    else:
        info = points.get(str(args[2] or ""))
        trigger = Privacy(info.privacy) if info is not None else Privacy.PUBLIC
    if read is None:
        read = reads_privacy(compiled, points)
    return read if PRIVACY_RANK[read] > PRIVACY_RANK[trigger] else trigger


def webhook_problems(rule: Rule, allow: Sequence[str]) -> list[ExprError]:
    """Every webhook of `rule` whose destination the site's `rules.webhook_allow` does not name."""
    problems = []
    for section, actions in (("then", rule.then), ("else", rule.else_)):
        for i, action in enumerate(actions):
            if not isinstance(action.spec, WebhookAction):
                continue
            url = action.spec.url
            host, port = webhook_target(url)
            if webhook_allowed(allow, host, port):
                continue
            entry = allow_entry_for(host, port, 443 if url.lower().startswith("https") else 80)
            problems.append(
                ExprError(
                    f"webhook to {host} is not allowed on this site: add {entry!r} to "
                    "`rules: webhook_allow:` in the site file"
                    + (f" (allowed now: {', '.join(allow)})" if allow else " (it allows no webhook now)"),
                    rule=rule.id,
                    field=f"{section}[{i}].webhook.url",
                )
            )
    return problems


def _fix_bool_expr(text: str | None) -> str | None:
    return {"true": "True", "false": "False"}.get(text, text) if text is not None else None


def compile_rule(rule: Rule) -> CompiledRule:
    """Compile every expression and template of a validated rule; raises RuleErrors with all of them."""
    errors: list[ExprError] = []
    cond = clear = None
    try:
        if rule.if_ is not None:
            cond = compile_expr(_fix_bool_expr(rule.if_), rule=rule.id, field="if")
    except ExprError as exc:
        errors.append(exc)
    try:
        if rule.clear_if is not None:
            clear = compile_expr(_fix_bool_expr(rule.clear_if), rule=rule.id, field="clear_if")
    except ExprError as exc:
        errors.append(exc)
    exprs: dict[str, Compiled] = {}
    for section, actions in (("then", rule.then), ("else", rule.else_)):
        for i, action in enumerate(actions):
            where = f"{section}[{i}].{action.kind}"
            spec = action.spec
            try:
                if isinstance(spec, WriteAction) and spec.expr is not None:
                    exprs[f"{section}[{i}]"] = compile_expr(spec.expr, rule=rule.id, field=f"{where}.expr")
                if isinstance(spec, MessageAction | WebhookAction):
                    check_template(spec.message, rule=rule.id, field=f"{where}.message")
            except ExprError as exc:
                errors.append(exc)
    if errors:
        raise RuleErrors(errors)
    used = [c for c in (cond, clear, *exprs.values()) if c is not None]
    return CompiledRule(
        rule,
        cond,
        clear,
        exprs,
        reads=frozenset(p for c in used for p in c.points),
        reads_any_point=any(c.any_point for c in used),
    )


class RuleErrors(ValueError):
    """Every problem of one rule document (validation and compilation)."""

    def __init__(self, errors: list[ExprError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))

    def as_list(self) -> list[dict[str, Any]]:
        return [e.as_dict() for e in self.errors]


def _field_name(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_rule(doc: Any) -> CompiledRule:
    """Validate and compile one rule document; raises RuleErrors naming every problem."""
    if not isinstance(doc, dict):
        raise RuleErrors([ExprError("a rule must be a mapping with id:, when:, if:, then:")])
    rid = str(doc.get("id", ""))
    try:
        rule = Rule.model_validate(doc)
    except ValidationError as exc:
        errs = []
        for e in exc.errors():
            loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown key {loc[-1]!r}"
            errs.append(ExprError(msg, rule=rid, field=_field_name(loc)))
        raise RuleErrors(errs) from None
    return compile_rule(rule)


@dataclass
class PackEntry:
    index: int
    line: int | None
    doc: dict[str, Any]


def load_pack_text(text: str, file: str = "<pack>") -> tuple[list[PackEntry], Positions]:
    """The rule documents of a YAML pack (`rules: [...]` or a bare list), with their lines."""
    try:
        data, pos = load_yaml(text, file)
    except YamlError as exc:
        raise RulePackError([str(p) for p in exc.problems]) from None
    prefix: tuple[Any, ...] = ()
    if isinstance(data, dict) and "rules" in data:
        data, prefix = data["rules"], ("rules",)
    if not isinstance(data, list):
        raise RulePackError([f"{file}: a rule pack is a list of rules, or a mapping with `rules:`"])
    entries = []
    for i, doc in enumerate(data):
        entries.append(PackEntry(i, pos.line_of((*prefix, i)), doc))
    pos.lines = {k[len(prefix) :]: v for k, v in pos.lines.items() if k[: len(prefix)] == prefix}
    return entries, pos


class RulePackError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def compile_pack(
    text: str, file: str = "<pack>", webhook_allow: Sequence[str] | None = None
) -> list[CompiledRule]:
    """Every rule of a pack, compiled; RulePackError lists every problem as `file:line: ...`.
    With `webhook_allow` (the site's `rules.webhook_allow`), a webhook to a destination it does not
    name is a problem too; None checks no destination (offline tests that post nothing)."""
    entries, pos = load_pack_text(text, file)
    problems: list[str] = []
    out: list[CompiledRule] = []
    seen: dict[str, int] = {}
    for entry in entries:
        try:
            cr = parse_rule(entry.doc)
            if webhook_allow is not None and (refused := webhook_problems(cr.rule, webhook_allow)):
                raise RuleErrors(refused)
        except RuleErrors as exc:
            for e in exc.errors:
                field_path: tuple[Any, ...] = (entry.index, *_split_field(e.field))
                line = pos.line_of(field_path) or entry.line
                if line and e.line > 1:
                    line += e.line - 1
                problems.append(f"{file}:{line}: {e}" if line else f"{file}: {e}")
            continue
        if cr.rule.id in seen:
            problems.append(
                f"{file}:{entry.line}: duplicate rule id {cr.rule.id!r} (also rule #{seen[cr.rule.id] + 1})"
            )
            continue
        seen[cr.rule.id] = entry.index
        out.append(cr)
    if problems:
        raise RulePackError(problems)
    return out


def _split_field(f: str) -> list[str | int]:
    out: list[str | int] = []
    for m in re.finditer(r"([A-Za-z_]+)|\[(\d+)\]", f):
        out.append(m.group(1) if m.group(1) else int(m.group(2)))
    return out


def dump_pack(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"rules": docs}, allow_unicode=True, sort_keys=False)
