"""`RulesConfig`: the optional top-level `rules:` section of the site file."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edge.units import Duration


class RulesConfig(BaseModel):
    """`rules: {packs: [deploy/rules/parking.yaml], webhook_timeout: 5s, max_actions_per_minute: 60}`"""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    #: rule packs (YAML): each rule is imported into the state database once, at the first start
    #: that sees it (a pack added later, or a rule added to a pack, arrives at the next start);
    #: later edits and deletions happen in the UI/API and are never undone by a restart
    packs: list[str] = Field(default_factory=list)
    webhook_timeout: Duration = 5.0
    webhook_retries: int = Field(3, ge=0, le=10)
    #: per rule; firings beyond it are dropped, counted and reported (an event per burst)
    max_actions_per_minute: int = Field(60, ge=1, le=100_000)
    #: journal rows read at most to refill rule windows after a restart or a rule change (newest
    #: kept); bounds start-up on a huge journal. 0: windows start empty
    window_backfill_rows: int = Field(500_000, ge=0, le=50_000_000)


def resolve_pack(pack: str, site_source: str) -> Path:
    """Where a pack named in the site file is: as written (absolute, or found from the working
    directory), else relative to the site file — as a technician writing `packs: [rules/waste.yaml]`
    next to the site file means."""
    path = Path(pack)
    if path.is_absolute() or path.exists():
        return path
    return Path(site_source).parent / pack
