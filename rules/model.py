"""The rule format (YAML packs and the JSON API share it), its validation and compilation.

A rule document is validated by pydantic (`Rule`), then every expression and message template in
it is compiled (`compile_rule`). Every problem is collected, each naming the rule id, the field
and — for expressions — the line and column, so `edge rules check` and the validate endpoint
report all of them at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge.model import CONTROL_RE, PRIVACY_RANK, PointType, Privacy, event_privacy, valid_event_kind
from edge.units import Duration
from edge.yamlpos import Positions, YamlError
from edge.yamlpos import load as load_yaml
from rules.config import allow_entry_for, webhook_allowed
from rules.expr import Compiled, ExprError, compile_expr
from rules.templates import check_template

# matched whole (fullmatch): `$` would let a trailing newline through
RULE_ID_RE = re.compile(r"[a-z0-9_-]{1,64}")
PATTERN_RE = re.compile(r"[a-z0-9_*?\[\]-]+\.[a-z0-9_*?\[\]-]+")
EVENT_KIND_RE = re.compile(r"[a-z0-9_*-]+")
POINT_RE = re.compile(r"[a-z0-9_-]+\.[a-z0-9_-]+")
WEBHOOK_URL_RE = re.compile(r"https?://[^\s]+")
Severity = Literal["debug", "info", "warning", "critical"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


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
        if self.point is not None and not PATTERN_RE.fullmatch(self.point):
            raise ValueError(f"{self.point!r} is not a point or pattern like 'bins-*.fill_pct'")
        if self.no_data is not None:
            if not PATTERN_RE.fullmatch(self.no_data):
                raise ValueError(f"{self.no_data!r} is not a point or pattern like 'meter-*.energy_kwh'")
            if not self.for_:
                raise KeyedValueError(
                    "no_data needs `for:` (how long without data), e.g. for: 5m",
                    message_key="msg.rule.no_data_needs_for",
                )
        if self.event is not None and not EVENT_KIND_RE.fullmatch(self.event):
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
        if not POINT_RE.fullmatch(v.replace("{device}", "d")):
            raise ValueError(
                f"{v!r} is not a point id like 'gate-north.barrier_open' ('{{device}}.barrier_open' "
                "names the triggering device)"
            )
        return v

    @model_validator(mode="after")
    def _value(self) -> WriteAction:
        if self.expr is None and self.value is None:
            raise KeyedValueError(
                "give `value:` (a literal) or `expr:` (an expression)",
                message_key="msg.rule.write_needs_value",
            )
        return self


class SetAction(WriteAction):
    """A virtual point's value. `type:` declares the point's type; without it the point takes the
    type of the first value set (or the one it has). Every value is converted to it."""

    type: PointType | None = None


class MessageAction(Strict):
    message: str = "{rule_name}: {point} = {value}"
    severity: Severity | None = None
    kind: str | None = None  # event actions only
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str | None) -> str | None:
        return v if not v else valid_event_kind(v)  # none at all: `Action` says an event needs one


class WebhookAction(Strict):
    url: str
    timeout: Duration | None = None
    retries: int | None = Field(None, ge=0, le=10)  # None: the site's `rules.webhook_retries`
    message: str = "{rule_name}: {point} = {value}"

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not WEBHOOK_URL_RE.fullmatch(v):
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
    set: SetAction | None = None
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
            raise KeyedValueError("an event action needs `kind:`", message_key="msg.rule.event_needs_kind")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ACTION_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> Any:
        return getattr(self, self.kind)


ACTION_KINDS = ("write", "set", "alert", "event", "webhook", "snapshot")


@dataclass(frozen=True)
class PackPlace:
    """Where a rule sat in the pack it was imported from, so an export writes the pack back as its
    author laid it out: the rule's own lines (its leading comments included), the columns of its
    `-` and of its keys, and on the first and last rule the text before and after the list."""

    file: str
    index: int
    chunk: str
    dash: int
    indent: int
    header: str = ""
    trailer: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | None) -> PackPlace | None:
        return cls(**json.loads(text)) if text else None


class RuleDoc(dict[str, Any]):
    """A rule document with the YAML text its author wrote (`source`; None when it came as JSON)
    and its place in the pack it came from. It is a plain dict to everything that reads the rule."""

    def __init__(
        self, data: Mapping[str, Any], source: str | None = None, place: PackPlace | None = None
    ) -> None:
        super().__init__(data)
        self.source = source
        self.place = place


class Rule(Strict):
    _source: str | None = PrivateAttr(None)
    _place: PackPlace | None = PrivateAttr(None)

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
        if not RULE_ID_RE.fullmatch(v):
            raise KeyedValueError(
                f"rule id {v!r} must be 1-64 characters of [a-z0-9_-]",
                message_key="msg.rule.bad_id",
                id=v[:80],
            )
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
            raise KeyedValueError(
                "notify: repeat needs `every:` (e.g. every: 10m)", message_key="msg.rule.repeat_needs_every"
            )
        return self

    def doc(self) -> RuleDoc:
        """The rule as a plain document (what export and the API return), with the text it was
        written as, if any."""
        data = self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True, mode="json") | {
            "id": self.id,
            "when": [t.model_dump(by_alias=True, exclude_none=True, mode="json") for t in self.when],
        }
        return RuleDoc(data, self._source, self._place)


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


def set_target_refused(point: str, device: str) -> str:
    """Why a `set:` may not write `point`, a point of device `device` (one the site configures, or
    whose driver registered the point)."""
    return (
        f"{point} is a point of device {device}, read by its driver: `set:` writes only virtual "
        "points of the rules (a point no device has, such as site.total_power_kw); its values "
        "would pass for the device's readings. Use `write:` to command a writable device point"
    )


def configured_device(point: str, devices: Collection[str]) -> str | None:
    """The device of `point` when the site configures it (`devices`: their ids), whether or not
    its driver registered the point yet: a driver that learns its points from its first packet
    (a BLE default map) has none before the device reports."""
    device = point.partition(".")[0]
    return device if device in devices else None


def set_target_problems(rule: Rule, device_of: Callable[[str], str | None]) -> list[ExprError]:
    """Every `set:` of `rule` whose target is a device's point: `device_of(point)` gives that
    device, or None for a point the rules may set. A target naming `{device}` is known only when
    it fires, and checked then."""
    problems = []
    for section, actions in (("then", rule.then), ("else", rule.else_)):
        for i, action in enumerate(actions):
            if action.set is None or "{device}" in action.set.point:
                continue
            device = device_of(action.set.point)
            if device is not None:
                problems.append(
                    ExprError(
                        set_target_refused(action.set.point, device),
                        rule=rule.id,
                        field=f"{section}[{i}].set.point",
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


# A rule's size: compiling costs about 4 microseconds per character of expression, so these keep
# the largest rule's compile near a tenth of a second. The shipped packs' largest rule has two
# actions and 751 characters of expressions.
MAX_TRIGGERS = 64  # entries of one rule's `when:` (each is matched against every record)
MAX_ACTIONS = 64  # actions of one rule, `then:` and `else:` together
MAX_EXPRESSION_TEXT = 32_000  # characters of one rule's expressions: if, clear_if, every `expr:`


def _too_many_parts(doc: Mapping[str, Any], rid: str) -> ExprError | None:
    when = doc.get("when")
    if isinstance(when, list) and len(when) > MAX_TRIGGERS:
        return KeyedError(
            f"a rule has at most {MAX_TRIGGERS} triggers in when: ({len(when)} given)",
            message_key="msg.rule.too_many_triggers",
            args={"max": MAX_TRIGGERS, "given": len(when)},
            rule=rid,
            field="when",
        )
    count = sum(len(v) for k in ("then", "else") if isinstance(v := doc.get(k), list))
    if count <= MAX_ACTIONS:
        return None
    return KeyedError(
        f"a rule has at most {MAX_ACTIONS} actions in then: and else: together ({count} given)",
        message_key="msg.rule.too_many_actions",
        args={"max": MAX_ACTIONS, "given": count},
        rule=rid,
        field="then",
    )


def _too_much_expression(rule: Rule) -> ExprError | None:
    texts = [rule.if_, rule.clear_if]
    texts += [a.spec.expr for a in (*rule.then, *rule.else_) if isinstance(a.spec, WriteAction)]
    size = sum(len(t) for t in texts if t)
    if size <= MAX_EXPRESSION_TEXT:
        return None
    return KeyedError(
        f"a rule's expressions (if, clear_if and every expr:) are at most {MAX_EXPRESSION_TEXT} "
        f"characters together ({size} given)",
        message_key="msg.rule.expressions_too_long",
        args={"max": MAX_EXPRESSION_TEXT, "given": size},
        rule=rule.id,
    )


def parse_rule(doc: Any) -> CompiledRule:
    """Validate and compile one rule document; raises RuleErrors naming every problem. A rule over
    MAX_TRIGGERS, MAX_ACTIONS or MAX_EXPRESSION_TEXT is refused before anything of it is compiled."""
    if not isinstance(doc, dict):
        raise RuleErrors([KeyedError(NOT_A_RULE, message_key="msg.rule.not_a_rule", args={})])
    rid = str(doc.get("id", ""))
    if CONTROL_RE.search(rid):  # the id is refused; the errors name it escaped, one line each
        rid = repr(rid)[1:-1]
    if (too_many := _too_many_parts(doc, rid)) is not None:
        raise RuleErrors([too_many])
    try:
        rule = Rule.model_validate(doc)
    except ValidationError as exc:
        raise RuleErrors(_validation_errors(exc, rid)) from None
    if (too_long := _too_much_expression(rule)) is not None:
        raise RuleErrors([too_long])
    if isinstance(doc, RuleDoc):
        rule._source, rule._place = doc.source, doc.place
    return compile_rule(rule)


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


# the keys each mapping of a rule may hold, by the kind of its last named parent
_KEYS: dict[str, list[str]] = {
    "": _keys_of(Rule),
    "when": _keys_of(Trigger),
    "then": _keys_of(Action),
    "else": _keys_of(Action),
    "write": _keys_of(WriteAction),
    "set": _keys_of(SetAction),
    "alert": _keys_of(MessageAction),
    "event": _keys_of(MessageAction),
    "webhook": _keys_of(WebhookAction),
    "snapshot": _keys_of(SnapshotAction),
}


def _known_keys(parent: tuple[Any, ...]) -> list[str]:
    named = [p for p in parent if isinstance(p, str)]
    return _KEYS.get(named[-1] if named else "", [])


class KeyedValueError(ValueError):
    """A validator's refusal with the message key and arguments a user interface words it by
    (pydantic hands it on as a `value_error`; `_validation_errors` keeps its key)."""

    def __init__(self, message: str, *, message_key: str, **args: Any) -> None:
        super().__init__(message)
        self.key = message_key
        self.message_args = args


NOT_A_RULE = "a rule must be a mapping with id:, when:, if:, then:"


class KeyedError(ExprError):
    """A validation error with the message key and arguments a user interface translates it by."""

    def __init__(self, message: str, *, message_key: str, args: dict[str, Any], **where: Any) -> None:
        super().__init__(message, **where)
        self.key = message_key
        self.message_args = args


def _validation_errors(exc: ValidationError, rid: str) -> list[ExprError]:
    """pydantic's errors, located; an unknown key says which known key it looks like, and the
    `Field required` that a misspelt key causes for the key it meant is left out."""
    raw = []
    for e in exc.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        raw.append((e["type"], loc, e["msg"].removeprefix("Value error, "), dict(e.get("ctx") or {})))
    meant: set[tuple[Any, ...]] = set()
    errs: list[ExprError] = []
    for kind, loc, _, _ in raw:
        if kind != "extra_forbidden":
            continue
        unknown = str(loc[-1])
        import difflib  # here: only a rule with a typo needs it

        guess = difflib.get_close_matches(unknown, _known_keys(loc[:-1]), n=1, cutoff=0.6)
        if guess:
            meant.add((*loc[:-1], guess[0]))
            text = f"unknown key {unknown!r} — did you mean {guess[0]!r}?"
            errs.append(
                KeyedError(
                    text,
                    message_key="msg.rule.unknown_key_did_you_mean",
                    args={"key": unknown, "suggestion": guess[0]},
                    rule=rid,
                    field=_field_name(loc),
                )
            )
        else:
            known = ", ".join(_known_keys(loc[:-1]))
            text = f"unknown key {unknown!r}; accepted keys: {known}"
            errs.append(
                KeyedError(
                    text,
                    message_key="msg.rule.unknown_key",
                    args={"key": unknown, "known": known},
                    rule=rid,
                    field=_field_name(loc),
                )
            )
    for kind, loc, msg, ctx in raw:
        if kind == "extra_forbidden" or (kind == "missing" and loc in meant):
            continue
        if kind == "missing":
            msg, ctx = "required, missing", {"key": str(loc[-1])}
        key = PYDANTIC_KEYS.get(kind)
        if kind == "value_error" and isinstance(keyed := ctx.get("error"), KeyedValueError):
            errs.append(
                KeyedError(
                    msg, message_key=keyed.key, args=keyed.message_args, rule=rid, field=_field_name(loc)
                )
            )
            continue
        if key is None:
            errs.append(ExprError(msg, rule=rid, field=_field_name(loc)))
            continue
        args = {k: v if isinstance(v, int | float) else str(v) for k, v in ctx.items() if k != "error"}
        errs.append(KeyedError(msg, message_key=key, args=args, rule=rid, field=_field_name(loc)))
    return errs


# pydantic's error types a rule meets, by the message key the UI words them with
PYDANTIC_KEYS = {
    "missing": "msg.rule.missing_key",
    "literal_error": "msg.rule.one_of",
    "greater_than_equal": "msg.rule.at_least",
    "less_than_equal": "msg.rule.at_most",
    "int_parsing": "msg.rule.not_integer",
    "int_type": "msg.rule.not_integer",
    "int_from_float": "msg.rule.not_integer",
    "bool_parsing": "msg.rule.not_boolean",
    "bool_type": "msg.rule.not_boolean",
    "string_type": "msg.rule.not_text",
    "list_type": "msg.rule.not_list",
    "dict_type": "msg.rule.not_mapping",
    "model_type": "msg.rule.not_mapping",
    "model_attributes_type": "msg.rule.not_mapping",
}


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
    places = pack_places(text, file, [e.line for e in entries])
    problems: list[str] = []
    out: list[CompiledRule] = []
    seen: dict[str, int] = {}
    for entry in entries:
        try:
            cr = parse_rule(_with_text(entry.doc, places[entry.index] if places else None))
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


# ------------------------------------------------------------ the author's text
# A rule keeps the YAML its author wrote: the editor shows it, an edit replaces it, and an export
# writes each rule back into its pack at its place, so comments, key order and shorthand survive.

_DASH = re.compile(r"^( *)-( |$|\n|\r)")
MAX_RULE_TEXT_BYTES = 64 * 1024  # one rule's YAML; real rules are a few hundred bytes


def _blank_or_comment(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def pack_places(text: str, file: str, item_lines: Sequence[int | None]) -> list[PackPlace] | None:
    """Each rule's place in a pack: its lines from the comments above it to the next rule's, the
    columns of its `-` and its keys; the text before the first and after the last rule go on those
    two. None when the layout is not a plain block list (a flow list `[...]`, say): those rules
    are then written out fresh."""
    lines = text.splitlines(keepends=True)
    if not item_lines or any(n is None for n in item_lines):
        return None
    dashes: list[tuple[int, int, int]] = []  # (row of the "-", its column, column of the keys)
    for n in item_lines:
        row = int(n or 1) - 1
        while row >= 0 and not _DASH.match(lines[row]):
            row -= 1
        if row < 0 or (dashes and row <= dashes[-1][0]):
            return None
        dash = _indent_of(lines[row])
        rest = lines[row][dash + 1 :]
        if rest.strip() and not rest.strip().startswith("#"):
            indent = dash + 1 + _indent_of(rest)
        else:  # "-" alone on its line: the keys start below
            indent = _indent_of(lines[int(n or 1) - 1])
        dashes.append((row, dash, indent))
    starts = []
    for k, (row, _, _) in enumerate(dashes):
        floor = dashes[k - 1][0] + 1 if k else 0
        while row > floor and _blank_or_comment(lines[row - 1]):
            row -= 1
        starts.append(row)
    last_row, last_dash, last_indent = dashes[-1]
    end = len(lines)
    for row in range(last_row + 1, len(lines)):
        line = lines[row]
        if _blank_or_comment(line):
            continue
        if _indent_of(line) < last_indent and not (_indent_of(line) == last_dash and _DASH.match(line)):
            end = row
            while end > last_row + 1 and _blank_or_comment(lines[end - 1]):
                end -= 1
            break
    places = []
    for k, (_, dash, indent) in enumerate(dashes):
        stop = starts[k + 1] if k + 1 < len(dashes) else end
        places.append(
            PackPlace(
                file,
                k,
                "".join(lines[starts[k] : stop]),
                dash,
                indent,
                header="".join(lines[: starts[0]]) if k == 0 else "",
                trailer="".join(lines[end:]) if k == len(dashes) - 1 else "",
            )
        )
    return places


def _standalone_lines(place: PackPlace) -> list[str]:
    """The rule's lines in its pack, unindented into a YAML document of its own, one for one."""
    out = []
    seen_dash = False
    for line in place.chunk.splitlines(keepends=True):
        ending = line[len(line.rstrip("\r\n")) :]
        if not seen_dash and _DASH.match(line) and _indent_of(line) == place.dash:
            seen_dash = True
            rest = line[place.dash + 1 :]
            if not rest.strip():
                out.append(ending)
            elif rest.strip().startswith("#"):
                out.append(rest.lstrip(" "))
            else:
                out.append(line[place.indent :])
            continue
        if not line.strip():
            out.append(ending)
        elif _indent_of(line) >= place.indent:
            out.append(line[place.indent :])
        else:
            out.append(line.lstrip(" "))
    return out


def standalone_text(place: PackPlace) -> str:
    return "".join(_standalone_lines(place))


def _with_text(doc: Any, place: PackPlace | None) -> Any:
    """A pack's rule document with its own text, when that text reads back as the same rule."""
    if place is None or not isinstance(doc, dict):
        return doc
    text = standalone_text(place)
    try:
        same = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) == doc
    except yaml.YAMLError:
        same = False
    return RuleDoc(doc, text if same else None, place)


def rule_text(doc: Mapping[str, Any]) -> str:
    """The YAML the rule editor shows: the author's text, or the document written out in its
    fields' order for a rule that came as JSON."""
    source = getattr(doc, "source", None)
    if source is not None:
        return str(source)
    # rules stored before their text was kept have their keys sorted: `when` would come last
    order = {key: i for i, key in enumerate(_keys_of(Rule))}
    ordered = dict(sorted(doc.items(), key=lambda kv: order.get(kv[0], len(order))))
    return yaml.dump(ordered, Dumper=_IndentedDumper, allow_unicode=True, sort_keys=False, width=100)


class _IndentedDumper(yaml.SafeDumper):
    """Lists indented under their key, as rules are written by hand (and in the packs)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        return super().increase_indent(flow, False)


def load_rule_text(text: str) -> RuleDoc:
    """One rule's YAML text as a document that keeps that text; RuleErrors naming the line."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_RULE_TEXT_BYTES:
        raise RuleErrors(
            [
                KeyedError(
                    f"a rule's YAML is at most {MAX_RULE_TEXT_BYTES} bytes ({size} given)",
                    message_key="msg.rule.text_too_large",
                    args={"max": MAX_RULE_TEXT_BYTES, "size": size},
                )
            ]
        )
    try:
        data, _ = load_yaml(text, "rule", max_nodes=20_000)
    except YamlError as exc:
        first = exc.problems[0]
        problem = first.message.removeprefix("YAML syntax error: ")
        raise RuleErrors(
            [
                KeyedError(
                    problem,
                    message_key="msg.yaml.syntax",
                    args={"problem": problem},
                    line=first.line or 1,
                    column=first.column or 1,
                )
            ]
        ) from None
    if not isinstance(data, dict):
        raise RuleErrors([KeyedError(NOT_A_RULE, message_key="msg.rule.not_a_rule", args={})])
    return RuleDoc(data, text)


_TOP_KEY = re.compile(r"""^(?:"([^"]+)"|'([^']+)'|([^\s#'"{\[][^:#]*?))\s*:(?:\s|$)""")


def edited_text(source: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """The author's text with the top-level keys whose value changed between the documents `old`
    and `new` (`Rule.doc()` form) written anew, every other line as it was: how a change made
    without the text (enabling, a JSON client) keeps the comments and shorthand. None when the
    text is not a block mapping whose keys start their lines."""
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    blocks: dict[str, tuple[int, int]] = {}  # key -> (first row, row after its last)
    current: tuple[str, int] | None = None
    for row, line in enumerate([*lines, "#end\n"]):
        if not line.strip() or line[0] == " ":
            continue
        if current is not None:
            blocks[current[0]] = (current[1], row)
            current = None
        if line.startswith("#") or row == len(lines):
            continue
        m = _TOP_KEY.match(line)
        if m is None:
            return None
        current = (next(g for g in m.groups() if g is not None).strip(), row)
    defaults = {f.alias or n: f.default for n, f in Rule.model_fields.items() if not f.is_required()}
    edits: list[tuple[int, int, list[str]]] = []
    for key in old.keys() | new.keys():
        if old.get(key) == new.get(key):
            continue
        if key in new:
            value = new[key]
        elif key in blocks and isinstance(defaults.get(key), str | bool | int):
            value = defaults[key]
        else:
            if key in blocks:
                edits.append((*blocks[key], []))
            continue
        dumped = yaml.safe_dump({key: value}, allow_unicode=True, sort_keys=False, width=4096)
        first, after = blocks.get(key, (len(lines), len(lines)))
        if key in blocks:  # a block's trailing blank lines separate it from the next: keep them
            while after > first + 1 and not lines[after - 1].strip():
                after -= 1
        edits.append((first, after, dumped.splitlines(keepends=True)))
    for first, after, fresh in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[first:after] = fresh
    return "".join(lines)


def _pack_lines(place: PackPlace, source: str, dash: int) -> list[str]:
    """A rule as lines of a pack whose items start at column `dash`: the lines it had in its pack
    where its text still has them, the others indented like them."""
    new = source.splitlines(keepends=True)
    if new and not new[-1].endswith("\n"):
        new[-1] += "\n"
    chunk = place.chunk.splitlines(keepends=True)
    if chunk and not chunk[-1].endswith("\n"):
        chunk[-1] += "\n"
    orig = _standalone_lines(place)
    out: list[str] = []
    if new == orig:
        out = chunk
    else:
        import difflib  # here: only an edit of a rule's YAML needs it

        dash_row = next(
            (i for i, line in enumerate(chunk) if _DASH.match(line) and _indent_of(line) == place.dash), -1
        )
        have_dash = False
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, orig, new, autojunk=False).get_opcodes():
            if tag == "equal":
                for i in range(i1, i2):
                    if i == dash_row and have_dash:  # a key inserted above took the "-"
                        out.append(" " * place.indent + orig[i])
                        continue
                    have_dash = have_dash or i == dash_row
                    out.append(chunk[i])
                continue
            for line in new[j1:j2]:
                if not have_dash and not _blank_or_comment(line):
                    out.append(" " * place.dash + "-" + " " * (place.indent - place.dash - 1) + line)
                    have_dash = True
                else:
                    out.append(line if not line.strip() else " " * place.indent + line)
    shift = dash - place.dash
    if shift > 0:
        out = [" " * shift + line if line.strip() else line for line in out]
    elif shift < 0:
        out = [line[-shift:] if line[:-shift].strip() == "" else line for line in out]
    return out


def _fresh_lines(source: str, dash: int) -> list[str]:
    out = []
    have_dash = False
    for line in source.splitlines(keepends=True):
        if not line.endswith("\n"):
            line += "\n"
        if not have_dash and not _blank_or_comment(line):
            out.append(" " * dash + "- " + line)
            have_dash = True
        else:
            out.append(line if not line.strip() else " " * (dash + 2) + line)
    return out


def dump_pack(docs: Sequence[Mapping[str, Any]]) -> str:
    """The rules as one pack: rules imported from a pack in their pack's order, each with the text
    and place it had there (changed lines only rewritten), the others after them, written out
    fresh. A pack imported, untouched and exported comes back byte for byte."""

    def order(doc: Mapping[str, Any]) -> tuple[int, str, int, str]:
        place = getattr(doc, "place", None)
        return (0, place.file, place.index, "") if place else (1, "", 0, str(doc.get("id")))

    docs = sorted(docs, key=order)
    first = getattr(docs[0], "place", None) if docs else None
    dash = first.dash if first else 0
    head = first.header if first and first.header else "rules:\n" if docs else "rules: []\n"
    lines = [head if head.endswith("\n") else head + "\n"]
    for doc in docs:
        place, source = getattr(doc, "place", None), getattr(doc, "source", None)
        if place is not None and source is not None:
            lines += _pack_lines(place, source, dash)
        else:  # no text of its own (a rule whose pack lines do not stand alone): written fresh
            lines += _fresh_lines(rule_text(doc), dash)
    last = getattr(docs[-1], "place", None) if docs else None
    if last is not None and last.trailer:
        lines.append(last.trailer)
    return "".join(lines)
