"""A pulse oximeter through the whole stack: the mock BlueZ plays its PLX service (spot-check,
continuous, features), bleak's real BlueZ client subscribes and reads the features; the driver turns
each value into a `spo2` event, leaves special values out of the numbers and counts a malformed
value instead of raising."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbus_fast import Variant

from edge.model import Event, HealthState
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until

OXIMETER = "C0:26:DA:00:00:22"
CHAR = "org.bluez.GattCharacteristic1"
# Stanford Spezi's SpeziBluetooth PLX tests (Tests/SpeziBluetoothServicesTests/PLXTests.swift)
SPOT_CHECK = bytes([15, 172, 243, 190, 245, 232, 7, 11, 29, 23, 8, 57, 32, 64, 34, 0, 0, 102, 227])
FEATURES = bytes([163, 0, 64, 16, 128, 1, 0])


def spo2_events(records: list[Any]) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.kind == "spo2"]


async def test_spot_check_and_continuous_measurements_with_special_values(
    tmp_path: Path, bluez: MockBluez
) -> None:
    site = {
        "devices": [
            {
                "id": "kiosk-spo2",
                "driver": "ble",
                "address": OXIMETER,
                "adapter": ADAPTER,
                "mode": "gatt",
                "services": ["pulse_oximeter"],
                "connect_timeout": "5s",
                "reconnect_min": "50ms",
                "reconnect_max": "200ms",
            }
        ]
    }
    async with running_site(tmp_path, site, web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        slot = rt.slots["kiosk-spo2"]
        driver = slot.driver
        device = await bluez.add_device(OXIMETER, "Oximeter", refuse="asleep")
        spot, cont, features = await bluez.add_service(
            device, 0x1822, [(0x2A5E, ["indicate"]), (0x2A5F, ["notify"]), (0x2A60, ["read"])]
        )
        await bluez.set_properties(features, CHAR, {"Value": Variant("ay", FEATURES)})
        await bluez.refuse_connections(device, "")
        await bluez.advertise(device, {})
        await until(lambda: driver.connected and driver.plx_features, what="connected, features read")
        assert driver.plx_features["features"] == [
            "measurement status",
            "device and sensor status",
            "SpO2PR-Slow",
            "multiple bonds",
        ]
        await bluez.indicate(spot, SPOT_CHECK)
        await until(lambda: len(spo2_events(seen)) == 1, what="the spot-check")
        assert spo2_events(seen)[0].payload == {
            "mode": "spot_check",
            "spo2_pct": 94,
            "pulse_bpm": 147,
            "measured_at": "2024-11-29T23:08:57",
            "measurement_status": ["measurement ongoing", "questionable measurement detected"],
            "device_status": ["equipment malfunction detected", "low perfusion detected"],
            "pulse_amplitude_index_pct": 8.7,
            "privacy": "sensitive",
        }
        # the finger is out: SpO2 NaN, pulse rate NRes; then the pulse settles before the SpO2
        await bluez.indicate(cont, bytes.fromhex("00 ff07 0008"))
        await until(lambda: driver.counters["bad_measurements"] == 1, what="nothing to report: counted")
        await bluez.indicate(cont, bytes.fromhex("00 ff07 4800"))
        await until(lambda: len(spo2_events(seen)) == 2, what="the continuous measurement")
        assert spo2_events(seen)[1].payload == {
            "mode": "continuous",
            "pulse_bpm": 72,
            "special": {"spo2_pct": "NaN"},
            "privacy": "sensitive",
        }
        await bluez.indicate(cont, bytes.fromhex("02 6000 4800"))  # flags announce Slow: cut short
        await until(lambda: driver.counters["bad_measurements"] == 2, what="the short value counted")
        assert "continuous measurement with flags 0x02" in slot.health.reason
        assert slot.health.state == HealthState.DEGRADED and slot.restarts == 0
        await bluez.indicate(cont, bytes.fromhex("00 6100 4600"))
        await until(lambda: len(spo2_events(seen)) == 3, what="a good one after the bad")
        assert spo2_events(seen)[2].payload["spo2_pct"] == 97
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online again")
