"""End to end through the runtime, hub and journal, against a server in its own process that is
killed and restarted: points go stale, the device goes offline, then recovers without a restart."""

from __future__ import annotations

from pathlib import Path

from edge.model import Quality
from tests.modbus.servers import free_port, start_server_process, stop_process
from tests.support.site import running_site
from tests.support.waiting import until as wait_for

SPEC = {"1": {"holding": {"0": 1234, "1": 0, "2": 17}, "coil": {"0": False}}}


async def test_kill_and_restart_server_process(tmp_path: Path) -> None:
    port = free_port()
    proc = start_server_process(port, SPEC)
    doc = {
        "devices": [
            {
                "id": "meter-x",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
                "poll": "100ms",
                "timeout": "300ms",
                "retries": 0,
                "reconnect_max": "1s",
                "points": [
                    {"name": "power", "address": 0, "type": "uint16", "scale": 0.1, "unit": "kW"},
                    {"name": "count", "address": 1, "type": "uint32"},
                    {"name": "relay", "table": "coil", "address": 0, "writable": True},
                ],
            }
        ]
    }
    try:
        async with running_site(tmp_path, doc, web=False) as rt:
            latest = rt.hub.latest
            await wait_for(lambda: "meter-x.power" in latest, what="first reading")
            assert latest["meter-x.power"].value == 123.4
            assert latest["meter-x.count"].value == 17
            result = await rt.hub.write("meter-x.relay", True, source="test")
            assert result.ok, result.reason

            stop_process(proc)  # the device dies (SIGKILL)
            slot = rt.slots["meter-x"]
            await wait_for(lambda: slot.health.state == "offline", what="offline")
            await wait_for(lambda: latest["meter-x.power"].quality == Quality.STALE, what="stale")
            assert latest["meter-x.power"].value == 123.4  # last value kept, marked stale
            failed = await rt.hub.write("meter-x.relay", False, source="test")
            assert not failed.ok

            proc = start_server_process(port, SPEC)  # the device comes back
            await wait_for(lambda: slot.health.state == "online", timeout=15, what="recovery")
            await wait_for(lambda: latest["meter-x.power"].quality == Quality.GOOD, what="good again")
            assert slot.restarts == 0  # recovered inside the driver, no restart needed

            await rt.journal.flush()
            rows = rt.journal.read(0, 10000)
            states = [
                r["payload"]["state"] for r in rows if r["type"] == "event" and r["kind"] == "device_state"
            ]
            assert states[-2:] == ["offline", "online"]
            commands = [
                r["payload"]["status"] for r in rows if r["type"] == "event" and r["kind"] == "command"
            ]
            assert commands[0] == "ok" and commands[1] in ("failed", "timeout")
            qualities = {
                r["quality"] for r in rows if r["type"] == "reading" and r["point"] == "meter-x.power"
            }
            assert qualities == {"good", "stale"}
    finally:
        stop_process(proc)
