"""The audit log's filters: `?action=` and `?actor=` return the newest entries that match, `limit`
counting matches, however many other entries are newer (every read of personal data writes one,
so a log is mostly `read` entries), and paging with `before` walks every match."""

from __future__ import annotations

from typing import Any

from edge import audit
from tests.web.conftest import Client


async def test_filters_count_matches_not_the_newest_entries(admin: Client, site: Any) -> None:
    state = site.state
    for i in range(3):
        audit.record(state, "mallory", "login_failed", "admin", attempt=i)
    for i in range(1200):  # newer than the failures, more than the largest page
        audit.record(state, "viewer-1", "read", "/api/v1/events", records=i)

    failed = (await admin.json("GET", "/api/v1/audit?action=login_failed&limit=5"))["entries"]
    assert [e["detail"]["attempt"] for e in failed] == [2, 1, 0]
    assert {e["actor"] for e in failed} == {"mallory"}
    by_actor = (await admin.json("GET", "/api/v1/audit?actor=mallory"))["entries"]
    assert [e["action"] for e in by_actor] == ["login_failed"] * 3
    both = await admin.json("GET", "/api/v1/audit?actor=viewer-1&action=login_failed")
    assert both["entries"] == []

    # paged by `before`, one match a page: every match, newest first, then an empty page
    seen: list[int] = []
    before = ""
    while True:
        page = (await admin.json("GET", f"/api/v1/audit?action=login_failed&limit=1{before}"))["entries"]
        if not page:
            break
        seen.append(page[0]["detail"]["attempt"])
        before = f"&before={page[0]['id']}"
    assert seen == [2, 1, 0]
