"""The sync plugin's HTTP routes: `GET /api/v1/sync` (every sink and consumer), the dead-letter
list, a manual dead-letter retry and a dead letter's deletion. Added by the `routes` hook of `edge.sync.plugin`, described
by `edge.sync.openapi`; the dead-letter table is read and written through `edge.sync.deadletters`."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edge import audit
from edge.api import keys, privacy
from edge.api.auth import require
from edge.api.params import MAX_SEQ, int_param
from edge.api.problem import Problem, json_response
from edge.model import PRIVACY_RANK, Privacy
from edge.store.journal import BOOL_FLAG
from edge.store.records import Row
from edge.sync import deadletters
from edge.sync.component import SyncComponent
from edge.sync.deadletters import CLASS_NAMES
from edge.sync.openapi import MAX_DEAD_LETTERS

if TYPE_CHECKING:
    from edge.runtime import Runtime


def record_to_row(record: dict[str, Any]) -> Row:
    """A record in the pull-API shape back to a raw journal row (for re-sending a dead letter)."""
    if record.get("type") == "reading":
        value = record["value"]
        quality = ("good", "bad", "stale").index(record["quality"])
        if value is True or value is False:
            quality |= BOOL_FLAG
            value = int(value)
        return (record["seq"], record["ts"], record["point"], value, quality, None, None, None)
    payload = orjson.dumps(record.get("payload") or {}).decode()
    return (
        record["seq"],
        record["ts"],
        record["source"],
        None,
        None,
        record["kind"],
        record["severity"],
        payload,
    )


def letter_rank(runtime: Runtime, stored: str | None, record: Any) -> int:
    """A dead letter's class rank: the higher of the class it was stored with and the one its
    record has by today's points; one that cannot be classified (a sealed record this process
    cannot open, stored before classes were) is taken as sensitive, the strictest."""
    rank = PRIVACY_RANK[Privacy(stored)] if stored in PRIVACY_RANK else None
    if isinstance(record, dict) and ("type" in record or "kind" in record):
        return max(rank or 0, privacy.record_rank(runtime, record))
    return rank if rank is not None else deadletters.SENSITIVE


async def sync_status(request: web.Request) -> web.Response:
    require(request, "read")
    comp = keys.get_runtime(request).component(SyncComponent)
    empty: dict[str, Any] = {"sinks": [], "consumers": [], "removed_sinks": []}
    return json_response(comp.status() if comp is not None else empty)


async def dead_letters(request: web.Request) -> web.Response:
    principal = require(request, "read")
    sink = request.query.get("sink")
    limit = int_param(request, "limit", 100, 1, MAX_DEAD_LETTERS) or 100
    before = int_param(request, "before", None, 1, MAX_SEQ)
    runtime = keys.get_runtime(request)
    state = runtime.state
    found = deadletters.listing(state, sink, before, limit) if state is not None else []
    # a dead letter holds a record as it was sent, and the receiver's answer often quotes it: the
    # caller sees both only up to its class (the class is read before the record is redacted)
    limit_rank = privacy.limit_for(principal)
    for letter in found:
        rank = letter_rank(runtime, letter["privacy"], letter["record"])
        if rank > limit_rank and letter.get("response"):
            letter["response"] = None
            letter["response_withheld"] = CLASS_NAMES[rank]
    counts: privacy.ReadCounts = Counter()
    privacy.minimise(runtime, principal, [letter["record"] for letter in found], counts)
    await privacy.audit_reads(runtime, principal, privacy.route_of(request.method, request.path), counts)
    return json_response({"dead_letters": found})


def _dead_letter(request: web.Request) -> tuple[Any, Any, str, Any]:
    """(runtime, state DB, the id as given, the dead letter or None) of a route's `{id}`; 400 when
    the id is not a positive integer."""
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise Problem(
            400,
            "Invalid id",
            f"dead-letter id {raw[:40]!r} must be a positive integer",
            message_key="msg.sync.bad_id",
        )
    runtime = keys.get_runtime(request)
    state = runtime.state
    return runtime, state, raw, deadletters.one(state, int(raw)) if state is not None else None


async def retry(request: web.Request) -> web.Response:
    principal = require(request, "write")
    runtime, state, raw, letter = _dead_letter(request)
    if state is None or letter is None:
        raise Problem(404, "Not found", f"no dead letter {raw}")
    comp = runtime.component(SyncComponent)
    sink = comp.sinks.get(letter.sink) if comp is not None else None
    if sink is None and letter.sink not in {cfg.id for cfg in runtime.site.upstream}:
        raise Problem(
            409,
            "Sink removed",
            f"upstream {letter.sink!r} is no longer in the site file, so nothing can send its dead "
            f"letters; delete this one (DELETE /api/v1/sync/dead-letters/{letter.id}), or it is "
            "deleted at its class's retention (storage.keep_history for a public one)",
            message_key="msg.sync.sink_removed",
            args={"sink": letter.sink},
        )
    if sink is None:
        raise Problem(
            409,
            "Sink not running",
            f"upstream {letter.sink!r} is not configured or disabled",
            message_key="msg.sync.sink_not_running",
            args={"sink": letter.sink},
        )
    if letter.retried is not None:
        return json_response({"id": letter.id, "delivered": True, "already": True})
    outcome = await sink.send_one(record_to_row(letter.record))
    if not outcome.ok and outcome.status is None:
        # no answer at all (connection refused, DNS, timeout): nothing was rejected
        raise Problem(
            502,
            "Receiver not reachable",
            outcome.error or "no answer from the receiver",
            message_key="msg.sync.unreachable",
            args={"sink": letter.sink},
            receiver_status=None,
        )
    if not outcome.ok:
        # the receiver's answer may quote the record: shown only to a caller allowed its class
        rank = letter_rank(runtime, None, letter.record)
        answer = outcome.body[:500]
        if rank > privacy.limit_for(principal) and answer:
            answer = (
                f"HTTP {outcome.status} (the answer is withheld: it is about a {CLASS_NAMES[rank]} record)"
            )
        raise Problem(
            502,
            "Receiver rejected the record again",
            outcome.error or answer,
            message_key="msg.sync.rejected_again",
            args={"sink": letter.sink, "status": outcome.status},
            receiver_status=outcome.status,
        )
    deadletters.mark_retried(state, letter.id)
    sink.dead_letter_resolved()
    audit.record(state, principal.name, "sync.dead_letter.retry", letter.sink, dead_letter=letter.id)
    return json_response({"id": letter.id, "delivered": True, "status": outcome.status})


async def delete(request: web.Request) -> web.Response:
    """Delete one dead letter (an operator gave up on it, or its sink was removed): audited, and
    its sink's count follows."""
    principal = require(request, "write")
    runtime, state, raw, letter = _dead_letter(request)
    if state is None or letter is None or not deadletters.delete(state, letter.id):
        raise Problem(404, "Not found", f"no dead letter {raw}")
    comp = runtime.component(SyncComponent)
    sink = comp.sinks.get(letter.sink) if comp is not None else None
    if sink is not None:
        sink.dead_letter_resolved()
    if comp is not None:
        comp.recount_removed()
    audit.record(state, principal.name, "sync.dead_letter.delete", letter.sink, dead_letter=letter.id)
    return json_response({"id": letter.id, "sink": letter.sink, "deleted": True})


ROUTES = [
    web.get("/api/v1/sync", sync_status),
    web.get("/api/v1/sync/dead-letters", dead_letters),
    web.post("/api/v1/sync/dead-letters/{id}/retry", retry),
    web.delete("/api/v1/sync/dead-letters/{id}", delete),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_routes(ROUTES)
