"""An alert is acknowledged once. A second acknowledgement (another technician whose page still
offered the button) is refused with 409 saying who acknowledged it and when; the first one's
user, comment and time stay in the state DB, and neither the audit log nor the journal records
the refused one. The alerts page then shows the first acknowledgement in the row and says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from edge import audit
from edge.api.tokens import create_token
from edge.model import Event
from tests.support.site import running_site
from tests.web.conftest import PASSWORD, SITE, make_user, signed_in_admin
from tests.web.test_browser import T
from tests.web.test_browser_pages import browser, open_page, site_context, watched_page

__all__ = ["browser"]

FIRST = "cleaner dispatched 06:20, ticket #4711"


async def _fired_alert(rt: Any, reader: Any) -> int:
    rt.hub.publish_event(Event("alert", "bin-full", "warning", {"state": "fired", "message": "92%"}))
    await rt.journal.flush()
    events = (await reader.json("GET", "/api/v1/events?kind=alert"))["events"]
    return int(events[0]["seq"])


def _stored(rt: Any, seq: int) -> tuple[Any, ...]:
    with rt.state.lock:
        return tuple(
            rt.state.conn.execute("SELECT user, comment, ts FROM ui_acks WHERE seq=?", (seq,)).fetchone()
        )


async def test_a_second_acknowledgement_is_refused_and_the_first_stays(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        tech1 = await make_user(boss, rt, "tech1", "technician")
        tech2 = await make_user(boss, rt, "tech2", "technician")
        try:
            seq = await _fired_alert(rt, boss)
            await tech1.json("POST", f"/api/v1/alerts/{seq}/ack", {"comment": FIRST})
            first = _stored(rt, seq)
            assert first[:2] == ("tech1", FIRST)

            resp = await tech2.request("POST", f"/api/v1/alerts/{seq}/ack", json={"comment": "ok"})
            assert resp.status == 409
            body = await resp.json(content_type=None)
            assert body["message_key"] == "msg.alert.already_acked"
            assert body["args"]["user"] == "tech1" and "Asia/Shanghai" in body["args"]["at"]
            assert "acknowledged by tech1" in body["detail"]
            assert body["ack"] == {"user": "tech1", "comment": FIRST, "ts": first[2]}
            assert _stored(rt, seq) == first

            # a caller who may not read the acknowledger's name is told only when
            token = create_token(rt.state, "bms", ["read", "write"])
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{boss.base}/api/v1/alerts/{seq}/ack",
                    json={"comment": "x"},
                    headers={"Authorization": f"Bearer {token}"},
                ) as r:
                    assert r.status == 409
                    withheld = await r.json(content_type=None)
            assert withheld["message_key"] == "msg.alert.already_acked_at"
            assert "tech1" not in str(withheld) and FIRST not in str(withheld)
            assert _stored(rt, seq) == first

            await rt.journal.flush()
            journaled = (await boss.json("GET", "/api/v1/events?kind=alert_ack"))["events"]
            assert [(e["payload"]["seq"], e["payload"]["user"]) for e in journaled] == [(seq, "tech1")]
            acks = audit.entries(rt.state, action="alert_ack")
            assert [(e["actor"], e["target"]) for e in acks] == [("tech1", str(seq))]
            listed = (await boss.json("GET", "/api/v1/events?kind=alert"))["events"][0]
            assert listed["ack"]["user"] == "tech1" and listed["ack"]["comment"] == FIRST
        finally:
            await tech1.close()
            await tech2.close()


async def _page_of(browser: Any, rt: Any, name: str) -> Any:
    ctx = await site_context(browser, rt)
    resp = await ctx.request.post("/api/v1/auth/login", data={"name": name, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return await watched_page(ctx)


async def _acknowledge(page: Any, seq: int, comment: str) -> None:
    await page.click(f"button[data-ack='{seq}']")
    await page.fill("dialog[open] #ack-comment", comment)
    await page.click("dialog[open] button[data-act=ok]")


async def test_the_alerts_page_shows_the_first_acknowledgement_when_its_own_is_refused(
    tmp_path: Path, browser: Any
) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        for name in ("tech1", "tech2"):
            await (await make_user(boss, rt, name, "technician")).close()
        seq = await _fired_alert(rt, boss)
        one, two = await _page_of(browser, rt, "tech1"), await _page_of(browser, rt, "tech2")
        for page in (one, two):
            await open_page(page, "/alerts")
            await page.wait_for_selector(f"button[data-ack='{seq}']", timeout=T)
        await _acknowledge(one, seq, FIRST)
        await one.wait_for_selector(f"tr[data-seq='{seq}'] .acked", timeout=T)
        first = _stored(rt, seq)

        await _acknowledge(two, seq, "ok")  # its page still offers the button
        await two.wait_for_selector("#ack-refused", timeout=T)
        refused = await two.inner_text("#ack-refused")
        assert "tech1" in refused and "first acknowledgement stays" in refused
        cell = await two.inner_text(f"tr[data-seq='{seq}'] td.ack")
        assert "tech1" in cell and FIRST in cell
        assert await two.locator(f"button[data-ack='{seq}']").count() == 0
        assert _stored(rt, seq) == first
        assert one.errors == [] and two.errors == []
