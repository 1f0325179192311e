"""`RulesConfig`: the optional top-level `rules:` section of the site file, and the webhook
allow-list it holds (which destinations a rule's `webhook:` may reach)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edge.units import Duration

_HOSTNAME_RE = re.compile(
    r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\Z"
)


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
    #: where `webhook:` actions may post: `host` (any port) or `host:port`, `[v6]:port` for IPv6.
    #: Empty (the default): no webhooks. A rule author could otherwise post site data anywhere and
    #: probe the LAN through the journaled errors.
    webhook_allow: list[str] = Field(default_factory=list, max_length=200)
    #: per rule; firings beyond it are dropped, counted and reported (an event per burst)
    max_actions_per_minute: int = Field(60, ge=1, le=100_000)
    #: journal rows read at most to refill rule windows after a restart or a rule change (newest
    #: kept); bounds start-up on a huge journal. 0: windows start empty
    window_backfill_rows: int = Field(500_000, ge=0, le=50_000_000)
    #: memory the rules' live windows may take when full, all together (MiB): a rule whose new
    #: windows would take more is refused when it is saved, validated or imported. One window
    #: takes at most about 2.2 MB (longer ones are downsampled, see docs/rules.md)
    window_memory_mb: int = Field(256, ge=1, le=65_536)

    @field_validator("webhook_allow")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        for entry in v:
            parse_allow_entry(entry)  # raises ValueError naming the entry
        return v


def normal_host(host: str) -> str:
    """A host as the allow-list compares it: lower case, no trailing dot, IP addresses in their
    canonical form (so `0:0::1` and `::1` are one address)."""
    host = host.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def parse_allow_entry(entry: str) -> tuple[str, int | None]:
    """(host, port or None for any port) of one `webhook_allow` entry; ValueError says what is
    accepted."""
    what = (
        f"webhook_allow entry {entry!r} is not a host or host:port "
        "(e.g. central.example.org, 10.0.0.5:8443, [fd00::5]:443)"
    )
    if not isinstance(entry, str):
        raise ValueError(what)
    text = entry.strip().lower()
    port: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(what)
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host = text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or not _HOSTNAME_RE.match(host.rstrip(".")):
            raise ValueError(what) from None
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(what)
    return normal_host(host), int(port) if port is not None else None


def webhook_allowed(allow: Sequence[str], host: str, port: int) -> bool:
    """Whether the allow-list names this destination (`host` alone allows every port)."""
    host = normal_host(host)
    for entry in allow:
        h, p = parse_allow_entry(entry)
        if h == host and (p is None or p == port):
            return True
    return False


def allow_entry_for(host: str, port: int, scheme_port: int) -> str:
    """The `webhook_allow` entry that would let this destination through (for error messages)."""
    shown = f"[{host}]" if ":" in host else host
    return host if port == scheme_port else f"{shown}:{port}"


def resolve_pack(pack: str, site_source: str) -> Path:
    """Where a pack named in the site file is: an absolute path as it is; a relative one beside
    the site file, as every other path the site file names (`edge.validation.site_relative`), so
    `packs: [rules/waste.yaml]` is the same file whichever folder a command runs in. A pack found
    only from the working folder (a setup from before packs were looked for beside the site file
    first) is still found there; one found nowhere is named beside the site file."""
    path = Path(pack)
    if path.is_absolute():
        return path
    beside = Path(site_source).parent / pack
    if not beside.exists() and path.exists():
        return path
    return beside
