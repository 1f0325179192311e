"""The rules engine's manifest: the `rules:` section, the engine component, its HTTP API, the
`edge rules` commands and the rule-pack check of `edge check`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from edge.plugins import Plugin

if TYPE_CHECKING:
    import argparse

    from aiohttp import web
    from pydantic import BaseModel

    from edge.config import Site
    from edge.plugins import ComponentContext
    from edge.runtime import Runtime


def section() -> type[BaseModel]:
    from rules.config import RulesConfig

    return RulesConfig


def component(ctx: ComponentContext) -> Any:
    from rules.component import create

    return create(ctx)


def routes(app: web.Application, runtime: Runtime) -> None:
    from rules import api

    api.setup(app, runtime)


def openapi() -> Mapping[str, Any]:
    from rules import openapi

    return openapi.paths()


def commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from rules import cli

    cli.register(sub)


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
                f"{site.source}: rules.packs[{i}]: cannot read rule pack {pack!r}: {exc.strerror or exc}"
            )
        except RulePackError as exc:
            problems.extend(str(p) for p in exc.problems)
    return problems


PLUGIN = Plugin(
    name="rules",
    sections={"rules": section},
    live_sections=("rules",),
    component=component,
    routes=routes,
    openapi=openapi,
    commands=commands,
    check=check_rule_packs,
    order=10,
)
