"""An integer beyond 64 bits held by the hub (a uint64 register's top half, a large constant) is
answered as the journal keeps it, the nearest float: /api/v1/latest and the device's points
answered 500 for the whole site, and the live stream failed, because the JSON encoder refuses such
an integer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from edge.api.tokens import create_token
from edge.model import Reading
from tests.support.site import running_site
from tests.web.conftest import Client

BIG = 10**20
SITE = f"""
devices:
  - id: m
    driver: sim
    points:
      - {{name: big, type: int, signal: constant, value: {BIG}, interval: 1h}}
      - {{name: ok, type: float, signal: constant, value: 1.5, interval: 1h}}
"""


async def test_latest_points_and_live_answer_a_wide_integer_as_a_float(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        token = create_token(rt.state, "reader", ["read"])
        client = Client(f"http://127.0.0.1:{rt.web_port}")
        auth = {"Authorization": f"Bearer {token}"}
        try:
            rt.hub.ingest([Reading(rt.clock(), "m.big", BIG), Reading(rt.clock(), "m.ok", 1.5)])
            latest = await client.json("GET", "/api/v1/latest", headers=auth)
            values = {v["point"]: v["value"] for v in latest["latest"]}
            assert values["m.big"] == float(BIG) and values["m.ok"] == 1.5
            points = await client.json("GET", "/api/v1/devices/m/points", headers=auth)
            assert {p["id"]: p["value"] for p in points["points"]}["m.big"] == float(BIG)

            async with client.http.get(client.base + "/api/v1/live?points=m.big", headers=auth) as resp:
                assert resp.status == 200
                rt.hub.ingest([Reading(rt.clock(), "m.big", BIG + 1)])
                async with asyncio.timeout(10):
                    async for line in resp.content:
                        if line.startswith(b"data: [") and b"m.big" in line:
                            (rec,) = json.loads(line[len(b"data: ") :])
                            assert rec["value"] == float(BIG + 1)
                            break
        finally:
            await client.close()
