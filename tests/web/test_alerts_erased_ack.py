"""The alerts page, in headless Chromium, shows an acknowledgement whose user and comment cannot
be read any more as it shows one withheld from the caller: "acknowledged", without a name. One
is `erased` once its user is forgotten (`edge privacy forget`), `sealed` when the site runs
without the master key that opens it; it read "acknowledged by undefined"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge.privacy.keyfile import create_master_key
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.web.conftest import PASSWORD
from tests.web.test_ack_sealed import acknowledged, acks_shown, site_doc
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, open_page, site_context, watched_page

__all__ = ["browser"]  # the fixture, used by name


@pytest.mark.parametrize("how", ["erased", "sealed"])
async def test_an_acknowledgement_no_one_can_read_shows_without_a_name(
    tmp_path: Path, browser: Any, how: str
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    config = site_file(tmp_path, site_doc(master))
    with_key = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, with_key) as rt:
        await acknowledged(rt)

    if how == "erased":
        done = edge_cli("privacy", "forget", "-c", str(config), "--subject", "boss")
        assert done.returncode == 0, done.stderr
        doc = with_key
    else:  # the same site started without its master key: nothing here opens the seal
        doc = site_file(tmp_path, site_doc(None)).read_text(encoding="utf-8")

    async with running_site(tmp_path, doc) as rt:
        listed, _active = await acks_shown(rt)
        assert listed == {"ts": listed["ts"], how: True}  # what the page is given
        for locale, acked in (("en-US", "acknowledged"), ("zh-CN", "已确认")):
            ctx = await site_context(browser, rt, locale)
            try:
                resp = await ctx.request.post(
                    "/api/v1/auth/login", data={"name": "boss", "password": PASSWORD}
                )
                assert resp.status == 200
                page = await watched_page(ctx)
                await open_page(page, "/alerts")
                cell = page.locator('tr[data-kind="alert"] td.ack')
                await cell.wait_for(timeout=T)
                text = (await cell.inner_text()).strip()
                assert text == acked, (locale, text)
                assert not page.errors, page.errors
            finally:
                await ctx.close()
