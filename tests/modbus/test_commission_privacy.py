"""The raw register read of commissioning keeps to the privacy classes: a flat's meter on a real
pymodbus server whose `energy_import` is personal and `active_power` sensitive. A range over a
point above the caller's class is refused before the device is asked (the register map is public,
so the range is no secret); unmapped registers and points the caller may see still read, and a
read that returns personal or sensitive values is a `read` entry in the audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge import audit
from tests.modbus.servers import TcpServer, registers_for, tcp_server
from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import Client, signed_in_roles

VOLTAGE, POWER, ENERGY, SPARE = 0x4000, 0x4012, 0x401E, 0x4030


def site_doc(port: int) -> dict[str, Any]:
    def point(name: str, address: int, klass: str) -> dict[str, Any]:
        return {"name": name, "table": "input", "address": address, "type": "float32", "privacy": klass}

    return {
        "devices": [
            {
                "id": "flat-301",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
                "unit": 1,
                "poll": "1h",
                "retries": 0,
                "points": [
                    point("voltage", VOLTAGE, "public"),
                    point("active_power", POWER, "sensitive"),
                    point("energy_import", ENERGY, "personal"),
                ],
            }
        ]
    }


def raw(table: str, address: int, count: int = 2) -> dict[str, Any]:
    return {"device": "flat-301", "table": table, "address": address, "count": count, "type": "float32"}


@pytest.fixture
async def meter() -> AsyncIterator[TcpServer]:
    values = [(VOLTAGE, 230.5), (POWER, 1830.0), (ENERGY, 12345.78), (SPARE, 7.0)]
    regs = registers_for({"input": [(a, "float32", v, "ABCD") for a, v in values]})
    block = {a: 0 for a in range(VOLTAGE, SPARE + 2)} | regs["input"]  # one block, no holes
    async with tcp_server({1: {"input": block}}) as srv:
        yield srv


@pytest.fixture
async def on_site(tmp_path: Path, meter: TcpServer) -> AsyncIterator[tuple[Any, dict[str, Client]]]:
    async with running_site(tmp_path, site_doc(meter.port)) as rt, signed_in_roles(rt) as clients:
        # after the first poll (the next is an hour away) only the tests' reads reach the meter
        await until(lambda: "flat-301.energy_import" in rt.hub.latest, what="the first poll")
        yield rt, clients


def entries(rt: Any, action: str) -> list[dict[str, Any]]:
    """The audit entries of `action`, oldest first."""
    return [e for e in reversed(audit.entries(rt.state)) if e["action"] == action]


def requests(meter: TcpServer) -> int:
    """Requests that reached the meter's registers so far."""
    return len(meter.faults.log)


async def test_a_public_token_cannot_read_a_personal_point_by_its_registers(
    on_site: tuple[Any, dict[str, Client]], meter: TcpServer
) -> None:
    rt, clients = on_site
    admin = clients["admin"]
    made = await admin.json(
        "POST", "/api/v1/tokens", {"name": "meter app", "scopes": ["read", "write"]}, expect=201
    )
    auth = {"Authorization": f"Bearer {made['token']}"}
    url = admin.base + "/api/v1/commission/read"
    async with aiohttp.ClientSession(headers=auth) as s:
        # the point read answers that the meter works, without the value
        async with s.post(url, json={"point": "flat-301.energy_import"}) as r:
            body = await r.json(content_type=None)
            assert r.status == 200 and body["value"] is None and body["redacted"] == "personal"

        # the same registers read raw: refused, naming the point, and the device is not asked
        before = requests(meter)
        async with s.post(url, json=raw("input", ENERGY)) as r:
            problem = await r.json(content_type=None)
            assert r.status == 403, problem
            assert problem["points"] == ["flat-301.energy_import (personal)"]
            assert "flat-301.energy_import (personal)" in problem["detail"]
        # one register of it, a wider range around it, or the holding table at its address
        for ask in (raw("input", ENERGY + 1, 1), raw("input", ENERGY - 4, 8), raw("holding", ENERGY)):
            async with s.post(url, json=ask) as r:
                assert r.status == 403, (ask, await r.text())
        async with s.post(url, json=raw("input", POWER - 2, 0x20)) as r:
            problem = await r.json(content_type=None)
            assert r.status == 403
            assert problem["points"] == [
                "flat-301.active_power (sensitive)",
                "flat-301.energy_import (personal)",
            ]
        assert requests(meter) == before

        # registers no point maps, and a public point's, still read: that is commissioning
        async with s.post(url, json=raw("input", SPARE)) as r:
            body = await r.json(content_type=None)
            assert r.status == 200 and body["decoded"][0]["orders"]["ABCD"] == 7.0
        async with s.post(url, json=raw("input", VOLTAGE)) as r:
            body = await r.json(content_type=None)
            assert r.status == 200 and body["decoded"][0]["orders"]["ABCD"] == 230.5

    refused = [e for e in entries(rt, "commission_read") if e["detail"].get("status") == 403]
    assert refused and refused[0]["actor"] == "meter app" and refused[0]["target"] == "flat-301:input:16414"
    # only public values reached the token: no read entry for it
    assert not [e for e in entries(rt, "read") if e["actor"] == "meter app"]


async def test_a_technician_reads_personal_registers_but_not_sensitive_ones_and_an_admin_reads_both(
    on_site: tuple[Any, dict[str, Client]], meter: TcpServer
) -> None:
    rt, clients = on_site
    tech, admin = clients["technician"], clients["admin"]

    before = requests(meter)
    resp = await tech.request("POST", "/api/v1/commission/read", json=raw("input", POWER))
    problem = await resp.json(content_type=None)
    assert resp.status == 403 and problem["points"] == ["flat-301.active_power (sensitive)"]
    assert requests(meter) == before

    got = await tech.json("POST", "/api/v1/commission/read", raw("input", ENERGY))
    assert got["decoded"][0]["orders"]["ABCD"] == pytest.approx(12345.78, rel=1e-6)
    read = entries(rt, "read")[-1]
    assert read["actor"] == "technician" and read["target"] == "POST /api/v1/commission/read"
    assert read["detail"]["classes"] == {"personal": 1} and read["detail"]["read"] == "flat-301:input:16414"

    got = await admin.json("POST", "/api/v1/commission/read", raw("input", POWER, 0x0E))
    assert got["decoded"][0]["orders"]["ABCD"] == 1830.0
    assert got["decoded"][6]["orders"]["ABCD"] == pytest.approx(12345.78, rel=1e-6)
    read = entries(rt, "read")[-1]
    assert read["actor"] == "boss" and read["detail"]["classes"] == {"personal": 1, "sensitive": 1}

    # a point read whose value the caller sees is a read too; a redacted one is not
    got = await tech.json("POST", "/api/v1/commission/read", {"point": "flat-301.energy_import"})
    assert got["value"] == pytest.approx(12345.78, rel=1e-6)
    read = entries(rt, "read")[-1]
    assert read["actor"] == "technician" and read["detail"]["read"] == "flat-301.energy_import"
    count = len(entries(rt, "read"))
    got = await tech.json("POST", "/api/v1/commission/read", {"point": "flat-301.active_power"})
    assert got["value"] is None and got["redacted"] == "sensitive"
    await tech.json("POST", "/api/v1/commission/read", raw("input", SPARE))
    assert len(entries(rt, "read")) == count
