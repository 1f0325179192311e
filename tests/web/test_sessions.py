"""Sessions API: an admin lists and ends anyone's session, a user only their own; ids are opaque,
ending needs the CSRF token, and every end is audited."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Client, make_user


async def test_admin_ends_another_users_session(admin: Client, site: Any) -> None:
    tech = await make_user(admin, site, "li", "technician")
    try:
        assert (await tech.request("GET", "/api/v1/devices")).status == 200
        listed = (await admin.json("GET", "/api/v1/sessions"))["sessions"]
        assert {s["user"] for s in listed} == {"admin", "li"}
        mine = next(s for s in listed if s["user"] == "admin")
        assert mine["current"] is True and mine["address"] == "127.0.0.1"
        theirs = next(s for s in listed if s["user"] == "li")
        # the id is opaque: not the cookie the client holds
        cookies = {c.value for c in tech.http.cookie_jar}
        assert theirs["id"] not in cookies and all(theirs["id"] not in c for c in cookies)
        # CSRF still required for a cookie-authenticated DELETE
        resp = await admin.request("DELETE", f"/api/v1/sessions/{theirs['id']}", csrf=False)
        assert resp.status == 403
        await admin.json("DELETE", f"/api/v1/sessions/{theirs['id']}")
        assert (await tech.request("GET", "/api/v1/devices")).status == 401
        assert [s["user"] for s in (await admin.json("GET", "/api/v1/sessions"))["sessions"]] == ["admin"]
        entry = (await admin.json("GET", "/api/v1/audit?action=session_end"))["entries"][0]
        assert entry["actor"] == "admin" and entry["target"] == "li"
        assert entry["detail"]["session"] == theirs["id"]
        await admin.json("DELETE", f"/api/v1/sessions/{theirs['id']}", expect=404)
    finally:
        await tech.close()


async def test_viewer_sees_and_ends_only_their_own(admin: Client, site: Any) -> None:
    viewer = await make_user(admin, site, "zhao", "viewer")
    second = Client(admin.base)
    await second.login("zhao")
    try:
        own = (await viewer.json("GET", "/api/v1/sessions"))["sessions"]
        assert {s["user"] for s in own} == {"zhao"} and len(own) == 2
        await viewer.json("GET", "/api/v1/sessions?user=admin", expect=403)
        admin_id = next(
            s["id"] for s in (await admin.json("GET", "/api/v1/sessions"))["sessions"] if s["current"]
        )
        await viewer.json("DELETE", f"/api/v1/sessions/{admin_id}", expect=404)
        assert (await admin.request("GET", "/api/v1/users")).status == 200
        other = next(s for s in own if not s["current"])
        await viewer.json("DELETE", f"/api/v1/sessions/{other['id']}")
        assert (await second.request("GET", "/api/v1/devices")).status == 401
        assert (await viewer.request("GET", "/api/v1/devices")).status == 200
    finally:
        await viewer.close()
        await second.close()
