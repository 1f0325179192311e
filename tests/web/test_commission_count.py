"""A raw Modbus read's count and address are whole numbers: a fraction or true/false is refused
with a 422 naming the field, not truncated into a read of some other range (real pymodbus server
on loopback)."""

from __future__ import annotations

from pathlib import Path

from tests.modbus.servers import probe_site, registers_for, tcp_server
from tests.support.site import running_site
from tests.web.conftest import signed_in_admin


async def test_a_fractional_or_boolean_count_is_refused_naming_the_field(tmp_path: Path) -> None:
    regs = registers_for({"holding": [(0x10, "float32", 230.25, "CDAB")]})
    async with tcp_server({5: {"holding": regs["holding"]}}) as srv:
        async with running_site(tmp_path, probe_site(srv.port)) as rt, signed_in_admin(rt) as c:
            body = {"device": "meter-b9", "table": "holding", "address": 0x10, "count": 2}
            assert (await c.json("POST", "/api/v1/commission/read", body))["count"] == 2
            # a whole number sent as 2.0 is that number
            assert (await c.json("POST", "/api/v1/commission/read", {**body, "count": 2.0}))["count"] == 2
            for field, value in (("count", 1.5), ("count", 2.9), ("count", True), ("address", 16.5)):
                resp = await c.request("POST", "/api/v1/commission/read", json={**body, field: value})
                assert resp.status == 422, (field, value)
                problem = await resp.json(content_type=None)
                assert problem["message_key"] == "msg.commission.not_whole"
                assert problem["args"]["field"] == field
                assert problem["detail"].startswith(f"{field} is an integer")
