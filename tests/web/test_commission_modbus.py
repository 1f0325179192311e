"""Commissioning a Modbus device from the UI's API: a raw register range read from a real pymodbus
server on loopback, decoded in every word order by the Modbus engineer's probe."""

from __future__ import annotations

from pathlib import Path

from tests.support.site import running_site
from tests.web.conftest import signed_in_admin


async def test_raw_register_read_decodes_every_word_order(tmp_path: Path) -> None:
    from tests.modbus.servers import probe_site, registers_for, tcp_server

    regs = registers_for({"holding": [(0x10, "float32", 230.25, "CDAB"), (0x12, "float32", 50.0, "CDAB")]})
    async with tcp_server({5: {"holding": regs["holding"]}}) as srv:
        doc = probe_site(srv.port)
        async with running_site(tmp_path, doc) as rt, signed_in_admin(rt) as c:
            got = await c.json(
                "POST",
                "/api/v1/commission/read",
                {
                    "device": "meter-b9",
                    "table": "holding",
                    "address": 0x10,
                    "count": 4,
                    "type": "float32",
                },
            )
            assert got["registers"] == [regs["holding"][a] for a in range(0x10, 0x14)]
            assert [row["orders"]["CDAB"] for row in got["decoded"]] == [230.25, 50.0]
            assert got["decoded"][0]["orders"]["ABCD"] != 230.25
            resp = await c.request(
                "POST",
                "/api/v1/commission/read",
                json={"device": "meter-b9", "table": "holding", "count": 126},
            )
            assert resp.status == 422 and "1-125" in await resp.text()
