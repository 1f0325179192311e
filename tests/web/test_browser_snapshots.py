"""Snapshot thumbnails on the alerts page, in headless Chromium against an in-process runtime with
the demo's parking camera reading the demo video: a technician or admin sees the redacted image
(it really loads, through the session cookie) and opens it full size; a viewer, who gets the event
without its payload, sees a line of text and no broken image; a pruned blob is no broken image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.demo.site import DEMO_CAMERA, demo_site, write_demo_video
from edge.model import Quality
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import PASSWORD
from tests.web.test_browser import SHOTS, T
from tests.web.test_browser_pages import browser, logged_in_page, site_context, watched_page

__all__ = ["browser"]  # the fixture, shared with test_browser_pages

BROKEN_IMAGES = "() => [...document.images].filter((i) => i.complete && i.naturalWidth === 0).length"


async def open_snapshots(page: Any) -> None:
    """The alerts page filtered to snapshots, once rendered (app.js marks #view ready with the path)."""
    await page.goto("/alerts?kind=snapshot")
    await page.wait_for_function(
        "() => document.getElementById('view')?.dataset.ready === '/alerts'", timeout=T
    )
    await page.wait_for_function("() => document.getElementById('events')?.dataset.loaded", timeout=T)


async def _snapshot_taken(tmp_path: Path, rt: Any) -> dict[str, Any]:
    """Wait for the camera's frames, ask it for a snapshot; returns the event's payload."""
    fps = f"{DEMO_CAMERA}.fps"
    await until(
        lambda: (r := rt.hub.latest.get(fps)) is not None and r.quality == Quality.GOOD and r.value > 0,
        30,
        what="frames from the demo video",
    )
    result = await rt.hub.write(f"{DEMO_CAMERA}.snapshot", True, source="test")
    assert result.ok, result.reason
    await rt.journal.flush()
    rows: Any = await until(
        lambda: [r for r in rt.journal.read(0, 100000) if r["type"] == "event" and r["kind"] == "snapshot"],
        20,
        what="the snapshot event",
    )
    return dict(rows[0]["payload"])


async def _page_as(browser: Any, rt: Any, name: str) -> Any:
    ctx = await site_context(browser, rt)
    resp = await ctx.request.post("/api/v1/auth/login", data={"name": name, "password": PASSWORD})
    assert resp.status == 200, await resp.text()
    return await watched_page(ctx)


async def test_snapshot_thumbnails_on_the_alerts_page(tmp_path: Path, browser: Any) -> None:
    camera = next(d for d in demo_site(tmp_path)["devices"] if d["id"] == DEMO_CAMERA)
    write_demo_video(Path(camera["url"]))
    async with running_site(tmp_path, {"devices": [camera]}) as rt:
        shot = await _snapshot_taken(tmp_path, rt)
        admin = await logged_in_page(browser, rt)
        csrf = (await (await admin.request.get("/api/v1/auth/state")).json())["csrf"]
        for name, role in (("tech", "technician"), ("viewer", "viewer")):
            resp = await admin.request.post(
                "/api/v1/users",
                data={"name": name, "role": role, "password": PASSWORD},
                headers={"X-CSRF-Token": csrf},
            )
            assert resp.status == 201, await resp.text()

        # a technician: the thumbnail has loaded, links to the full image, and says what it shows
        tech = await _page_as(browser, rt, "tech")
        await open_snapshots(tech)
        assert await tech.input_value("#f-kind") == "snapshot"
        img = tech.locator('tr[data-kind="snapshot"] a.snapshot img.thumb')
        await img.wait_for(timeout=T)
        await tech.wait_for_function(
            "() => { const i = document.querySelector('img.thumb'); return i && i.complete && i.naturalWidth > 0; }",
            timeout=T,
        )
        assert await img.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [shot["width"], shot["height"]]
        assert await img.get_attribute("loading") == "lazy"
        assert (await img.get_attribute("alt") or "").startswith(f"Snapshot from {DEMO_CAMERA} at ")
        link = tech.locator("a.snapshot")
        assert await link.get_attribute("href") == f"/api/v1/blobs/{shot['blob']}"
        assert await link.get_attribute("target") == "_blank"
        async with tech.context.expect_page() as opened:
            await link.click()
        full = await opened.value
        await full.wait_for_load_state()
        assert full.url.endswith(f"/api/v1/blobs/{shot['blob']}")
        await full.close()
        SHOTS.mkdir(parents=True, exist_ok=True)
        await tech.screenshot(path=str(SHOTS / "alerts-snapshot.png"), full_page=True)
        assert tech.errors == []

        # a viewer: the event without its image, and no broken image
        viewer = await _page_as(browser, rt, "viewer")
        await open_snapshots(viewer)
        row = viewer.locator('tr[data-kind="snapshot"]')
        await row.first.wait_for(timeout=T)
        assert await row.locator(".snapshot-withheld").count() == 1
        assert await row.locator("img").count() == 0
        assert await viewer.evaluate(BROKEN_IMAGES) == 0
        assert viewer.errors == []

        # a blob pruned since (deleted here): a line of text instead of a broken image
        (tmp_path / "blobs" / DEMO_CAMERA / f"{shot['blob']}.jpg").unlink()
        await admin.context.clear_cookies()
        admin = await _page_as(browser, rt, "admin")
        await open_snapshots(admin)
        await admin.locator('tr[data-kind="snapshot"] .snapshot-gone').wait_for(timeout=T)
        assert await admin.evaluate("() => document.querySelectorAll('img.thumb').length") == 0
        assert admin.errors == []
