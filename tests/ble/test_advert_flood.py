"""A device (or another one sending with its address) flooding advertisements: through the whole
stack (the mock BlueZ advertises, bleak's real BlueZ backend scans, the driver reads), at most
`max_adverts_per_second` of its advertisements a second become readings in the journal; the rest
are counted (`over_rate`) and the device is degraded with the reason while the flood lasts, with
one `device_state` event for the burst. A device at a normal rate beside it is untouched."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

from drivers.ble.bthome import SERVICE_UUID
from edge.model import HealthState
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until

FLOODER = "A4:C1:38:00:00:01"
CALM = "A4:C1:38:00:00:02"
CAP = 20
FLOOD_SECONDS = 3.0


def site() -> dict[str, Any]:
    points = [{"name": "battery", "object": "battery"}, {"name": "distance", "object": "distance_mm"}]
    return {
        "devices": [
            {
                "id": "flooder",
                "driver": "ble",
                "address": FLOODER,
                "adapter": ADAPTER,
                "max_adverts_per_second": CAP,
                "points": points,
            },
            # the default cap (100 a second)
            {"id": "calm", "driver": "ble", "address": CALM, "adapter": ADAPTER, "points": points},
        ]
    }


def packet(n: int) -> bytes:
    """BTHome: packet id n, battery, distance (both change with n: no deadband hides them)."""
    return bytes([0x40, 0x00, n & 0xFF, 0x01, n % 100, 0x40, n & 0xFF, (n >> 8) & 0xFF])


def states(rows: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    return [
        r["payload"]
        for r in rows
        if r["type"] == "event" and r["kind"] == "device_state" and r["source"] == source
    ]


async def test_a_flood_is_capped_counted_and_reported_and_a_calm_device_is_untouched(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, site(), web=False) as rt:
        flood_path = await bluez.add_device(FLOODER)
        calm_path = await bluez.add_device(CALM)
        flooder, calm = rt.slots["flooder"].driver, rt.slots["calm"].driver
        await bluez.advertise(flood_path, {SERVICE_UUID: packet(1)})
        await until(lambda: flooder.counters["packets"] == 1, what="the flooder's first packet")
        await until(lambda: rt.slots["flooder"].health.state == HealthState.ONLINE, what="online")
        await asyncio.sleep(1.0)  # a fresh second for the flood (not a wait on an event)

        before = dict(flooder.counters)  # the device's appearance and its first packet
        sent = 0
        calm_sent = 0
        start = time.monotonic()

        async def flood() -> None:
            nonlocal sent
            while time.monotonic() - start < FLOOD_SECONDS:
                sent += 1
                await bluez.advertise(flood_path, {SERVICE_UUID: packet(sent + 1)}, rssi=-60 - sent % 20)

        async def normal() -> None:  # 5 a second, as a real sensor at its fastest setting might
            nonlocal calm_sent
            while time.monotonic() - start < FLOOD_SECONDS:
                calm_sent += 1
                await bluez.advertise(calm_path, {SERVICE_UUID: packet(calm_sent)})
                await asyncio.sleep(0.2)

        await asyncio.gather(*(flood() for _ in range(4)), normal())
        elapsed = time.monotonic() - start
        # D-Bus keeps the order of one sender's signals: once the calm device's marker is read,
        # every advertisement of the flood has been through the driver
        await bluez.advertise(calm_path, {SERVICE_UUID: packet(999)})
        await until(lambda: rt.hub.latest["calm.distance"].value == 999, 30, what="the marker")
        c = flooder.counters
        heard = c["advertisements"] - before["advertisements"]
        assert heard > 10 * CAP * FLOOD_SECONDS, f"the flood was not one: {heard} in {elapsed:.1f}s"
        # capped: at most CAP a second were read (the flood spans at most ceil(elapsed) + 1 seconds)
        read = c["packets"] + c["duplicates"] - before["packets"]
        assert read <= CAP * (int(elapsed) + 2), (read, elapsed)
        assert read >= CAP, "the device's own rate up to the cap is still read"
        # counted: every advertisement heard was read or counted as over the rate
        assert c["over_rate"] == heard - read
        health = rt.slots["flooder"].health
        assert health.state == HealthState.DEGRADED
        assert f"more than {CAP} advertisements a second from {FLOODER}" in health.reason
        # the calm device: every packet read, nothing dropped, online
        assert calm.counters["packets"] == calm_sent + 1 and calm.counters["over_rate"] == 0
        assert rt.slots["calm"].health.state == HealthState.ONLINE

        # the flood is over: the device goes on at a sensor's pace; after a second without excess
        # its next packet brings it back online
        n = sent + 1

        async def at_a_sensors_pace() -> None:
            nonlocal n
            while True:
                n += 1
                await bluez.advertise(flood_path, {SERVICE_UUID: packet(n)})
                await asyncio.sleep(0.3)

        pace = asyncio.create_task(at_a_sensors_pace())
        try:
            await until(lambda: rt.slots["flooder"].health.state == HealthState.ONLINE, what="online again")
        finally:
            pace.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pace
        # at a sensor's pace only the rest of the flood's last second (whose cap it used up) drops
        assert c["over_rate"] - (heard - read) <= 1 / 0.3 + 1

        await rt.journal.flush()
        rows = rt.journal.read(0, 1_000_000)
        readings = [r for r in rows if r["type"] == "reading" and r["point"].startswith("flooder.")]
        # the journal holds the readings of the packets read, not of the flood
        assert len(readings) <= 2 * c["packets"] <= 2 * (read + 1 + (n - sent - 1))
        # reported once for the burst: one change to degraded, one back to online
        flood_states = [s["state"] for s in states(rows, "flooder")]
        assert flood_states.count("degraded") == 1, flood_states
        assert flood_states[-1] == "online", flood_states
        assert states(rows, "calm") == []
