"""The rules engine's manifest: the `rules:` section, the engine component, its HTTP API, the
`edge rules` commands and the rule-pack check of `edge check`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.plugins import Plugin, lazy, lazy_value

if TYPE_CHECKING:
    from edge.config import Site


def check_rule_packs(site: Site) -> list[str]:
    """Compile the rule packs the site names (rules.packs): every problem, one line each."""
    rules = site.sections.get("rules")
    packs: list[str] = list(getattr(rules, "packs", []) or [])
    if not packs:
        return []
    from edge.yamlpos import YamlError, read_text
    from rules.config import resolve_pack
    from rules.model import RulePackError, compile_pack

    allow = list(getattr(rules, "webhook_allow", None) or [])
    problems: list[str] = []
    for i, pack in enumerate(packs):
        path = resolve_pack(pack, site.source)
        try:
            compile_pack(read_text(path), str(path), webhook_allow=allow)
        except YamlError as exc:  # larger than the cap: refused before it is read whole
            problems.append(str(exc))
        except UnicodeDecodeError as exc:
            problems.append(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}")
        except OSError as exc:
            problems.append(
                f"{site.source}: rules.packs[{i}]: cannot read rule pack {pack!r} ({path}): "
                f"{exc.strerror or exc}"
            )
        except RulePackError as exc:
            problems.extend(str(p) for p in exc.problems)
    return problems


PLUGIN = Plugin(
    name="rules",
    sections={"rules": lazy_value("rules.config:RulesConfig")},
    # what the engine reads at each action or save; `enabled` and `packs` take effect at a start
    live_keys={
        "rules": (
            "webhook_allow",
            "webhook_timeout",
            "webhook_retries",
            "max_actions_per_minute",
            "window_backfill_rows",
            "window_memory_mb",
        )
    },
    component=lazy("rules.component:create"),
    routes=lazy("rules.api:setup"),
    openapi=lazy("rules.openapi:paths"),
    commands=lazy("rules.cli:register"),
    check=check_rule_packs,
    order=10,
    state_schemas={"rules": lazy_value("rules.store:MIGRATIONS")},
    restored_state={"rules": lazy("rules.store:restored")},
)
