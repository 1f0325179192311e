"""A rule keeps the YAML its author wrote, over the rules API on a real server: a pack imported,
edited and exported comes back byte for byte but for the edited line; enabling a rule rewrites
its `enabled:` line only; a rule created as JSON is shown in its fields' order; a misspelt key
is named with the key it looks like, with a message key the UI words in the reader's language."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from rules.model import RuleDoc, compile_pack, dump_pack, edited_text, load_rule_text, parse_rule, rule_text
from tests.rules.test_api import Client
from tests.support.site import running_site

PACK = """\
# Community rules: bins and health
# kept by the estate office
rules:
  # blood pressure: tell the nurse at once
  - id: bp-high
    name: 血压偏高 High blood pressure
    when: {event: blood_pressure}   # every reading
    if: payload['systolic_mmhg'] > 140
    notify: always
    severity: warning
    then:
      - alert: "{payload[resident]}: {payload[systolic_mmhg]} mmHg"

  - id: bin-full-east
    when: bin-east-*.fill_pct
    if: value > 85
    for: 1m   # shorthand for 60 s
    clear_if: value < 70
    notify: toggle
    then:
      - alert: "{device}: {value:.0f}% full"
# end of pack
"""


class TextClient(Client):
    async def send_text(self, method: str, path: str, text: str) -> tuple[int, Any]:
        headers = {**self.h, "Content-Type": "application/yaml"}
        async with self.s.request(method, self.base + path, data=text.encode(), headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


def _changed_lines(a: str, b: str) -> list[tuple[str, str]]:
    la, lb = a.splitlines(), b.splitlines()
    assert len(la) == len(lb), (a, b)
    return [(x, y) for x, y in zip(la, lb, strict=True) if x != y]


async def test_a_pack_survives_import_edit_enable_and_export(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        # the pack holds a health rule (bp-high): only a caller allowed sensitive data stores it
        tech = TextClient(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules", "admin"]))
        assert (await tech.send_text("POST", "/import", PACK))[0] == 200
        assert (await tech.call("GET", "/export"))[1] == PACK

        status, rule = await tech.call("GET", "/bin-full-east")
        assert status == 200
        assert rule["text"].splitlines()[1:5] == [
            "id: bin-full-east",
            "when: bin-east-*.fill_pct",
            "if: value > 85",
            "for: 1m   # shorthand for 60 s",
        ]
        status, body = await tech.send_text(
            "PUT", "/bin-full-east", rule["text"].replace("value > 85", "value > 90")
        )
        assert status == 200, body
        assert body["rule"]["if"] == "value > 90" and "# shorthand for 60 s" in body["text"]
        exported = (await tech.call("GET", "/export"))[1]
        assert _changed_lines(PACK, exported) == [("    if: value > 85", "    if: value > 90")]

        # a change that brings no text rewrites the changed key's line alone
        assert (await tech.call("POST", "/bp-high/disable", {}))[0] == 200
        status, rule = await tech.call("GET", "/bp-high")
        assert rule["enabled"] is False and "when: {event: blood_pressure}   # every reading" in rule["text"]
        assert "enabled: false" in rule["text"]
        again = (await tech.call("GET", "/export"))[1]
        assert again.count("# every reading") == 1 and "    enabled: false\n" in again

        # a version's text is what it was then, and restoring it restores that text
        status, history = await tech.call("GET", "/bin-full-east/versions")
        assert [v["version"] for v in history["versions"]] == [2, 1]
        assert "value > 85" in history["versions"][1]["text"]
        assert (await tech.call("POST", "/bin-full-east/versions/1/restore", {}))[0] == 200
        assert "if: value > 85\n" in (await tech.call("GET", "/bin-full-east"))[1]["text"]


async def test_a_json_rule_shows_its_fields_in_order_and_a_misspelt_key_is_named(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        tech = TextClient(session, rt.web_port, create_token(rt.state, "tech", ["read", "rules"]))
        rule = {"then": [{"alert": "x"}], "if": "value > 1", "when": "a-1.x", "id": "j"}
        assert (await tech.call("POST", "", rule))[0] == 201
        text = (await tech.call("GET", "/j"))[1]["text"]
        assert [line.split(":")[0] for line in text.splitlines() if not line.startswith(" ")] == [
            "id",
            "when",
            "if",
            "then",
        ]

        status, body = await tech.send_text("PUT", "/j", "id: j\nwhn: a-1.x\nthen:\n  - alert: x\n")
        assert status == 422
        assert body["message_key"] == "msg.rule.invalid"
        assert [(e["field"], e["message"], e["message_key"], e["args"]) for e in body["errors"]] == [
            (
                "whn",
                "unknown key 'whn' — did you mean 'when'?",
                "msg.rule.unknown_key_did_you_mean",
                {"key": "whn", "suggestion": "when"},
            )
        ]
        status, body = await tech.send_text("PUT", "/j", "id: j\nwhen: [a-1.x\n")
        assert status == 422 and body["errors"][0]["line"] == 3
        assert body["errors"][0]["message_key"] == "msg.yaml.syntax"
        assert "YAML syntax error" not in body["errors"][0]["message"]
        status, body = await tech.call("GET", "/nope")
        assert status == 404 and (body["message_key"], body["args"]) == (
            "msg.rules.not_found",
            {"id": "nope"},
        )
        status, body = await tech.send_text("PUT", "/j", "id: other\nwhen: a-1.x\n")
        assert status == 422 and body["message_key"] == "msg.rules.id_mismatch"


def test_an_unedited_pack_dumps_back_byte_for_byte_and_new_rules_follow_it() -> None:
    docs = [cr.rule.doc() for cr in compile_pack(PACK, "pack.yaml")]
    assert dump_pack(docs) == PACK
    fresh = parse_rule(load_rule_text("id: a-new\nwhen: x-1.y   # added in the UI\n")).rule.doc()
    both = dump_pack([fresh, *docs])
    assert both.startswith(PACK.split("# end of pack")[0])
    assert "  - id: a-new\n    when: x-1.y   # added in the UI\n" in both
    assert [cr.rule.id for cr in compile_pack(both)] == ["bp-high", "bin-full-east", "a-new"]


def test_an_edit_without_text_rewrites_only_the_keys_it_changed() -> None:
    source = "# east bins\nid: b\nwhen: bin-*.fill   # shorthand\nfor: 1m\nthen:\n  - alert: x\n"
    old = parse_rule(load_rule_text(source)).rule.doc()
    new = parse_rule({**old, "for": "5m"}).rule.doc()
    edited = edited_text(source, old, new)
    assert edited is not None
    assert _changed_lines(source, edited) == [("for: 1m", "for: 5m")]
    assert edited_text("{id: b, when: x.y}", old, new) is None
    assert isinstance(parse_rule(RuleDoc(old, source)).rule.doc(), RuleDoc)


async def test_a_site_pack_is_imported_with_its_text(tmp_path: Path) -> None:
    pack = tmp_path / "community.yaml"
    pack.write_text(PACK, encoding="utf-8")
    async with running_site(tmp_path, {"devices": [], "rules": {"packs": [str(pack)]}}, web=False) as rt:
        comp = rt.components["rules"]
        assert "when: {event: blood_pressure}   # every reading" in comp.store.get("bp-high").doc.source
        assert comp.export_pack() == PACK


def test_a_rule_stored_before_texts_were_kept_is_shown_in_field_order() -> None:
    # such rows hold their document with sorted keys (`when` last)
    stored = {
        "enabled": True,
        "id": "x",
        "if": "value > 1",
        "then": [{"alert": "x"}],
        "when": [{"point": "a.b"}],
    }
    keys = [line.split(":")[0] for line in rule_text(stored).splitlines() if line[:1].isalpha()]
    assert keys == ["id", "enabled", "when", "if", "then"]


def test_a_pack_rule_whose_lines_do_not_stand_alone_is_exported_as_it_is_now() -> None:
    # rule b's lines name an anchor of rule a: on their own they are not YAML
    pack = "rules:\n  - id: a\n    when: &w m-1.p\n  - id: b\n    when: *w\n    for: 1m\n"
    a, b = (cr.rule.doc() for cr in compile_pack(pack))
    assert a.source == "id: a\nwhen: &w m-1.p\n" and b.source is None
    edited = parse_rule({**b, "for": "5m"}).rule.doc()
    edited.place = b.place
    out = dump_pack([a, edited])
    assert [cr.rule.doc()["for"] for cr in compile_pack(out) if cr.rule.id == "b"] == ["5m"]
