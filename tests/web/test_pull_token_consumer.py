"""A pull token made through the API for a consumer id the site file does not declare is made (a
token can be the only thing naming a consumer), but the answer warns, naming the consumers the
site declares, so a misspelt id is seen at once; the audit entry and the token list say the
consumer is undeclared. A declared consumer's token comes without a warning."""

from __future__ import annotations

from pathlib import Path

from edge import audit
from tests.support.site import running_site
from tests.web.conftest import city_consumer_site, signed_in_admin


async def test_a_pull_token_for_an_undeclared_consumer_is_made_with_a_warning(tmp_path: Path) -> None:
    site = city_consumer_site(tmp_path)
    async with running_site(tmp_path, site) as rt, signed_in_admin(rt) as admin:
        made = await admin.json(
            "POST",
            "/api/v1/tokens",
            {"name": "feed", "scopes": ["pull"], "consumer": "city-platfrom"},
            expect=201,
        )
        assert made["consumer"] == "city-platfrom" and made["consumer_declared"] is False, made
        assert made["declared_consumers"] == ["city-platform"], made
        assert "'city-platfrom' is not declared" in made["warning"], made
        assert "city-platform" in made["warning"] and "typo" in made["warning"], made

        good = await admin.json(
            "POST",
            "/api/v1/tokens",
            {"name": "city", "scopes": ["pull"], "consumer": "city-platform"},
            expect=201,
        )
        assert good["consumer_declared"] is True and "warning" not in good, good

        entries = audit.entries(rt.state, 10, action="token_create")
        assert [(e["target"], e["detail"]["consumer_declared"]) for e in entries] == [
            ("city", True),
            ("feed", False),
        ]
        listed = {t["name"]: t for t in (await admin.json("GET", "/api/v1/tokens"))["tokens"]}
        assert listed["feed"]["consumer_declared"] is False and listed["city"]["consumer_declared"] is True
