"""An API token fetches snapshots with the `read` and `admin` scopes, as docs/camera.md says:
`read` is what reads on every route, `admin` lifts its class above `public`. A token with either
alone gets 403 naming the scopes it needs and the ones it has."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from edge.api.tokens import create_token
from tests.camera.helpers import write_video
from tests.camera.test_snapshots import moving_dots
from tests.support.site import running_site
from tests.support.waiting import until

DOC = Path(__file__).resolve().parents[2] / "docs" / "camera.md"


def test_the_blob_api_doc_names_the_scopes_a_token_needs() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert "an API token the `read` and `admin` scopes" in text
    assert "an API token the admin scope" not in text


async def test_a_token_needs_read_and_admin_to_fetch_a_snapshot_and_is_told_so(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", moving_dots, 150, fps=15)
    site = {"devices": [{"id": "cam", "driver": "camera", "url": str(video), "loop": True}]}
    async with running_site(tmp_path, site) as rt:
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=10, what="camera online")
        payload = await rt.slots["cam"].driver.snapshot("test")
        assert rt.state is not None
        tokens = {
            scopes: create_token(rt.state, scopes.replace(" ", "-"), scopes.split())
            for scopes in ("read admin", "admin", "read")
        }
        url = f"http://127.0.0.1:{rt.web_port}/api/v1/blobs/{payload['blob']}"
        async with aiohttp.ClientSession() as http:

            async def fetch(token: str) -> tuple[int, bytes]:
                async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                    return r.status, await r.read()

            status, body = await fetch(tokens["read admin"])
            assert status == 200 and body.startswith(b"\xff\xd8\xff") and len(body) == payload["bytes"]
            for scopes, held in (("admin", "admin"), ("read", "read")):
                status, body = await fetch(tokens[scopes])
                assert status == 403, scopes
                text = body.decode()
                assert "an API token needs the read and admin scopes" in text, text
                assert f"(this one has: {held})" in text, text
