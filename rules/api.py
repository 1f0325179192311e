"""The rules HTTP API: list, get, create, update, enable/disable, delete, validate, dry-run,
versions and restore, YAML import/export. Reading needs `read`; changing, validating and dry runs
need `rules`. Every change goes through `RulesComponent`, which validates first and records the
audit trail; a webhook to a destination the site's `rules.webhook_allow` does not name is refused
there (422), before anything is stored; validate checks the same here. A caller who may change
rules but not read them (`rules` without `read`) is told of a rule it updated, enabled, disabled or
restored that it changed, not what it says, of a 409 the version, not the rule, and by an import's
dry run which rules are stored at which version; it may not dry-run a stored rule by its id.

A dry run evaluates a condition its caller wrote, so whether and when it fires answers questions
about every record it read: it may read only up to the caller's privacy class
(`edge.api.privacy`). A rule whose triggers or expressions name points above that class, or a
health-measurement kind above it, is refused (403) before it runs; one whose triggers took records
above it (an event whose payload names its class, a wildcard kind) is refused once the replay says
so, whatever its condition made of them. An allowed dry run over personal or sensitive records is
audited as a read. Each firing is still judged again and, above the caller's class, its message,
key and point withheld (`redacted`).

A stored rule runs on every record its triggers take, and its state, its last firing, its error
and its actions' records answer the same questions: a rule reading above its author's class (the
same check, before it runs) is refused (403) when it is created, updated, enabled, restored or
imported, and a rule of an admin shows a caller below what it reads no state, last firing or error
(`for_caller`), in every answer that shows it. An error shown above public (it quotes what its
firing read: a plate) is audited as a read, one entry per answer, at the error's class.
Who changed a rule (`updated_by`, a version's `actor`) is a staff name, personal as an alert
acknowledger's is: withheld (null) below `personal` but for the caller's own, and audited as a
personal read where shown (`staff_name`).

A rule's answer carries its version as an ETag (`"7"`). A change sent with `If-Match: "7"` (the
editor sends the version it loaded) is made only if the rule is still at version 7, checked in the
write's own transaction; else 409 with its current version and, to a caller who may read rules,
the rule as it is now (who changed it, its text), and nothing changes. A change sent without
If-Match replaces whatever is stored, as before.
An import asked with `?dry_run=1` stores nothing and answers what it would do to each rule, with
the stored versions of the pack's rules as an ETag: the import sent with it as If-Match stores the
pack only if none of those rules changed since (else 409 with what it would do now).
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.api import privacy
from edge.api.auth import Principal, require
from edge.api.keys import get_runtime
from edge.api.params import path_int
from edge.api.problem import Problem, json_body, json_response, read_body, read_json
from edge.model import PRIVACY_RANK, SENSITIVE_EVENT_KINDS, Privacy
from rules.component import RulesComponent
from rules.expr import ExprError
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
from rules.store import RuleStore, VersionConflict, expecting

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


def _located(e: ExprError) -> dict[str, Any]:
    """A located error or warning as the API answers it; the UI words its message in the reader's
    language from the key (`message` is English)."""
    item = e.as_dict()
    item["message_key"] = getattr(e, "key", None)
    item["args"] = getattr(e, "message_args", None) if item["message_key"] else None
    return item


def _invalid(exc: RuleErrors) -> Problem:
    errors = [_located(e) for e in exc.errors]
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


async def _rule_response(shown: dict[str, Any], doc: Any, status: int = 200) -> web.Response:
    """A rule as the API shows it: `shown` (`describe`d on the loop) with the YAML the editor shows
    (`text`), dumped and encoded in a thread (a large rule's YAML is tens of milliseconds of CPU);
    its version as the ETag a change sends back in If-Match."""

    def encode() -> bytes:
        return json_body({**shown, "text": rule_text(doc)})

    body = await asyncio.to_thread(encode)
    return web.Response(
        status=status, body=body, content_type="application/json", headers={"ETag": f'"{shown["version"]}"'}
    )


def _if_match(request: web.Request) -> int | None:
    """The version a change was made against: If-Match's one ETag (`"7"`, as a rule's answer
    gives it), or None (no If-Match: the change replaces whatever is stored). 400 for anything
    else, before anything is read or changed."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    tag = raw.strip()
    if len(tag) >= 2 and tag[0] == tag[-1] == '"':
        tag = tag[1:-1]
    if not (tag.isascii() and tag.isdigit() and 0 < int(tag) <= MAX_VERSION):
        raise Problem(
            400,
            "Bad If-Match",
            f"If-Match {raw[:40]!r} is not one version of the rule: send the ETag its GET answered "
            'with, e.g. If-Match: "7", or no If-Match to replace whatever is stored',
        )
    return int(tag)


async def _conflict(request: web.Request, who: Principal, exc: VersionConflict) -> Problem:
    """409 for a change made against a version the rule has left: its current version (null:
    deleted), enough to load it and retry. A caller who may read rules (`read`) is shown the rule
    as it is now, to see what moved: who changed it (`staff_name`: withheld below `personal`, and
    audited as read) and when, whether it is enabled, its text; a caller who may only change them
    is not (a made-up If-Match would read any rule's text)."""
    cur = exc.current
    shown: dict[str, Any] = {}
    now = f"at version {cur.version}" if cur else "deleted"
    if "read" in who.scopes:
        counts: privacy.ReadCounts = Counter()
        by = staff_name(who, cur.updated_by, counts) if cur else None
        shown = {
            "updated_by": by,
            "updated": cur.updated if cur else None,
            "enabled": cur.enabled if cur else None,
            "text": await asyncio.to_thread(rule_text, cur.doc) if cur else None,
        }
        if cur and by:
            now += f", saved by {by}"
        await _audited(request, who, counts)
    return Problem(
        409,
        "Rule changed meanwhile",
        f"rule {exc.rule_id!r} is {now} since version {exc.expected} this change was made against; "
        "nothing was changed. Load it again, or send If-Match with its current version to replace it",
        message_key="editor.saveConflict",
        args={"id": exc.rule_id, "version": exc.expected},
        rule=exc.rule_id,
        your_version=exc.expected,
        current_version=cur.version if cur else None,
        **shown,
    )


def _webhook_allow(request: web.Request) -> list[str]:
    config = get_runtime(request).site.sections.get("rules")
    return list(getattr(config, "webhook_allow", None) or [])


async def _compiled(doc: Any, webhook_allow: list[str] | None = None) -> CompiledRule:
    """The rule compiled in a thread (a rule at its size limits is about a tenth of a second of
    CPU, which the event loop must not wait out), with `webhook_allow` its webhooks allowed on this
    site; else 422 naming every problem. What it compiles, `put` applies on the loop."""

    def compile_() -> CompiledRule:
        compiled = parse_rule(doc)
        if webhook_allow is not None and (refused := webhook_problems(compiled.rule, webhook_allow)):
            raise RuleErrors(refused)
        return compiled

    try:
        return await asyncio.to_thread(compile_)
    except RuleErrors as exc:
        raise _invalid(exc) from None


async def _checked(request: web.Request, doc: Any) -> CompiledRule:
    """The rule compiled, its webhooks allowed on this site; else 422 naming every problem."""
    return await _compiled(doc, _webhook_allow(request))


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


#: what a rule's `state` says of the data it read: whether its condition holds now
HELD_STATES = frozenset({"ok", "active", "pending"})


PERSONAL = PRIVACY_RANK[Privacy.PERSONAL]
#: who stored a rule when no one did: the packs read at start (`RulesComponent`) and `edge rules
#: import`; these name no person
GATEWAY_ACTORS = frozenset({"system", "cli"})


def staff_name(who: Principal, name: str | None, counts: privacy.ReadCounts) -> str | None:
    """A staff account's (or token's) name as `who` may see it: personal data, as an alert
    acknowledger's is. Below `personal` (a viewer, a token without admin) it is withheld (None),
    but for the caller's own name; shown to anyone else, it is counted in `counts` as a personal
    read, as an acknowledgement's user is. The gateway's own (`GATEWAY_ACTORS`) is no one's."""
    if not name or name == who.name or name in GATEWAY_ACTORS:
        return name
    if privacy.limit_for(who) < PERSONAL:
        return None
    privacy.count_read(counts, PERSONAL)
    return name


def for_caller(
    request: web.Request,
    principal: Principal,
    shown: dict[str, Any],
    counts: privacy.ReadCounts,
    above: dict[str, Privacy] | None = None,
) -> dict[str, Any]:
    """A described rule as `principal` may see it: of a rule that reads data above the caller's
    class, whether it holds now (`state`) and when it last fired are withheld, as its dry run is
    (when a blood-pressure rule fired tells what the kiosk measured); `redacted` names the class.
    Its error quotes what its firing read ("invalid literal ... '121/71 r-0298'"): shown only up to
    the caller's class and, above public, counted in `counts` at that class (the answer's read
    audit), as is who changed it last (`staff_name`).
    `above`: the site's points above the caller's class (`points_above`), taken once for a list."""
    shown["updated_by"] = staff_name(principal, shown["updated_by"], counts)
    limit = privacy.limit_for(principal)
    comp = _component(request)
    rr = comp.engine.rules.get(shown["id"])
    if rr is None:
        return shown  # not running: its error, if any, is its compile error (the rule's own text)
    if limit < PRIVACY_RANK[Privacy.SENSITIVE] and above_class(
        get_runtime(request), rr.compiled, limit, above
    ):
        shown["last_fired"] = None
        if shown["state"] in HELD_STATES:
            shown["state"] = "redacted"
        if shown["error"]:
            shown["error"] = None
        shown["redacted"] = True
        return shown
    if not shown["error"]:
        return shown
    rank = PRIVACY_RANK[comp.actions.error_privacy(rr.id)]
    if rank > limit:
        shown["error"] = None
        shown["redacted"] = True
    else:
        privacy.count_read(counts, rank)
    return shown


async def _audited(request: web.Request, who: Principal, counts: privacy.ReadCounts) -> None:
    """The answer's `read` audit entry, when it shows anything above public (`counts`)."""
    route = privacy.route_of(request.method, request.path)
    await privacy.audit_reads(get_runtime(request), who, route, counts)


async def list_rules(request: web.Request) -> web.Response:
    principal = require(request, "read")
    comp = _component(request)
    assert comp.store is not None
    comp.reload_changed()  # a rule `edge rules import` stored is shown once it is in force
    above = points_above(get_runtime(request), privacy.limit_for(principal))
    counts: privacy.ReadCounts = Counter()
    rules = [for_caller(request, principal, comp.describe(s), counts, above) for s in comp.store.list_rules()]
    await _audited(request, principal, counts)
    return json_response({"rules": rules})


async def get_rule(request: web.Request) -> web.Response:
    principal = require(request, "read")
    comp = _component(request)
    comp.reload_changed()
    stored = _found(comp, request.match_info["id"])
    counts: privacy.ReadCounts = Counter()
    shown = for_caller(request, principal, comp.describe(stored), counts)
    await _audited(request, principal, counts)
    return await _rule_response(shown, stored.doc)


def _exists(comp: RulesComponent, doc: Any) -> None:
    """409 early, before a create compiles, when the rule is stored already (the create's own
    transaction checks again: `_stored`)."""
    if isinstance(doc, dict) and comp.store is not None and comp.store.get(str(doc.get("id"))) is not None:
        raise _rule_exists(str(doc["id"]))


def _rule_exists(rule_id: str) -> Problem:
    return Problem(
        409,
        "Rule exists",
        f"rule {rule_id!r} exists; PUT {BASE}/{rule_id} to change it",
        message_key="msg.rules.exists",
        args={"id": rule_id},
    )


async def _stored(
    request: web.Request,
    comp: RulesComponent,
    compiled: CompiledRule,
    who: Principal,
    action: str,
    base: int | None = None,
    *,
    new: bool = False,
) -> Any:
    """`compiled` applied by `put` (on the loop), once a pack being stored is (`changing`); its
    refusal as 422 naming every problem. `base`: the version the change was made against (If-Match),
    else 409 and nothing changed. `new` (a create): stored only if no rule has its id, else 409
    "Rule exists"; checked in the write's own transaction, so a rule another create, a pack import
    or `edge rules import` stored while this one waited is never replaced."""
    rule_id = compiled.rule.id
    versions: dict[str, int | None] = {rule_id: None} if new else {} if base is None else {rule_id: base}
    try:
        async with comp.changing:
            with expecting(versions):
                return comp.put(compiled, who.name, action)
    except RuleErrors as exc:
        raise _invalid(exc) from None
    except VersionConflict as exc:
        if new:
            raise _rule_exists(rule_id) from None
        raise await _conflict(request, who, exc) from None


async def create_rule(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    doc = await _rule_body(request)
    _exists(comp, doc)
    compiled = await _compiled(doc)
    _within_class(request, who, compiled)
    stored = await _stored(request, comp, compiled, who, "create", new=True)
    # a new rule: its document and text are the caller's own (no stored text to build on)
    shown = await _warned(await _shown(request, who, comp, stored), comp, compiled)
    return await _rule_response(shown, stored.doc, status=201)


async def update_rule(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    rule_id = request.match_info["id"]
    base = _if_match(request)
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
    compiled = await _compiled(doc)
    _within_class(request, who, compiled)
    stored = await _stored(request, comp, compiled, who, "update", base)
    return await _changed_response(request, who, comp, stored, compiled)


async def delete_rule(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    rule_id = request.match_info["id"]
    base = _if_match(request)
    try:
        async with comp.changing:  # once a pack being stored is
            with expecting({} if base is None else {rule_id: base}):
                deleted = comp.delete(rule_id, who.name)
    except VersionConflict as exc:
        raise await _conflict(request, who, exc) from None
    if not deleted:
        raise _no_such_rule(rule_id)
    return web.Response(status=204)


#: how many times enabling or disabling reads the rule again when a save landed while it compiled
SET_ENABLED_TRIES = 3


async def _set_enabled(request: web.Request, enabled: bool) -> web.Response:
    """The stored rule with `enabled` changed. It is stored against the version it was read at:
    a save that landed while it compiled is kept (read again and enabled or disabled in turn), not
    replaced by the document read before it. With If-Match, that version or 409: the version read
    is the one If-Match names, so the document enabled is that version's, never an older one read
    before a save of that version landed."""
    who = require(request, "rules")
    comp = _component(request)
    rule_id = request.match_info["id"]
    base = _if_match(request)
    action = "enable" if enabled else "disable"
    for attempt in range(SET_ENABLED_TRIES):
        current = _found(comp, rule_id)
        if base is not None and current.version != base:
            raise await _conflict(request, who, VersionConflict(rule_id, base, current))
        compiled = await _compiled({**current.doc, "enabled": enabled})
        if enabled:  # stopping a rule reads nothing: anyone who may change rules may disable it
            _within_class(request, who, compiled)
        try:
            # put checks webhooks: a rule stored before the allow-list changed does not start posting
            async with comp.changing:
                with expecting({rule_id: current.version}):
                    stored = comp.put(compiled, who.name, action)
        except RuleErrors as exc:
            raise _invalid(exc) from None
        except VersionConflict as exc:
            if base is None and exc.current is None:
                raise _no_such_rule(rule_id) from None  # deleted while it compiled
            if base is not None or attempt == SET_ENABLED_TRIES - 1:
                raise await _conflict(request, who, exc) from None
            continue
        return await _changed_response(request, who, comp, stored)
    raise AssertionError("unreachable: the last attempt returns or raises")


async def enable_rule(request: web.Request) -> web.Response:
    return await _set_enabled(request, True)


async def disable_rule(request: web.Request) -> web.Response:
    return await _set_enabled(request, False)


async def validate(request: web.Request) -> web.Response:
    require(request, "rules")
    compiled = await _checked(request, await read_json(request))
    comp = _component(request)
    if refused := comp.problems(compiled):  # what saving it would refuse
        raise _invalid(RuleErrors(refused))
    return json_response(await _warned({"ok": True}, comp, compiled))


def _point_rank(points: Any, point: Any) -> int:
    info = points.get(point) if isinstance(point, str) else None
    return PRIVACY_RANK[info.privacy] if info is not None else 0


def _classed(name: str, klass: Any) -> str:
    return f"{name} ({klass})"


def points_above(runtime: Runtime, limit: int) -> dict[str, Privacy]:
    """The site's points above class rank `limit`, with their class (once per request)."""
    return {p: i.privacy for p, i in runtime.hub.points.items() if PRIVACY_RANK[i.privacy] > limit}


def above_class(
    runtime: Runtime, compiled: CompiledRule, limit: int, above: dict[str, Privacy] | None = None
) -> list[str]:
    """What `compiled` would read above class rank `limit`, known before it runs: the points its
    triggers watch or its expressions read (all points above `limit` when it computes which point
    it reads) and the health-measurement kinds its event triggers name. `above`: `points_above`,
    when the caller judges many rules."""
    if above is None:
        above = points_above(runtime, limit)
    found: list[str] = []
    if above:
        patterns = [t.point or t.no_data for t in compiled.rule.when if t.point or t.no_data]
        read = set(compiled.reads)
        for point, klass in sorted(above.items()):
            if (
                compiled.reads_any_point
                or point in read
                or any(fnmatch.fnmatchcase(point, p) for p in patterns if p)
            ):
                found.append(_classed(f"point {point}", klass))
    if limit < PRIVACY_RANK[Privacy.SENSITIVE]:
        # a wildcard (`event: "*"`, `"heart_*"`) takes the health measurements it matches
        kinds = {t.event for t in compiled.rule.when if t.event}
        found += [
            _classed(f"event:{k}", Privacy.SENSITIVE)
            for k in sorted(kinds)
            if any(fnmatch.fnmatchcase(health, k) for health in SENSITIVE_EVENT_KINDS)
        ]
    return found


def _refused(principal: Principal, found: list[str], what: str, save: bool = False) -> Problem:
    """403 naming what a rule reads above `principal`'s class: for a dry run, or (`save`) for
    storing or enabling the rule."""
    klass = next(str(p) for p, r in PRIVACY_RANK.items() if r == privacy.limit_for(principal))
    shown = ", ".join(found)
    if save:
        return Problem(
            403,
            "Rule above your privacy class",
            f"{what} above your class ({klass}): {shown}. Its state, its errors and what its "
            "actions write would tell what those records hold: leave them out of the rule, or "
            "ask an admin to save it",
            refused=found,
            allowed=klass,
            message_key="msg.rules.above_class",
            args={"shown": shown, "allowed": klass},
        )
    return Problem(
        403,
        "Dry run above your privacy class",
        f"{what} above your class ({klass}): {shown}. Whether and when it fires would tell what "
        "those records hold: leave them out of the rule, or ask an admin to dry-run it",
        refused=found,
        allowed=klass,
        message_key="editor.dryAboveClass",
        args={"shown": shown},
    )


def _within_class(request: web.Request, who: Principal, compiled: CompiledRule) -> None:
    """403 when `compiled` reads data above `who`'s class (known before it runs, as for a dry
    run): stored, it would run on those records and answer for them."""
    found = above_class(get_runtime(request), compiled, privacy.limit_for(who))
    if found:
        raise _refused(who, found, "this rule reads data", save=True)


async def _warned(answer: dict[str, Any], comp: RulesComponent, compiled: CompiledRule) -> dict[str, Any]:
    """`answer` with `warnings` (located as `errors` are) when an enabled `compiled` names what
    this site does not have: a point no pattern of it matches, a p() of no point, a write to a
    point that is not writable. Not refused: a device may register its points at its first packet."""
    if compiled.rule.enabled and (found := await comp.warnings(compiled)):
        answer["warnings"] = [_located(w) for w in found]
    return answer


async def _shown(request: web.Request, who: Principal, comp: RulesComponent, stored: Any) -> dict[str, Any]:
    """A rule just changed, as `who` may see it (as GET shows it, audited as GET is)."""
    counts: privacy.ReadCounts = Counter()
    shown = for_caller(request, who, comp.describe(stored), counts)
    await _audited(request, who, counts)
    return shown


#: what the answer of an update, enable, disable or restore shows a caller who may change rules but
#: not read them: that the rule changed, not what it says
UNREAD_SHOWN = ("id", "enabled", "state", "version", "updated", "updated_by", "redacted", "warnings")


async def _changed_response(
    request: web.Request,
    who: Principal,
    comp: RulesComponent,
    stored: Any,
    compiled: CompiledRule | None = None,
) -> web.Response:
    """A rule an update, enable, disable or restore stored, as `who` may see it (with `compiled`'s
    warnings: an update's). Its text came from the store, not from the caller: an update sent as
    JSON keeps the stored text's comments and layout, an enable or restore the stored document. A
    caller who may change rules but not read them (`rules` without `read`, whose GET is refused)
    is shown its id, version, whether it is enabled and its state, not its name, document or text
    (else enabling a rule already enabled, or a JSON update, would read the stored rule)."""
    shown = await _shown(request, who, comp, stored)
    if compiled is not None:
        shown = await _warned(shown, comp, compiled)
    if "read" in who.scopes:
        return await _rule_response(shown, stored.doc)
    return json_response(
        {k: shown[k] for k in UNREAD_SHOWN if k in shown}, headers={"ETag": f'"{stored.version}"'}
    )


def minimise_firings(
    runtime: Runtime, principal: Principal, compiled: CompiledRule, result: dict[str, Any]
) -> dict[str, Any]:
    """Each firing's class judged again with the hub's point classes (the replay may have run
    without them) and, above the caller's class, its message, key and point withheld (in place).
    A firing that does not say its class counts as sensitive."""
    return _minimised(runtime.hub.points, privacy.limit_for(principal), compiled, result)


def _minimised(
    points: Mapping[str, Any], limit: int, compiled: CompiledRule, result: dict[str, Any]
) -> dict[str, Any]:
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
        if "read" not in who.scopes:  # the stored rule's firings would tell what it says
            raise Problem(
                403,
                "Forbidden",
                "dry-running a stored rule needs the scope read, as reading it does; send the rule "
                'itself as "rule": {...}',
            )
        doc = _found(comp, str(body["id"])).doc
    if doc is None:
        raise Problem(422, "No rule", 'give "rule": {...} (a new rule) or "id": an existing rule')
    if isinstance(doc, dict):
        doc = {**doc, "enabled": True}
    compiled = await _compiled(doc)
    runtime = get_runtime(request)
    limit = privacy.limit_for(who)
    found = above_class(runtime, compiled, limit)
    if found:
        raise _refused(who, found, "this rule reads data")
    now = runtime.clock()
    result = await comp.dry_run(compiled, now - hours * 3600, now)
    inputs: dict[str, int] = result.pop("inputs", None) or {}
    named: dict[str, list[str]] = result.pop("inputs_named", None) or {}
    took = [
        _classed(name, klass)
        for klass, names in sorted(named.items())
        if klass in PRIVACY_RANK and PRIVACY_RANK[Privacy(klass)] > limit
        for name in names
    ]
    if took:
        raise _refused(who, took, "this rule's triggers took records")
    await privacy.audit_reads(
        runtime,
        who,
        privacy.route_of(request.method, request.path),
        _read_counts(runtime, compiled, inputs, int(result.get("evaluated") or 0)),
        rule=compiled.rule.id,
        hours=hours,
    )
    # at most rules.dry_run_worker.MAX_FIRINGS firings, each judged and the answer encoded in a thread; the
    # hub's point classes as they are now (the loop may add points meanwhile)
    points = dict(runtime.hub.points)

    def encode() -> bytes:
        return json_body(_minimised(points, limit, compiled, result))

    return web.Response(body=await asyncio.to_thread(encode), content_type="application/json")


def _read_counts(
    runtime: Runtime, compiled: CompiledRule, inputs: dict[str, int], evaluated: int
) -> privacy.ReadCounts:
    """The records a dry run read, per class above public: each record its triggers took, at
    least as private as the points its expressions read; evaluations no record brought (a
    schedule, a timer) count at the class of those points."""
    counts: privacy.ReadCounts = Counter()
    read = PRIVACY_RANK[reads_privacy(compiled, runtime.hub.points)]
    taken = 0
    for klass, n in inputs.items():
        if klass in PRIVACY_RANK:
            privacy.count_read(counts, max(PRIVACY_RANK[Privacy(klass)], read), n)
            taken += n
    privacy.count_read(counts, read, max(0, evaluated - taken))
    return counts


async def versions(request: web.Request) -> web.Response:
    who = require(request, "read")
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
    counts: privacy.ReadCounts = Counter()
    for v in found:  # each version's text as the editor shows it (for the diff)
        v["text"] = v.pop("source") or rule_text(v["rule"])
        v["actor"] = staff_name(who, v["actor"], counts)
    await _audited(request, who, counts)
    return json_response({"versions": found})


async def restore(request: web.Request) -> web.Response:
    who = require(request, "rules")
    comp = _component(request)
    version = path_int(request, "v", "Bad version", "the version is a number", MAX_VERSION)
    base = _if_match(request)
    assert comp.store is not None
    doc = comp.store.version_doc(request.match_info["id"], version)
    if doc is None:
        raise Problem(
            404,
            "No such version",
            f"rule {request.match_info['id']!r} has no version {version}",
            message_key="msg.rules.no_version",
            args={"id": request.match_info["id"], "version": version},
        )
    compiled = await _compiled(doc)
    _within_class(request, who, compiled)
    stored = await _stored(request, comp, compiled, who, "restore", base)
    return await _changed_response(request, who, comp, stored)


async def export_pack(request: web.Request) -> web.Response:
    require(request, "read")
    text = await asyncio.to_thread(_component(request).export_pack)  # YAML dumping is CPU work
    return web.Response(text=text, content_type="application/yaml", charset="utf-8")


PACK_TAG_RE = re.compile(r'"?([0-9a-f]{32})"?')


def _pack_tag(changes: list[dict[str, Any]]) -> str:
    """The stored versions of a pack's rules (None: not stored) as one ETag: what a dry run
    showed, for the import to be made against."""
    versions = sorted((c["id"], c["version"]) for c in changes)
    return hashlib.sha256(json.dumps(versions).encode()).hexdigest()[:32]


def _pack_if_match(request: web.Request) -> str | None:
    """The dry run's ETag an import is made against (If-Match), or None; 400 for anything else."""
    raw = request.headers.get("If-Match")
    if raw is None:
        return None
    m = PACK_TAG_RE.fullmatch(raw.strip())
    if m is None:
        raise Problem(
            400,
            "Bad If-Match",
            f"If-Match {raw[:40]!r} is not the ETag a dry run of the import answered with "
            "(?dry_run=1); send that, or no If-Match to import over whatever is stored",
        )
    return m.group(1)


#: what a dry run of an import (and its 409) says of a stored rule to a caller who may change
#: rules but not read them: that it is stored and at which version, which the import replaces
UNREAD_CHANGE = ("id", "change", "version", "enabled_after")


async def _changes_shown(
    request: web.Request, who: Principal, changes: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`changes` (`RuleStore.pack_changes`) as `who` may see them, audited as read. A caller who
    may read rules sees who changed each stored rule last (`staff_name`), when and how, whether it
    is enabled, and whether the pack's document is the stored one (`unchanged`); one who may not
    (`rules` without `read`) learns only which rules are stored, at which version: `unchanged` would
    confirm a guessed rule, so it reads `replaced` (the import stores a new version over it)."""
    if "read" not in who.scopes:
        return [
            {
                k: ("replaced" if k == "change" and c[k] == "unchanged" else c[k])
                for k in UNREAD_CHANGE
                if k in c
            }
            for c in changes
        ]
    counts: privacy.ReadCounts = Counter()
    shown = [
        {**c, "updated_by": staff_name(who, c["updated_by"], counts)} if "updated_by" in c else c
        for c in changes
    ]
    await _audited(request, who, counts)
    return shown


async def _pack_moved(request: web.Request, who: Principal, changes: list[dict[str, Any]]) -> Problem:
    return Problem(
        409,
        "Rules changed since the dry run",
        "a rule of the pack was saved, imported or deleted since the dry run this import was made "
        "against; nothing was imported: `changes` is what it would do now, `etag` to import over that",
        message_key="rules.importMoved",
        changes=await _changes_shown(request, who, changes),
        etag=_pack_tag(changes),
    )


def _dry_run_asked(request: web.Request) -> bool:
    raw = request.query.get("dry_run")
    if raw is None or raw.lower() in ("0", "false", "no", ""):
        return False
    if raw.lower() in ("1", "true", "yes"):
        return True
    raise Problem(400, "Bad dry_run", f"dry_run {raw[:40]!r} is not one of 1, true, yes, 0, false, no")


async def _pack_changes(store: RuleStore, compiled: list[CompiledRule]) -> list[dict[str, Any]]:
    """What storing the pack would do to each rule; a thousand rules' documents compared: off the
    event loop, as the pack is stored."""
    return await asyncio.to_thread(lambda: store.pack_changes([cr.rule.doc() for cr in compiled]))


async def import_pack(request: web.Request) -> web.Response:
    """Store a pack's rules (all or none); with `?dry_run=1`, the same checks and nothing stored:
    what the import would do to each rule (`RuleStore.pack_changes`), for its author to confirm
    before a rule tuned and disabled since is replaced and enabled again."""
    who = require(request, "rules")
    comp = _component(request)
    dry_run = _dry_run_asked(request)
    base = _pack_if_match(request)
    raw = await read_body(request, MAX_PACK_BYTES)
    try:
        text = raw.decode("utf-8")
        # parsing up to MAX_PACK_BYTES of YAML is seconds of CPU: never on the event loop
        compiled = await asyncio.to_thread(compile_pack, text, "<upload>", _webhook_allow(request))
        found = [
            f"rule {cr.rule.id}: {f}"
            for cr in compiled
            for f in above_class(get_runtime(request), cr, privacy.limit_for(who))
        ]
        if found:
            raise _refused(who, found, "this pack has rules that read data", save=True)
        store = comp.store
        assert store is not None
        if dry_run:
            if problems := comp.pack_problems(compiled, "<upload>"):
                raise RulePackError(problems)
            changes = await _pack_changes(store, compiled)
            tag = _pack_tag(changes)
            shown = await _changes_shown(request, who, changes)
            return json_response(
                {"dry_run": True, "changes": shown, "etag": tag}, headers={"ETag": f'"{tag}"'}
            )
        if base is None:
            ids = await comp.store_pack(compiled, who.name)
        else:
            changes = await _pack_changes(store, compiled)
            if _pack_tag(changes) != base:
                raise await _pack_moved(request, who, changes)
            # the versions the dry run showed, checked again in the pack's own transaction
            try:
                with expecting({c["id"]: c["version"] for c in changes}):
                    ids = await comp.store_pack(compiled, who.name)
            except VersionConflict:
                raise await _pack_moved(request, who, await _pack_changes(store, compiled)) from None
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
