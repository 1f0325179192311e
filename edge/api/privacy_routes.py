"""The privacy routes for an admin: the record of processing (`edge privacy report --json`), and a
resident's copy (PIPL art. 45) and erasure (art. 47), the same as `edge privacy export` and
`forget`. The resident's reference travels in the body of a POST, so it stays out of URLs and
access logs; every call is one audit entry, naming the resident by the site's pseudonym only.
Described by `edge.api.openapi_privacy`."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from edge import audit
from edge.api import keys
from edge.api.auth import require
from edge.api.privacy import limit_for, route_of
from edge.api.problem import Problem, json_response, read_json
from edge.model import PRIVACY_RANK, Privacy

# The routes are on every site; edge.privacy's code is imported by the handlers (the record of
# processing, a resident's records): a site without privacy does not keep it loaded.
if TYPE_CHECKING:
    from edge.api.auth import Principal
    from edge.privacy.atrest import Sealer
    from edge.runtime import Runtime
    from edge.state import StateDB

#: records one export answers; a resident with more is exported on the gateway (`edge privacy export`)
MAX_EXPORT_RECORDS = 50_000
MAX_BODY = 4096


def _admin(request: web.Request) -> Principal:
    principal = require(request, "admin")
    if limit_for(principal) < PRIVACY_RANK[Privacy.SENSITIVE]:
        raise Problem(
            403,
            "Private data",
            "a resident's records are sensitive: an admin's role is needed",
            message_key="msg.privacy.admin_only",
        )
    return principal


def _subject(data: Any) -> str:
    if not isinstance(data, dict) or set(data) != {"subject"} or not isinstance(data["subject"], str):
        raise Problem(
            400,
            "Bad body",
            'send {"subject": "<resident id, user id or plate>"} and nothing else',
            message_key="msg.privacy.bad_subject",
        )
    from edge.privacy import subjects

    try:
        return subjects.check_subject(data["subject"])
    except ValueError as exc:
        raise Problem(
            400,
            "Bad subject",
            str(exc).replace("--subject", "subject"),
            message_key="msg.privacy.bad_subject",
        ) from None


async def _subject_request(
    request: web.Request,
) -> tuple[Principal, Runtime, Sealer | None, StateDB, str]:
    """(caller, runtime, the site's sealer or None on a site without a master key, state DB,
    subject) of an admin's subject request."""
    principal = _admin(request)
    subject = _subject(await read_json(request, MAX_BODY))
    runtime = keys.get_runtime(request)
    assert runtime.state is not None, "the state DB opens before the web server"
    sealer = None
    if runtime.site.privacy.master_key_file is not None:  # else there is no privacy component
        from edge.privacy.component import PrivacyComponent

        comp = runtime.component(PrivacyComponent)
        sealer = comp.sealer if comp is not None else None
        if sealer is None:
            raise Problem(503, "Not ready", "the site's keys are not open yet: try again in a moment")
    return principal, runtime, sealer, runtime.state, subject


async def privacy_report(request: web.Request) -> web.Response:
    from edge.privacy import report as processing

    principal = _admin(request)
    runtime = keys.get_runtime(request)
    built = await asyncio.to_thread(lambda: processing.build(runtime.site).as_dict())
    if runtime.state is not None:
        await asyncio.to_thread(
            audit.record,
            runtime.state,
            principal.name,
            "read",
            route_of(request.method, request.path),
            kind=principal.kind,
        )
    return json_response(built)


async def export(request: web.Request) -> web.Response:
    from edge.privacy import subjects

    principal, runtime, sealer, state, subject = await _subject_request(request)

    # a site without a master key: its records are in clear, exported as they are
    private = runtime.hub.private_ranks  # an alert about one of these names its subject by its value

    def collect() -> list[bytes]:
        lines: list[bytes] = []
        for rec in subjects.journal_records(runtime.journal.path, subject, private):
            if len(lines) >= MAX_EXPORT_RECORDS:
                raise Problem(
                    413,
                    "Too many records",
                    f"this resident has more than {MAX_EXPORT_RECORDS} records: "
                    "use edge privacy export --subject on the gateway",
                    message_key="msg.privacy.too_many_records",
                    args={"max": MAX_EXPORT_RECORDS},
                )
            lines.append(orjson.dumps(rec, default=str) + b"\n")
        # the dead letters naming the resident (one may outlive its journal record)
        lines.extend(
            orjson.dumps(c, default=str) + b"\n" for c in subjects.copies(runtime.site, state, subject)
        )
        # the sealed snapshot files under the resident's key, also those whose event is gone
        if sealer is not None:
            blob_dir = runtime.site.storage.resolved_blob_dir()
            snapshots = subjects.subject_snapshots(blob_dir, sealer, subject)
            lines.extend(orjson.dumps(b) + b"\n" for b in snapshots)
        return lines

    lines = await asyncio.to_thread(collect)
    pseudonym = await asyncio.to_thread(subjects.audit_pseudonym, state, sealer, subject)
    await asyncio.to_thread(
        audit.record,
        state,
        principal.name,
        "privacy_export",
        pseudonym,
        records=len(lines),
        kind=principal.kind,
    )
    return web.Response(
        body=b"".join(lines),
        content_type="application/x-ndjson",
        headers={
            "Content-Disposition": f'attachment; filename="subject-{pseudonym}.jsonl"',
            "X-Records": str(len(lines)),
            "Cache-Control": "no-store",
        },
    )


async def forget(request: web.Request) -> web.Response:
    from edge.privacy import subjects

    principal, runtime, sealer, state, subject = await _subject_request(request)
    if sealer is None:
        # records in clear: no key to delete, and nothing is erased; say what stays and what to do
        kept = await asyncio.to_thread(subjects.kept_without_key, runtime.site, state, subject)
        raise Problem(
            409,
            "Encryption at rest is off",
            subjects.forget_refused_without_key(kept),
            message_key="msg.privacy.encryption_off",
        )
    try:
        # audited by the forget itself: its entry is queued with the notice, before the key goes,
        # so an erasure interrupted after the key's deletion is still audited once
        done = await asyncio.to_thread(
            subjects.forget,
            runtime.site,
            sealer,
            state,
            subject,
            actor=principal.name,
            kind=principal.kind,
        )
    except subjects.ErasureUnfinished as exc:
        raise Problem(500, "Erasure unfinished", str(exc)) from exc
    # the subject_erased notice is journaled by the privacy component's own watch (within
    # NOTICE_INTERVAL_S): journaling it here too could race that watch into a duplicate notice
    return json_response(
        {
            "subject": done.subject_pseudonym,
            "had_key": done.had_key,
            "kept_in_clear": done.kept_in_clear,
            "recipients": done.recipients,
        }
    )


ROUTES = [
    web.get("/api/v1/privacy/report", privacy_report),
    web.post("/api/v1/privacy/subjects/export", export),
    web.post("/api/v1/privacy/subjects/forget", forget),
]


def setup(app: web.Application, runtime: Runtime) -> None:
    app.router.add_routes(ROUTES)
