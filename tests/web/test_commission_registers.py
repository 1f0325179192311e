"""Commissioning helpers a technician needs beside the raw read, against a real pymodbus server on
loopback: the device's register map (table, address, type, word order per point), a raw read
addressed in hex as datasheets write it, and a device's exception response answered with its
Modbus code and a message key the UI words in the reader's language."""

from __future__ import annotations

from pathlib import Path

from tests.modbus.servers import probe_site, registers_for, tcp_server
from tests.support.site import running_site
from tests.web.conftest import signed_in_admin


async def test_register_map_hex_address_and_exception_code(tmp_path: Path) -> None:
    regs = registers_for({"holding": [(0x10, "float32", 230.25, "CDAB")]})
    async with tcp_server({5: {"holding": regs["holding"]}}) as srv:
        doc = probe_site(srv.port)
        doc["devices"].append(
            {"id": "bin-1", "driver": "sim", "points": [{"name": "fill", "signal": "constant", "value": 1}]}
        )
        async with running_site(tmp_path, doc) as rt, signed_in_admin(rt) as c:
            got = await c.json("GET", "/api/v1/commission/registers/meter-b9")
            assert got["device"] == "meter-b9" and got["unit"] == 5
            (voltage,) = got["points"]
            assert voltage == {
                "point": "meter-b9.voltage",
                "name": "voltage",
                "table": "holding",
                "address": 0x10,
                "count": 2,
                "type": "float32",
                "order": "CDAB",
                "bit": None,
                "scale": 1.0,
                "offset": 0.0,
                "writable": False,
            }
            for device in ("bin-1", "nowhere"):
                resp = await c.request("GET", f"/api/v1/commission/registers/{device}")
                assert resp.status == 404, device

            # "0x10" as the datasheet writes it reads the same registers as 16
            body = {"device": "meter-b9", "table": "holding", "address": "0x10", "count": 2}
            hexed = await c.json("POST", "/api/v1/commission/read", body)
            assert hexed["address"] == 0x10
            assert hexed["decoded"][0]["orders"]["CDAB"] == 230.25
            resp = await c.request("POST", "/api/v1/commission/read", json={**body, "address": "0xZZ"})
            assert resp.status == 422 and "0x2006" in await resp.text()

            # an address the device does not map: its exception response, with the code
            resp = await c.request("POST", "/api/v1/commission/read", json={**body, "address": 0x400})
            assert resp.status == 502
            problem = await resp.json(content_type=None)
            assert problem["exception_code"] == 2
            assert problem["message_key"] == "modbus.exception"
            want = {"code": 2, "table": "holding", "address": 0x400, "count": 2}
            assert problem["args"].items() >= want.items()
            assert "illegal data address" in problem["detail"] and "0x0400" in problem["detail"]
