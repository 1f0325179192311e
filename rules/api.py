"""The rules HTTP API: list, get, create, update, enable/disable, delete, validate, dry-run,
versions and restore, YAML import/export. Reading needs `read`; changing, validating and dry runs
need `rules`. Every change goes through `RulesComponent`, which validates first and records the
audit trail; a webhook to a destination the site's `rules.webhook_allow` does not name is refused
there (422), before anything is stored; validate checks the same here.

A dry run's firings quote journaled records, so each is shown only up to the caller's privacy
class (`edge.api.privacy`): above it, message, key and point are withheld and the firing says
`redacted` and its class, as the UI does for events.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api import privacy
from edge.api.auth import Principal, require
from edge.api.keys import get_runtime
from edge.api.params import path_int
from edge.api.problem import Problem, json_response, read_body, read_json
from edge.model import PRIVACY_RANK, Privacy
from rules.component import RulesComponent
from rules.model import (
    MAX_RULE_TEXT_BYTES,
    CompiledRule,
    RuleErrors,
    RulePackError,
    compile_pack,
    load_rule_text,
    parse_rule,
    reads_privacy,
    rule_text,
    webhook_problems,
)

if TYPE_CHECKING:
    from edge.runtime import Runtime

BASE = "/api/v1/rules"
MAX_DRY_RUN_HOURS = 24 * 31
MAX_PACK_BYTES = 1024 * 1024
MAX_VERSION = 2**62


def _component(request: web.Request) -> RulesComponent:
    comp = get_runtime(request).component(RulesComponent)
    if comp is None:
        raise Problem(
            503,
            "Rules engine not running",
            "the site has `rules: {enabled: false}`",
            message_key="msg.rules.engine_off",
        )
    return comp


def _invalid(exc: RuleErrors) -> Problem:
    errors = []
    for e in exc.errors:
        item = e.as_dict()
        # the UI words the message in the reader's language from the key; `message` is English
        item["message_key"] = getattr(e, "key", None)
        item["args"] = getattr(e, "message_args", None) if item["message_key"] else None
        errors.append(item)
    first = exc.errors[0] if exc.errors else None
    return Problem(
        422,
        "Invalid rule",
        "; ".join(str(e) for e in exc.errors),
        errors=errors,
        message_key="msg.rule.invalid",
        args={"count": len(errors), "first": first.message if first else ""},
    )


YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


async def _rule_body(request: web.Request) -> Any:
    """The rule a create or update sends: a JSON document, or its YAML text (the editor sends
    what the author wrote, which the rule keeps)."""
    if request.content_type not in YAML_TYPES:
        return await read_json(request)
    raw = await read_body(request, MAX_RULE_TEXT_BYTES)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Problem(
            400, "Not UTF-8", "send the rule's YAML as UTF-8 text", message_key="msg.rules.not_utf8"
        ) from None
    try:
        # a rule's text is at most 64 KiB: parsing it takes tens of milliseconds, off the loop
        return await asyncio.to_thread(load_rule_text, text)
    except RuleErrors as exc:
        raise _invalid(exc) from None


def described(comp: RulesComponent, stored: Any) -> dict[str, Any]:
    """A rule as the API shows it, with the YAML the editor shows (`text`)."""
    return {**comp.describe(stored), "text": rule_text(stored.doc)}


def _webhook_allow(request: web.Request) -> list[str]:
    config = get_runtime(request).site.sections.get("rules")
    return list(getattr(config, "webhook_allow", None) or [])


def _checked(request: web.Request, doc: Any) -> CompiledRule:
    """The rule compiled, its webhooks allowed on this site; else 422 naming every problem."""
    try:
        compiled = parse_rule(doc)
        refused = webhook_problems(compiled.rule, _webhook_allow(request))
        if refused:
            raise RuleErrors(refused)
    except RuleErrors as exc:
        raise _invalid(exc) from None
    return compiled


def _found(comp: RulesComponent, rule_id: str) -> Any:
    assert comp.store is not None
    stored = comp.store.get(rule_id)
    if stored is None:
        raise _no_such_rule(rule_id)
    return stored


def _no_such_rule(rule_id: str) -> Problem:
    return Problem(
        404,
        "No such rule",
        f"there is no rule {rule_id!r}",
        message_key="msg.rules.not_found",
        args={"id": rule_id},
    )


async def list_rules(request: web.Request) -> web.Response:
    require(request, "read")
    comp = _component(request)
    assert comp.store is not None
    return json_response({"rules": [comp.describe(s) for s in comp.store.list_rules()]})


async def get_rule(request: web.Request) -> web.Response:
    require(request, "read")
    comp = _component(request)
    return json_response(described(comp, _found(comp, request.match_info["id"])))


async def create_rule(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    doc = await _rule_body(request)
    if isinstance(doc, dict) and comp.store is not None and comp.store.get(str(doc.get("id"))) is not None:
        raise Problem(
            409,
            "Rule exists",
            f"rule {doc['id']!r} exists; PUT {BASE}/{doc['id']} to change it",
            message_key="msg.rules.exists",
            args={"id": str(doc["id"])},
        )
    try:
        stored = comp.put(doc, who.name, "create")
    except RuleErrors as exc:
        raise _invalid(exc) from None
    return json_response(described(comp, stored), status=201)


async def update_rule(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    rule_id = request.match_info["id"]
    doc = await _rule_body(request)
    if isinstance(doc, dict):
        if getattr(doc, "source", None) is None:  # a text without its id would not say which rule
            doc.setdefault("id", rule_id)
        if doc.get("id") != rule_id:
            raise Problem(
                422,
                "Rule id mismatch",
                f"the body's id {doc.get('id')!r} is not {rule_id!r}",
                message_key="msg.rules.id_mismatch",
                args={"given": str(doc.get("id")), "id": rule_id},
            )
    try:
        stored = comp.put(doc, who.name, "update")
    except RuleErrors as exc:
        raise _invalid(exc) from None
    return json_response(described(comp, stored))


async def delete_rule(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    rule_id = request.match_info["id"]
    if not comp.delete(rule_id, who.name):
        raise _no_such_rule(rule_id)
    return web.Response(status=204)


def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    _found(comp, request.match_info["id"])
    try:  # put checks webhooks: a rule stored before the allow-list changed does not start posting
        stored = comp.set_enabled(request.match_info["id"], enabled, who.name)
    except RuleErrors as exc:
        raise _invalid(exc) from None
    assert stored is not None
    return json_response(described(comp, stored))


async def enable_rule(request: web.Request) -> web.Response:
    return _set_enabled(request, True)


async def disable_rule(request: web.Request) -> web.Response:
    return _set_enabled(request, False)


async def validate(request: web.Request) -> web.Response:
    require(request, "rules")
    _checked(request, await read_json(request))
    return json_response({"ok": True})


def _point_rank(points: Any, point: Any) -> int:
    info = points.get(point) if isinstance(point, str) else None
    return PRIVACY_RANK[info.privacy] if info is not None else 0


def minimise_firings(
    runtime: Runtime, principal: Principal, compiled: CompiledRule, result: dict[str, Any]
) -> dict[str, Any]:
    """Each firing's class judged again with the hub's point classes (the replay may have run
    without them) and, above the caller's class, its message, key and point withheld (in place).
    A firing that does not say its class counts as sensitive."""
    points = runtime.hub.points
    limit = privacy.limit_for(principal)
    read = PRIVACY_RANK[reads_privacy(compiled, points)]
    by_rank = {r: p for p, r in PRIVACY_RANK.items()}
    for f in result.get("firings", []):
        named = f.get("privacy")
        rank = PRIVACY_RANK[Privacy(named)] if named in PRIVACY_RANK else PRIVACY_RANK[Privacy.SENSITIVE]
        rank = max(rank, read, _point_rank(points, f.get("point")))
        f["privacy"] = str(by_rank[rank])
        if rank > limit:
            f.update(message=None, key=None, point=None, redacted=True)
    return result


async def dry_run_handler(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Problem(400, "Bad body", 'send {"rule": {...}, "hours": 6} or {"id": "rule-id", "hours": 6}')
    hours = body.get("hours", 6)
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= MAX_DRY_RUN_HOURS:
        raise Problem(
            422,
            "Bad hours",
            f"hours must be a number in (0, {MAX_DRY_RUN_HOURS}]",
            message_key="msg.rules.dry_run_hours",
            args={"max": MAX_DRY_RUN_HOURS},
        )
    doc = body.get("rule")
    if doc is None and "id" in body:
        doc = _found(comp, str(body["id"])).doc
    if doc is None:
        raise Problem(422, "No rule", 'give "rule": {...} (a new rule) or "id": an existing rule')
    if isinstance(doc, dict):
        doc = {**doc, "enabled": True}
    try:
        compiled = parse_rule(doc)
    except RuleErrors as exc:
        raise _invalid(exc) from None
    runtime = get_runtime(request)
    now = runtime.clock()
    result = await comp.dry_run(compiled, now - hours * 3600, now)
    return json_response(minimise_firings(runtime, who, compiled, result))


async def versions(request: web.Request) -> web.Response:
    require(request, "read")
    comp = _component(request)
    assert comp.store is not None
    found = comp.store.versions(request.match_info["id"])
    if not found:
        raise Problem(
            404,
            "No such rule",
            f"rule {request.match_info['id']!r} has no history",
            message_key="msg.rules.no_history",
            args={"id": request.match_info["id"]},
        )
    for v in found:  # each version's text as the editor shows it (for the diff)
        v["text"] = v.pop("source") or rule_text(v["rule"])
    return json_response({"versions": found})


async def restore(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    version = path_int(request, "v", "Bad version", "the version is a number", MAX_VERSION)
    try:
        stored = comp.restore_version(request.match_info["id"], version, who.name)
    except RuleErrors as exc:
        raise _invalid(exc) from None
    if stored is None:
        raise Problem(
            404,
            "No such version",
            f"rule {request.match_info['id']!r} has no version {version}",
            message_key="msg.rules.no_version",
            args={"id": request.match_info["id"], "version": version},
        )
    return json_response(described(comp, stored))


async def export_pack(request: web.Request) -> web.Response:
    require(request, "read")
    text = await asyncio.to_thread(_component(request).export_pack)  # YAML dumping is CPU work
    return web.Response(text=text, content_type="application/yaml", charset="utf-8")


async def import_pack(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    raw = await read_body(request, MAX_PACK_BYTES)
    try:
        text = raw.decode("utf-8")
        # parsing up to MAX_PACK_BYTES of YAML is seconds of CPU: never on the event loop
        compiled = await asyncio.to_thread(compile_pack, text, "<upload>", _webhook_allow(request))
        ids = comp.store_pack(compiled, who.name)
    except UnicodeDecodeError:
        raise Problem(
            400, "Not UTF-8", "send the YAML pack as UTF-8 text", message_key="msg.rules.not_utf8"
        ) from None
    except RulePackError as exc:
        raise Problem(
            422,
            "Invalid rule pack",
            "nothing was imported",
            errors=exc.problems,
            message_key="msg.rules.pack_invalid",
            args={"count": len(exc.problems), "first": exc.problems[0] if exc.problems else ""},
        ) from None
    return json_response({"imported": ids})


ROUTES = [
    web.get(BASE, list_rules),
    web.post(BASE, create_rule),
    web.get(f"{BASE}/export", export_pack),
    web.post(f"{BASE}/import", import_pack),
    web.post(f"{BASE}/validate", validate),
    web.post(f"{BASE}/dry-run", dry_run_handler),
    web.get(BASE + "/{id}", get_rule),
    web.put(BASE + "/{id}", update_rule),
    web.delete(BASE + "/{id}", delete_rule),
    web.post(BASE + "/{id}/enable", enable_rule),
    web.post(BASE + "/{id}/disable", disable_rule),
    web.get(BASE + "/{id}/versions", versions),
    web.post(BASE + "/{id}/versions/{v}/restore", restore),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_routes(ROUTES)
