"""Who changed a rule is a staff account's name, personal data as an alert acknowledger's name is:
a caller below `personal` (a viewer, a token without `admin`) is not shown another's name in a
rule (`updated_by`), its versions (`actor`), a 409 or an import's dry run, only its own; a
technician or admin is shown it, and each answer that shows names is audited as a personal read,
as the alerts route audits the acknowledgements it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from edge import audit
from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import signed_in_roles
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, open_page
from tests.web.test_browser_snapshots import _page_as

__all__ = ["browser"]  # the fixture, shared with the module it comes from

BASE = "/api/v1/rules"
RULE = {"id": "bin-full", "when": "bin-*.fill_pct", "if": "value >= 85", "then": [{"alert": "full"}]}
PACK = "rules:\n  - id: bin-full\n    when: bin-*.fill_pct\n    if: value >= 90\n    then:\n      - alert: full\n"


def reads(rt: Any) -> list[tuple[str, str, dict[str, int]]]:
    """(actor, route, classes) of each read entry, oldest first."""
    entries = audit.entries(rt.state, 100, action="read")
    return [(e["actor"], e["target"], e["detail"]["classes"]) for e in reversed(entries)]


async def test_a_staff_name_is_shown_only_up_to_personal_and_audited(tmp_path: Path) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as session:
        assert rt.state is not None
        async with signed_in_roles(rt) as clients:
            tech, viewer = clients["technician"], clients["viewer"]
            await tech.json("POST", BASE, RULE, expect=201)
            # a rule a pack brought at start: the gateway stored it, no person did
            rt.components["rules"].put({**RULE, "id": "bin-empty", "if": "value < 5"}, "system", "import")

            # a viewer: neither in the rule nor in its versions; the gateway's own name it is shown
            listed = (await viewer.json("GET", BASE))["rules"]
            assert {r["id"]: r["updated_by"] for r in listed} == {"bin-empty": "system", "bin-full": None}
            assert (await viewer.json("GET", f"{BASE}/bin-full"))["updated_by"] is None
            [version] = (await viewer.json("GET", f"{BASE}/bin-full/versions"))["versions"]
            assert version["actor"] is None and version["action"] == "create"

            # a token of the public class that may read and change rules: nor in a 409 or a dry run
            token = create_token(rt.state, "script", ["read", "rules"])
            headers = {"Authorization": f"Bearer {token}"}
            url = f"http://127.0.0.1:{rt.web_port}{BASE}"
            async with session.delete(f"{url}/bin-full", headers={**headers, "If-Match": '"9"'}) as resp:
                assert resp.status == 409
                refused = await resp.json()
            assert refused["updated_by"] is None and refused["current_version"] == 1, refused
            assert "technician" not in str(refused)
            dry = {**headers, "Content-Type": "application/yaml"}
            async with session.post(f"{url}/import?dry_run=1", data=PACK, headers=dry) as resp:
                assert resp.status == 200
                [change] = (await resp.json())["changes"]
            assert change["updated_by"] is None and change["action"] == "create", change
            # its own name it is shown
            async with session.post(f"{url}/bin-full/disable", headers=headers) as resp:
                assert resp.status == 200 and (await resp.json())["updated_by"] == "script"
            async with session.get(f"{url}/bin-full/versions", headers=headers) as resp:
                assert [v["actor"] for v in (await resp.json())["versions"]] == ["script", None]
            assert reads(rt) == []

            # a technician (personal) is shown every name, each answer audited as a personal read;
            # the gateway's own is no one's
            assert (await tech.json("GET", f"{BASE}/bin-empty"))["updated_by"] == "system"
            assert reads(rt) == []
            assert (await tech.json("GET", f"{BASE}/bin-full"))["updated_by"] == "script"
            versions = (await tech.json("GET", f"{BASE}/bin-full/versions"))["versions"]
            assert [v["actor"] for v in versions] == ["script", "technician"]
            refused = await tech.json("DELETE", f"{BASE}/bin-full", headers={"If-Match": '"1"'}, expect=409)
            assert refused["updated_by"] == "script" and "script" in refused["detail"]
            assert reads(rt) == [
                ("technician", f"GET {BASE}/bin-full", {"personal": 1}),
                ("technician", f"GET {BASE}/bin-full/versions", {"personal": 1}),
                ("technician", f"DELETE {BASE}/bin-full", {"personal": 1}),
            ]


async def test_the_rule_page_shows_a_viewer_its_versions_without_names(tmp_path: Path, browser: Any) -> None:
    async with running_site(tmp_path, {"devices": []}) as rt:
        async with signed_in_roles(rt) as clients:
            await clients["technician"].json("POST", BASE, RULE, expect=201)
            await clients["technician"].json("POST", f"{BASE}/bin-full/disable")
        for role, shown in (("viewer", False), ("technician", True)):
            page = await _page_as(browser, rt, role)
            await open_page(page, "/rules/bin-full")
            listed = page.locator("#rule-versions ul.versions li")
            await listed.nth(1).wait_for(timeout=T)
            said = await page.inner_text("#rule-versions")
            assert said.count("v1") == 1 and said.count("v2") == 1, said
            assert ("technician" in said) is shown, (role, said)
            assert page.errors == []
