"""`GET /api/v1/blobs/{id}`: snapshots only for callers allowed personal data; unknown ids 404,
malformed ids (path traversal included) 400 without touching the file system."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.camera.helpers import write_video
from tests.camera.test_snapshots import moving_dots
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import Client, make_user, set_up_admin


async def test_blob_api_serves_snapshots_to_those_allowed_personal_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_TEST_CITY", "city-token-0123456789")
    monkeypatch.setenv("EDGE_TEST_STATS", "stats-token-0123456789")
    video = write_video(tmp_path / "cam.avi", moving_dots, 150, fps=15)
    site: dict[str, Any] = {
        "devices": [{"id": "cam", "driver": "camera", "url": str(video), "loop": True}],
        "consumers": [
            {"id": "city", "token_env": "EDGE_TEST_CITY"},  # max_privacy personal by default
            {"id": "stats", "token_env": "EDGE_TEST_STATS", "max_privacy": "public"},
        ],
    }
    (tmp_path / "secret.txt").write_text("not an image")
    async with running_site(tmp_path, site) as rt:
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=10, what="camera online")
        payload = await rt.slots["cam"].driver.snapshot("test")  # type: ignore[union-attr]
        blob = f"/api/v1/blobs/{payload['blob']}"
        base = f"http://127.0.0.1:{rt.web_port}"
        admin, nobody = Client(base), Client(base)
        clients = [admin, nobody]
        try:
            await set_up_admin(admin, rt)
            viewer = await make_user(admin, rt, "vera", "viewer")
            tech = await make_user(admin, rt, "tom", "technician")
            clients += [viewer, tech]

            assert (await nobody.request("GET", blob)).status == 401  # no credential
            assert (await viewer.request("GET", blob)).status == 403
            resp = await tech.request("GET", blob)
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            data = await resp.read()
            assert hashlib.sha256(data).hexdigest() == payload["sha256"] and len(data) == payload["bytes"]
            assert (await admin.request("GET", blob)).status == 200
            from edge import audit

            assert rt.state is not None
            views = [e for e in audit.entries(rt.state) if e["action"] == "view_snapshot"]
            assert [(e["actor"], e["target"]) for e in views] == [
                ("admin", payload["blob"]),
                ("tom", payload["blob"]),
            ]

            async with aiohttp.ClientSession() as http:

                async def as_consumer(token: str) -> int:
                    async with http.get(base + blob, headers={"Authorization": f"Bearer {token}"}) as r:
                        await r.read()
                        return r.status

                assert await as_consumer("city-token-0123456789") == 200
                assert await as_consumer("stats-token-0123456789") == 403

            assert (await tech.request("GET", "/api/v1/blobs/" + "0" * 64)).status == 404
            for bad in ("abc", "0" * 63 + "G", "..", "..%2F..%2Fsecret.txt", "%2E%2E", "A" * 64, "0" * 65):
                resp = await tech.request("GET", "/api/v1/blobs/" + bad)
                assert resp.status in (400, 404), (bad, resp.status)
                assert resp.content_type != "image/jpeg"
            for bad in ("abc", "..%2F..%2Fsecret.txt", "%2E%2E%2Fedge.db", "A" * 64):
                resp = await tech.request("GET", "/api/v1/blobs/" + bad)
                assert resp.status == 400, (bad, resp.status)
        finally:
            for c in clients:
                await c.close()
