"""Data minimisation in the local UI: who may see personal and sensitive values (PIPL).

Each role sees data up to a privacy class: viewers `public`, technicians `personal` (they
commission gates whose events carry plates), admins `sensitive` (health measurements). Tokens
see `public` unless they hold the admin scope. Above that class a reading's value and an event's
payload are replaced by a marker, so a viewer can still see *that* the kiosk measured, not *what*.
An event's class is `edge.model.event_privacy` (the rule the push sinks and the pull API apply
too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge.model import PRIVACY_RANK as RANK
from edge.model import Privacy, event_privacy

if TYPE_CHECKING:
    from edge.api.auth import Principal
    from edge.runtime import Runtime

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


def minimise(
    runtime: Runtime, principal: Principal | None, records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Records with values above the caller's class replaced by a `redacted` marker (in place)."""
    limit = limit_for(principal)
    if limit >= RANK[Privacy.SENSITIVE]:
        return records
    for rec in records:
        rank = record_rank(runtime, rec)
        if rank <= limit:
            continue
        klass = next(p for p, r in RANK.items() if r == rank)
        if rec.get("type") == "reading":
            rec["value"] = None
            rec["redacted"] = str(klass)
        else:
            rec["payload"] = {"privacy": str(klass), "redacted": True}
    return records


def minimise_history(runtime: Runtime, principal: Principal | None, point: str) -> bool:
    """True when the caller may not see this point's values."""
    info = runtime.hub.points.get(point)
    return info is not None and RANK[info.privacy] > limit_for(principal)
