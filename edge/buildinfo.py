"""What a gateway runs, in three short strings a fleet compares: the version, the config hash and
the rules hash (`edge_build_info` on /metrics, `/api/v1/status`, `edge status --json`).

- the config hash covers the site file as loaded: its parsed content, written out canonically
  (JSON, keys sorted), so a comment, a blank line, indentation or key order changes nothing,
  while any value that would change what the gateway does changes the hash. The site file holds
  no secret (only `*_env`/`*_file` references), so the hash reveals none; a device profile the
  file names is outside it (it ships with the version).
- the rules hash covers the rules in force (the stored rules, each as its canonical document,
  enabled or not), whatever way they came in: a rule pack, the API or the UI.

Both are the first 16 hex digits of a SHA-256: enough for two gateways of one fleet never to
collide by chance, short enough for a label and a table column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from edge import __version__

HASH_DIGITS = 16


def digest(data: Any) -> str:
    """The canonical hash of a JSON-like value (dicts by sorted keys, no whitespace)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_DIGITS]


def config_hash(raw: dict[str, Any]) -> str:
    """The hash of a site file's parsed content (`Site.raw`)."""
    return digest(raw)


def rules_hash(docs: Iterable[dict[str, Any]]) -> str:
    """The hash of a set of rule documents, in any order (sorted by their `id`)."""
    return digest(sorted(docs, key=lambda d: str(d.get("id", ""))))


#: the rules hash of a gateway without rules (no rules engine, or no rule stored)
NO_RULES = rules_hash([])


@runtime_checkable
class RulesInForce(Protocol):
    """A component that holds rules says which: their documents, for the rules hash."""

    def rule_documents(self) -> list[dict[str, Any]]: ...


def build_info(config: str, components: Iterable[object]) -> dict[str, str]:
    """`version`, `config_hash` (given: `config_hash` of the site's raw content) and
    `rules_hash` of a running site."""
    docs: list[dict[str, Any]] = []
    for component in components:
        if isinstance(component, RulesInForce):
            docs.extend(component.rule_documents())
    return {"version": __version__, "config_hash": config, "rules_hash": rules_hash(docs)}
