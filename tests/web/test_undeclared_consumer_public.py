"""A pull token made for a consumer id the site file does not declare gets only `public` data: no
personal record on the stream or in /latest, no personal snapshot, until a `consumers:` entry
declares it (and chooses its class). A misspelt id must not be what reads a site's plates. A token
for a declared consumer gets that entry's class, as before. `edge tokens create` warns of such an id
on stderr as the API's answer does, naming the declared consumers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge import audit
from edge.api.blobs import BLOBS_KEY
from edge.model import PointInfo, PointType, Privacy, Reading
from edge.state import StateDB
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.web.conftest import city_consumer_site, signed_in_admin


async def call(base: str, token: str, path: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
        http.get(base + path) as r,
    ):
        body = await r.read()
        return r.status, body


async def test_a_token_of_an_undeclared_consumer_reads_public_data_only(tmp_path: Path) -> None:
    site = city_consumer_site(tmp_path)
    async with running_site(tmp_path, site) as rt, signed_in_admin(rt) as admin:
        base = f"http://127.0.0.1:{rt.web_port}"
        made = {
            cid: await admin.json(
                "POST", "/api/v1/tokens", {"name": cid, "scopes": ["pull"], "consumer": cid}, expect=201
            )
            for cid in ("city-platfrom", "city-platform")
        }
        typo, declared = made["city-platfrom"], made["city-platform"]
        assert typo["consumer_declared"] is False and "only public records" in typo["warning"], typo

        rt.hub.register_points(
            [PointInfo("gate.last_plate", "gate", "last_plate", type=PointType.STR, privacy=Privacy.PERSONAL)]
        )
        t = time.time()
        rt.hub.ingest([Reading(t + i * 1e-3, "gate.last_plate", f"沪A1234{i}") for i in range(3)])
        end = await rt.journal.flush()
        blob = rt.web_runner.app[BLOBS_KEY].put("cam", b"\xff\xd8 a picture of the gate \xff\xd9")

        def plates(page: dict[str, Any], key: str) -> set[str]:
            return {item.get("point") for item in page[key]} & {"gate.last_plate"}

        got: dict[str, dict[str, Any]] = {}
        for cid, answer in made.items():
            status, body = await call(base, answer["token"], f"/api/v1/stream?after=0&limit={end + 100}")
            assert status == 200, body
            stream = json.loads(body)
            status, body = await call(base, answer["token"], "/api/v1/latest")
            assert status == 200, body
            latest = json.loads(body)
            status, image = await call(base, answer["token"], f"/api/v1/blobs/{blob.id}")
            got[cid] = {
                "stream": plates(stream, "items"),
                "latest": plates(latest, "latest"),
                "blob": status,
                "image": image,
            }

        # the declared consumer (default class personal) reads the plates and the snapshot
        assert got["city-platform"]["stream"] == {"gate.last_plate"}, got
        assert got["city-platform"]["latest"] == {"gate.last_plate"}, got
        assert got["city-platform"]["blob"] == 200
        assert got["city-platform"]["image"].startswith(b"\xff\xd8")
        # the misspelt one reads neither
        assert got["city-platfrom"]["stream"] == set(), got
        assert got["city-platfrom"]["latest"] == set(), got
        assert got["city-platfrom"]["blob"] == 403, got
        assert b"\xff\xd8" not in got["city-platfrom"]["image"]
        assert declared["consumer_declared"] is True and "warning" not in declared


def test_the_console_warns_of_an_undeclared_consumer_when_its_token_is_made(tmp_path: Path) -> None:
    config = str(site_file(tmp_path, city_consumer_site(tmp_path)))
    made: dict[str, subprocess.CompletedProcess[str]] = {
        cid: edge_cli("tokens", "create", "-c", config, cid, "--scope", "pull", "--consumer", cid)
        for cid in ("city-platfrom", "city-platform")
    }
    for cid, cli in made.items():
        assert cli.returncode == 0 and cli.stdout.startswith("ce_"), (cid, cli.stderr)
    typo = made["city-platfrom"].stderr
    assert "warning: consumer id 'city-platfrom' is not declared" in typo, typo
    assert "(declared: city-platform)" in typo and "only public records" in typo, typo
    assert "warning" not in made["city-platform"].stderr, made["city-platform"].stderr

    state = StateDB(str(tmp_path / "state.db"))
    try:
        entries = audit.entries(state, 10, action="token_create")
        assert [(e["target"], e["detail"]["consumer_declared"]) for e in entries] == [
            ("city-platform", True),
            ("city-platfrom", False),
        ]
    finally:
        state.close()
