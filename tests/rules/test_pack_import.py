"""Rule packs named in the site file: each rule is imported once, at the first start that sees it.
A pack added later or a rule added to a pack arrives at the next start; a rule edited or deleted
in the UI stays as the technician left it; a broken pack imports nothing and is retried."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.site import running_site


def rule(rule_id: str, threshold: int) -> dict[str, Any]:
    return {
        "id": rule_id,
        "when": [{"point": "bin.fill"}],
        "if": f"value > {threshold}",
        "then": [{"alert": f"{rule_id} over {threshold}"}],
    }


def write_pack(path: Path, *rules: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump({"rules": list(rules)}))
    return str(path)


def site(*packs: str) -> str:
    return (
        "devices:\n  - {id: bin, driver: sim, points: [{name: fill, signal: constant, value: 1, interval: 1h}]}\n"
        f"rules: {{packs: {list(packs)}}}\n"
    )


def stored(rt: Any) -> dict[str, Any]:
    return {s.id: s for s in rt.components["rules"].store.list_rules()}


async def test_each_pack_rule_arrives_once_and_edits_and_deletions_survive(tmp_path: Path) -> None:
    waste = write_pack(tmp_path / "waste.yaml", rule("bin-full", 85), rule("bin-empty", 5))
    async with running_site(tmp_path, site(waste), web=False) as rt:
        assert set(stored(rt)) == {"bin-full", "bin-empty"}
        comp = rt.components["rules"]
        comp.put(rule("bin-full", 90), "tech", "update")  # a technician tunes it...
        comp.delete("bin-empty", "tech")  # ...and drops the other

    # a rule added to the pack (a software update) and a second pack added to the site file
    write_pack(tmp_path / "waste.yaml", rule("bin-full", 85), rule("bin-empty", 5), rule("bin-stuck", 99))
    energy = write_pack(tmp_path / "energy.yaml", rule("meter-high", 1000))
    async with running_site(tmp_path, site(waste, energy), web=False) as rt:
        rules = stored(rt)
        assert set(rules) == {"bin-full", "bin-stuck", "meter-high"}  # bin-empty stays deleted
        assert rules["bin-full"].doc["if"] == "value > 90" and rules["bin-full"].version == 2
        assert rules["bin-stuck"].version == 1 and rules["meter-high"].version == 1

    async with running_site(tmp_path, site(waste, energy), web=False) as rt:  # nothing new: no change
        assert {i: s.version for i, s in stored(rt).items()} == {
            "bin-full": 2,
            "bin-stuck": 1,
            "meter-high": 1,
        }


async def test_a_broken_pack_imports_nothing_and_is_retried_once_fixed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump({"rules": [rule("ok-one", 1), {**rule("bad-one", 2), "if": "value >"}]}))
    async with running_site(tmp_path, site(str(broken)), web=False) as rt:
        assert stored(rt) == {}
        db = rt.journal.path
    from edge.store import Journal

    journal = Journal.open_readonly(db)
    try:
        errors = [e for e in journal.tail(50) if e.get("kind") == "rule_pack_error"]
    finally:
        journal.close_sync()
    assert errors and "bad-one" in errors[0]["payload"]["error"]
    write_pack(broken, rule("ok-one", 1), rule("bad-one", 2))
    async with running_site(tmp_path, site(str(broken)), web=False) as rt:
        assert set(stored(rt)) == {"ok-one", "bad-one"}


async def test_a_state_db_from_before_counts_the_listed_packs_as_imported(tmp_path: Path) -> None:
    waste = write_pack(tmp_path / "waste.yaml", rule("bin-full", 85))
    async with running_site(tmp_path, site(), web=False) as rt:
        rt.components["rules"].store.set_meta("packs_imported", "1")  # written by an older version
    async with running_site(tmp_path, site(waste), web=False) as rt:
        assert stored(rt) == {}  # as before: packs were for the first start only
    energy = write_pack(tmp_path / "energy.yaml", rule("meter-high", 1000))
    async with running_site(tmp_path, site(waste, energy), web=False) as rt:
        assert set(stored(rt)) == {"meter-high"}  # a pack added since arrives


async def test_a_site_pack_or_a_rule_with_a_webhook_the_site_does_not_allow_is_refused(
    tmp_path: Path,
) -> None:
    from rules.model import RuleErrors

    hook = {**rule("bin-hook", 80), "then": [{"webhook": "https://hooks.example.net/bin"}]}
    pack = write_pack(tmp_path / "hooks.yaml", hook, rule("bin-full", 85))
    async with running_site(tmp_path, site(pack), web=False) as rt:
        assert stored(rt) == {}  # all or nothing: the pack is refused whole
        comp = rt.components["rules"]
        with pytest.raises(RuleErrors, match=r"hooks\.example\.net.*webhook_allow"):
            comp.put(hook, "tech", "update")  # every way in goes through put()
        assert comp.store.get("bin-hook") is None
