"""One rule bound to an engine (`RuleRuntime`), its per-key state (`KeyState`) and what the
engine reports when a key changes (`Firing`)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rules.cron import Cron
from rules.expr import ARGS
from rules.model import CompiledRule, MessageAction, Rule, WebhookAction
from rules.templates import render_template

TS = ARGS.index("ts")
Args = tuple[Any, ...]


@dataclass(slots=True)
class KeyState:
    phase: str = "ok"  # ok | pending | active
    since: float | None = None  # pending since / active since
    last_fired: float | None = None
    last_notified: float | None = None
    args: Args | None = None  # the context of the last evaluation (for timer re-evaluation)


@dataclass(slots=True)
class Firing:
    rule: RuleRuntime
    key: str
    kind: str  # fired | cleared | repeat | error
    ts: float
    args: Args
    error: str = ""

    @property
    def message(self) -> str:
        if self.kind == "error":
            return self.error
        return self.rule.message(self.args, "cleared" if self.kind == "cleared" else "fired")


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(pattern))


class RuleRuntime:
    """One compiled rule, bound to an engine's expression environment `env` (its windows, latest
    values and clock functions) and its timezone `tz`, with its per-key states."""

    def __init__(self, compiled: CompiledRule, env: dict[str, Any], tz: dt.tzinfo) -> None:
        rule = compiled.rule
        self.compiled = compiled
        self.rule: Rule = rule
        self.id = rule.id
        self.cond: Callable[..., Any] | None = compiled.cond.bind(env) if compiled.cond else None
        self.clear: Callable[..., Any] | None = compiled.clear.bind(env) if compiled.clear else None
        self.values = {k: c.bind(env) for k, c in compiled.exprs.items()}
        self.for_s = rule.for_ or 0.0
        self.every = rule.every or 0.0
        self.always = rule.notify == "always"
        # only keys that are pending or active: "not in states" is the hot path's cheap test
        self.states: dict[str, KeyState] = {}
        self.last_fired: float | None = None
        self.error = ""
        self.error_ts: float | None = None
        self.evaluations = 0
        self.tz = tz
        self.points = [_regex(t.point) for t in rule.when if t.point]
        self.events = [_regex(t.event) for t in rule.when if t.event]
        self.no_data = [(_regex(t.no_data), float(t.for_ or 0)) for t in rule.when if t.no_data]
        self.schedules = [Cron(t.schedule) for t in rule.when if t.schedule]
        # schedule timers carry this token as their key: timers queued for an earlier version of
        # the rule (replaced with a reset) are then recognised as stale and dropped
        self.schedule_token = ""
        self.first_message = next(
            (a.spec.message for a in rule.then if isinstance(a.spec, MessageAction | WebhookAction)), None
        )

    def state(self, key: str) -> KeyState:
        st = self.states.get(key)
        if st is None:
            st = self.states[key] = KeyState()
        return st

    @property
    def summary(self) -> str:
        if not self.rule.enabled:
            return "disabled"
        if self.error:
            return "error"
        phases = {s.phase for s in self.states.values()}
        return "active" if "active" in phases else "pending" if "pending" in phases else "ok"

    def fields(self, args: Args, state: str) -> dict[str, Any]:
        f = dict(zip(ARGS, args, strict=True))
        f.update(
            rule=self.id,
            rule_name=self.rule.name or self.id,
            state=state,
            time=dt.datetime.fromtimestamp(args[TS] or 0, self.tz).strftime("%Y-%m-%d %H:%M:%S"),
        )
        return f

    def message(self, args: Args, state: str, template: str | None = None) -> str:
        template = template or self.first_message
        f = self.fields(args, state)
        text = render_template(template, f) if template else f"{f['rule_name']} {state}"
        return text if state == "fired" or template is None else f"{text} ({state})"
