"""The OpenAPI document matches the app's router, and schemathesis finds no 5xx against it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from edge.sync import openapi
from edge.web.tokens import create_token
from tests.support.site import running_site

#: the route prefixes the sync modules own (the rest of the app is documented by its owners)
OWNED = re.compile(r"^(/api/v1/(stream|consumers/|points$|latest$|openapi\.json$|sync)|/metrics$)")


def routes(app: Any) -> set[tuple[str, str]]:
    out = set()
    for r in app.router.routes():
        path = r.resource.canonical if r.resource is not None else ""
        if r.method != "HEAD" and OWNED.match(path):
            out.add((r.method.lower(), path))
    return out


async def test_document_matches_router(tmp_path: Path) -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.1")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    async with running_site(tmp_path, {}) as rt:
        served = routes(rt.web_runner.app)
        assert served == documented
        for path, ops in doc["paths"].items():  # path parameters are declared
            for op in ops.values():
                declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                assert declared == set(re.findall(r"{(\w+)}", path)), path


async def _schemathesis(schema: Path, base: str, token: str, seed: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("schemathesis")),
        "run",
        str(schema),
        "--url",
        base,
        "-H",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "15",
        "--seed",
        str(seed),
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--no-color",
        "--request-timeout",
        "10",
        cwd=schema.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 240)
    return proc.returncode or 0, out.decode(errors="replace")


async def test_schemathesis_finds_no_server_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path(sys.executable).with_name("schemathesis").exists():
        pytest.fail("schemathesis is not installed in the venv (pip install schemathesis)")
    monkeypatch.setenv("FUZZ_PULL", "fuzz-pull-token-0123456789")
    doc: dict[str, Any] = openapi.document()
    # long polls are capped so the fuzzer's random `wait` values keep the run short
    for p in doc["paths"]["/api/v1/stream"]["get"]["parameters"]:
        if p["name"] == "wait":
            p["schema"]["maximum"] = 0.2
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps(doc))
    site = {"consumers": [{"id": "fuzz", "token_env": "FUZZ_PULL"}], "upstream": []}
    async with running_site(tmp_path, site) as rt:
        from edge.model import Reading

        rt.hub.ingest([Reading(1.7e9 + i, "meter.kw", float(i)) for i in range(50)])
        await rt.journal.flush()
        base = f"http://127.0.0.1:{rt.web_port}"
        staff = create_token(rt.state, "fuzz-staff", ["read", "write"])
        for token, seed in (("fuzz-pull-token-0123456789", 1), (staff, 2)):
            code, out = await _schemathesis(schema, base, token, seed)
            assert code == 0, out[-4000:]
            generated = re.search(r"(\d+) generated", out)
            assert generated and int(generated.group(1)) > 50, out[-2000:]


async def test_document_is_served_to_any_credential_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aiohttp

    monkeypatch.setenv("DOC_PULL", "doc-pull-token-0123456789")
    async with running_site(tmp_path, {"consumers": [{"id": "doc", "token_env": "DOC_PULL"}]}) as rt:
        url = f"http://127.0.0.1:{rt.web_port}/api/v1/openapi.json"
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 401
            async with http.get(url, headers={"Authorization": "Bearer doc-pull-token-0123456789"}) as r:
                assert r.status == 200 and (await r.json()) == openapi.document()
