"""Data minimisation in the local UI: who may see personal and sensitive values (PIPL).

Each role sees data up to a privacy class: viewers `public`, technicians `personal` (they
commission gates whose events carry plates), admins `sensitive` (health measurements). Tokens
see `public` unless they hold the admin scope. Above that class a reading's value and an event's
payload are replaced by a marker, so a viewer can still see *that* the kiosk measured, not *what*;
such an event's severity, and the rule that raised an alert, are replaced too.
An event's class is `edge.model.event_privacy` (the rule the push sinks and the pull API apply
too).

Reads are audited here too (PIPL art. 51): the walk that redacts counts the records each caller
did see per class above `public`, and `audit_reads` writes one `read` entry per response that
returned any; public-only responses write nothing, so a dashboard refresh does not grow the log.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import TYPE_CHECKING, Any

from edge import audit
from edge.model import PRIVACY_RANK as RANK
from edge.model import Privacy, event_privacy

if TYPE_CHECKING:
    from edge.api.auth import Principal
    from edge.runtime import Runtime

#: records a response returned, per class above public: what `audit_reads` writes
ReadCounts = Counter[str]

REDACTED = "redacted"  # an event's severity or source the caller may not see

ROLE_LIMIT = {"viewer": Privacy.PUBLIC, "technician": Privacy.PERSONAL, "admin": Privacy.SENSITIVE}


def limit_for(principal: Principal | None) -> int:
    if principal is None:
        return 0
    if principal.role in ROLE_LIMIT:
        return RANK[ROLE_LIMIT[principal.role]]
    return RANK[Privacy.SENSITIVE] if "admin" in principal.scopes else 0


def record_rank(runtime: Runtime, rec: dict[str, Any]) -> int:
    points = runtime.hub.points
    if rec.get("type") == "reading":
        info = points.get(rec.get("point", ""))
        return RANK[info.privacy] if info is not None else 0
    return RANK[event_privacy(str(rec.get("kind", "")), rec.get("payload"), points)]


_CLASS_OF_RANK = {r: str(p) for p, r in RANK.items()}


def count_read(counts: ReadCounts, rank: int, n: int = 1) -> None:
    if rank > 0:
        counts[_CLASS_OF_RANK[rank]] += n


def count_records(runtime: Runtime, records: list[dict[str, Any]]) -> ReadCounts:
    """The records above public a caller receives, per class (a pull page after its filter)."""
    counts: ReadCounts = Counter()
    for rec in records:
        count_read(counts, record_rank(runtime, rec))
    return counts


def minimise(
    runtime: Runtime,
    principal: Principal | None,
    records: list[dict[str, Any]],
    counts: ReadCounts | None = None,
) -> list[dict[str, Any]]:
    """Records with values above the caller's class replaced by a `redacted` marker (in place);
    the ones left readable above public are added to `counts`."""
    limit = limit_for(principal)
    devices: set[str] | None = None
    for rec in records:
        rank = record_rank(runtime, rec)
        if rank <= limit:
            if counts is not None:
                count_read(counts, rank)
            continue
        klass = next(p for p, r in RANK.items() if r == rank)
        if rec.get("type") == "reading":
            rec["value"] = None
            rec["redacted"] = str(klass)
        else:
            rec["payload"] = {"privacy": str(klass), "redacted": True}
            # an event's severity says how bad the measurement was, and a rule's alert or event
            # is named by the rule, whose id names its condition (`bp-very-high`): both go; a
            # device's event keeps its device, so the caller sees *that* the kiosk measured
            rec["severity"] = REDACTED
            if devices is None:
                devices = {d.id for d in runtime.site.devices}
            if rec.get("source") not in devices:
                rec["source"] = REDACTED
    return records


def redacted_match(records: list[dict[str, Any]], *fields: str) -> list[dict[str, Any]]:
    """`records` (minimised) without those whose `fields` the redaction hid: a query filtered by
    severity or source must not say by its answer what the record no longer shows."""
    return [r for r in records if all(r.get(f) != REDACTED for f in fields)]


def minimise_history(runtime: Runtime, principal: Principal | None, point: str) -> bool:
    """True when the caller may not see this point's values."""
    info = runtime.hub.points.get(point)
    return info is not None and RANK[info.privacy] > limit_for(principal)


def point_rank(runtime: Runtime, point: str) -> int:
    info = runtime.hub.points.get(point)
    return RANK[info.privacy] if info is not None else 0


async def audit_reads(
    runtime: Runtime, principal: Principal, target: str, counts: ReadCounts, **extra: Any
) -> None:
    """One `read` entry for a response that returned data above public: who, the route, the
    records per class (and `extra`). Nothing for a public-only response. The write is a state DB
    transaction with an fsync: off the event loop."""
    state = getattr(runtime, "state", None)
    if state is None or not any(counts.values()):
        return
    detail: dict[str, Any] = {"kind": principal.kind, "classes": dict(sorted(counts.items())), **extra}
    if principal.consumer:
        detail["consumer"] = principal.consumer
    await asyncio.to_thread(audit.record, state, principal.name, "read", target, **detail)


def route_of(method: str, path: str) -> str:
    """The audit target of a read: method and path, without the query string."""
    return f"{method} {path}"
