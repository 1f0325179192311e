"""Who did what is personal data. A caller below the `personal` class (an API token without the
admin scope, as everywhere in the API) reads the audit log with every entry's actor, target and
text withheld (`redacted`), keeping only its id, time, action and the numbers of its detail, and
may not filter by actor; a technician's session and an admin's token read it in clear."""

from __future__ import annotations

from pathlib import Path

from edge import audit
from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import SITE, Client, make_user, signed_in_admin, token_get


async def test_a_token_below_personal_reads_the_audit_log_without_who(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt, signed_in_admin(rt, "boss") as boss:
        base = boss.base
        tech = await make_user(boss, rt, "wang.li", "technician")
        stranger = Client(base)
        try:
            await stranger.login("zhang.wei", "not the password", expect=401)
        finally:
            await stranger.close()
        audit.record(rt.state, "wang.li", "alert_ack", "42", kind="threshold", commented=True, attempt=3)
        writer = create_token(rt.state, "writer", ["read", "write"])
        admin_token = create_token(rt.state, "auditor", ["admin"])
        try:
            status, body = await token_get(base, "/api/v1/audit", writer)
            assert status == 200, body
            entries = body["entries"]
            assert {e["action"] for e in entries} >= {
                "setup",
                "user_add",
                "login",
                "login_failed",
                "alert_ack",
            }
            text = repr(entries)
            for secret in ("wang.li", "zhang.wei", "boss", "127.0.0.1", "threshold", "wrong user name"):
                assert secret not in text, (secret, entries)
            for e in entries:
                assert e["actor"] == e["target"] == "redacted" and e["redacted"] is True, e
                assert all(isinstance(v, bool | int | float) for v in e["detail"].values()), e
            (ack,) = [e for e in entries if e["action"] == "alert_ack"]
            assert ack["detail"] == {"commented": True, "attempt": 3}, ack
            # filtering by action is fine; by actor a match would tell who
            status, body = await token_get(base, "/api/v1/audit?action=login_failed", writer)
            assert status == 200 and [e["actor"] for e in body["entries"]] == ["redacted"], body
            status, body = await token_get(base, "/api/v1/audit?actor=wang.li", writer)
            assert status == 403 and body["parameter"] == "actor", body

            # a technician's session and an admin's token see who
            for seen in (
                (await tech.json("GET", "/api/v1/audit?actor=wang.li"))["entries"],
                (await token_get(base, "/api/v1/audit?actor=wang.li", admin_token))[1]["entries"],
            ):
                assert {e["action"] for e in seen} == {"login", "alert_ack"}, seen
                assert all(e["actor"] == "wang.li" and "redacted" not in e for e in seen), seen
        finally:
            await tech.close()
