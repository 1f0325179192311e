"""What a generated client relies on, checked against the live server: a 405 says which methods
the path allows (RFC 9110), a `limit` outside its documented range is a 400 as every paged route
answers it (it was clamped in silence: 0 gave one event, 58,818 five thousand), and the statuses
a route answers are in the document (the ack's 409, a full disk's 507)."""

from __future__ import annotations

from typing import Any

from tests.web.conftest import Client


async def test_405_names_the_allowed_methods(admin: Client, site: Any) -> None:
    resp = await admin.request("PUT", "/api/v1/stream")
    assert resp.status == 405
    assert resp.content_type == "application/problem+json"
    assert "GET" in {m.strip() for m in resp.headers.get("Allow", "").split(",")}, dict(resp.headers)


async def test_a_limit_outside_its_range_is_refused(admin: Client, site: Any) -> None:
    for bad in ("0", "-1", "5001", "58818", "x"):
        resp = await admin.request("GET", f"/api/v1/events?limit={bad}")
        assert resp.status == 400, (bad, resp.status)
        assert (await resp.json(content_type=None))["parameter"] == "limit" or bad == "x"
    assert (await admin.request("GET", "/api/v1/events?limit=5000")).status == 200


async def test_the_document_lists_what_the_routes_answer(admin: Client, site: Any) -> None:
    doc = await admin.json("GET", "/api/v1/openapi.json")
    # the ack of an event that is not an alert (the gateway's start, committed by now): 409
    await site.journal.flush()
    (event,) = (await admin.json("GET", "/api/v1/events?kind=gateway_started&limit=1"))["events"]
    seq = event["seq"]
    resp = await admin.request("POST", f"/api/v1/alerts/{seq}/ack", json={"comment": "x"})
    assert resp.status == 409, await resp.text()
    assert "409" in doc["paths"]["/api/v1/alerts/{seq}/ack"]["post"]["responses"]
    # a change can meet a full disk, and so can a read of personal data (its audit entry)
    changes = [
        (method, path, op)
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
        if any("csrf" in way for way in op.get("security", []))
    ]
    assert len(changes) > 20
    for method, path, op in changes:
        assert "507" in op["responses"], (method, path)
    assert "507" in doc["paths"]["/api/v1/events"]["get"]["responses"]
    # a public route called with a bearer token that does not verify: 401, as documented
    stale = await admin.request("GET", "/api/v1/auth/state", headers={"Authorization": "Bearer ce_stale"})
    assert stale.status == 401
    assert "401" in doc["paths"]["/api/v1/auth/state"]["get"]["responses"]
