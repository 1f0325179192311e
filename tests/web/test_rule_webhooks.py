"""A rule whose webhook goes to a destination the site file does not allow is refused when it is
saved, validated, imported, restored or enabled, with a message naming the host and the key."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Client

HOOK = {"webhook": {"url": "https://central.example.org/hook"}}
RULE: dict[str, Any] = {"id": "bin-hook", "when": "gate-north.power_kw", "if": "value > 100", "then": [HOOK]}


def _says_why(body: dict[str, Any]) -> None:
    assert body["title"] == "Invalid rule"
    assert "webhook to central.example.org is not allowed" in body["detail"]
    assert "'central.example.org'" in body["detail"] and "webhook_allow" in body["detail"]
    assert body["errors"][0]["field"] == "then[0].webhook.url"


async def test_a_webhook_to_a_host_not_allowed_is_refused_and_nothing_is_stored(admin: Client) -> None:
    _says_why(await admin.json("POST", "/api/v1/rules/validate", RULE, expect=422))
    _says_why(await admin.json("POST", "/api/v1/rules", RULE, expect=422))
    await admin.json("GET", "/api/v1/rules/bin-hook", expect=404)

    quiet = {**RULE, "then": [{"alert": "{value}"}]}
    await admin.json("POST", "/api/v1/rules", quiet, expect=201)
    _says_why(await admin.json("PUT", "/api/v1/rules/bin-hook", RULE, expect=422))
    stored = await admin.json("GET", "/api/v1/rules/bin-hook")
    assert stored["version"] == 1 and "webhook" not in str(stored["rule"])

    pack = "rules:\n  - id: pack-hook\n    when: gate-north.power_kw\n    then:\n      - webhook: http://10.0.0.9/\n"
    resp = await admin.request(
        "POST", "/api/v1/rules/import", data=pack.encode(), headers={"Content-Type": "application/yaml"}
    )
    assert resp.status == 422
    problems = (await resp.json())["errors"]
    assert problems == [
        "<upload>:5: rule pack-hook:then[0].webhook.url: line 1, column 1: webhook to 10.0.0.9 is not allowed on this site: "
        "add '10.0.0.9' to `rules: webhook_allow:` in the site file (it allows no webhook now)"
    ]
    await admin.json("GET", "/api/v1/rules/pack-hook", expect=404)
