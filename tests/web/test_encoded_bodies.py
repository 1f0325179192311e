"""The gateway never unpacks a request body: a body with a Content-Encoding is refused (415)
before anything reads it, logged in or not. aiohttp unpacked gzip bodies on the event loop as they
arrived, so a 1 MiB body that unpacks to 1 GiB, sent to the login route without credentials, held
every device's polling for seconds and answered only after it had been unpacked."""

from __future__ import annotations

import gzip
from pathlib import Path

import aiohttp

from tests.support.site import running_site


async def test_an_encoded_request_body_is_refused_unread(tmp_path: Path) -> None:
    bomb = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)  # 64 MiB of zeros in ~64 KiB
    async with running_site(tmp_path, {"devices": []}) as rt, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{rt.web_port}"
        for method, path in (("POST", "/api/v1/auth/login"), ("GET", "/healthz")):
            async with http.request(
                method,
                base + path,
                data=bomb,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            ) as resp:
                assert resp.status == 415, (path, await resp.text())
                problem = await resp.json(content_type=None)
                assert "send the request body uncompressed" in problem["detail"]
        # a plain body is read as before: a login with a wrong password is refused as such
        async with http.post(
            base + "/api/v1/auth/login", json={"name": "nobody", "password": "x" * 12}
        ) as resp:
            assert resp.status in (401, 403, 409, 429), await resp.text()
            assert resp.status != 415
        async with http.get(base + "/healthz") as resp:
            assert resp.status == 200
