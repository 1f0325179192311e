"""The server-message catalogues (`edge/web/static/i18n/messages.<lang>.json`) the UI words
problem+json `message_key`s with: both languages have the same keys with the same placeholders,
every key the code names is in both, and none shadows a key of the UI's own catalogue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp

from edge.api.problem import TITLE_KEYS
from edge.api.tokens import create_token
from rules.model import PYDANTIC_KEYS
from tests.support.site import running_site

ROOT = Path(__file__).resolve().parents[2]
I18N = ROOT / "edge/web/static/i18n"
LANGS = ("en", "zh-CN")
KEY_IN_CODE = re.compile(r"""["']?message_key["']?\s*[=:]\s*["'](msg\.[a-z_.]+)["']""")


def _catalogue(lang: str) -> dict[str, str]:
    data = json.loads((I18N / f"messages.{lang}.json").read_text(encoding="utf-8"))
    assert isinstance(data, dict) and all(isinstance(v, str) for v in data.values())
    return data


def _placeholders(template: str) -> set[str]:
    return set(re.findall(r"\{(\w+)\}", template))


def _keys_in_code() -> set[str]:
    found = set(TITLE_KEYS.values()) | set(PYDANTIC_KEYS.values())
    for folder in ("edge", "rules", "drivers"):
        for path in (ROOT / folder).rglob("*.py"):
            found |= set(KEY_IN_CODE.findall(path.read_text(encoding="utf-8")))
    return found


def test_both_catalogues_have_the_same_keys_and_placeholders() -> None:
    en, zh = (_catalogue(lang) for lang in LANGS)
    assert sorted(en) == sorted(zh)
    assert {k: _placeholders(v) for k, v in en.items()} == {k: _placeholders(v) for k, v in zh.items()}
    assert all(k.startswith("msg.") for k in en)
    # a zh-CN message is written in Chinese (names like YAML or JSON aside)
    assert [k for k, v in zh.items() if not re.search(r"[\u4e00-\u9fff]", v)] == []


def test_every_key_the_code_names_is_in_both_catalogues() -> None:
    used = _keys_in_code()
    assert len(used) > 40  # the scan finds the keys (a broken pattern would find none)
    for lang in LANGS:
        assert sorted(used - _catalogue(lang).keys()) == [], lang


def test_no_server_message_shadows_a_key_of_the_ui_catalogue() -> None:
    for lang in LANGS:
        ui = json.loads((I18N / f"{lang}.json").read_text(encoding="utf-8"))
        assert not set(ui) & set(_catalogue(lang)), lang


async def test_refusals_and_not_found_carry_their_message_key(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        base = f"http://127.0.0.1:{rt.web_port}/api/v1"
        viewer = {"Authorization": f"Bearer {create_token(rt.state, 'viewer', ['read'])}"}
        cases = [
            ("POST", "/rules/validate", viewer, 403, "msg.auth.forbidden"),
            ("GET", "/rules", {}, 401, "msg.auth.required"),
            ("GET", "/no-such-thing", viewer, 404, "msg.http.not_found"),
            ("GET", "/rules/nope", viewer, 404, "msg.rules.not_found"),
        ]
        en, zh = _catalogue("en"), _catalogue("zh-CN")
        for method, path, headers, status, key in cases:
            async with session.request(method, base + path, headers=headers, json={}) as resp:
                body = await resp.json(content_type=None)
            assert (resp.status, body.get("message_key")) == (status, key), (path, body)
            assert key in en and key in zh
            assert _placeholders(en[key]) <= set(body["args"]), (key, body["args"])
