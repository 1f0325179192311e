"""GATT health instruments through the whole stack: the mock BlueZ plays a blood-pressure cuff
(a GattService1 and an indicating GattCharacteristic1), bleak's real BlueZ client connects,
starts notifications and receives the indication as a Value change; the driver turns it into a
`blood_pressure` event the health rule pack reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbus_fast import Variant

from drivers.ble.bthome import SERVICE_UUID
from drivers.ble.ieee11073 import encode_sfloat
from edge.model import Event, HealthState
from tests.ble.bluez import ADAPTER, MockBluez
from tests.support.site import running_site
from tests.support.waiting import until, until_async

ROOT = Path(__file__).resolve().parents[2]
CUFF = "C0:26:DA:00:00:01"
CHAR = "org.bluez.GattCharacteristic1"


def cuff_site() -> dict[str, Any]:
    return {
        "devices": [
            {
                "id": "kiosk-bp",
                "driver": "ble",
                "address": CUFF,
                "adapter": ADAPTER,
                "mode": "gatt",
                "services": ["blood_pressure"],
                "connect_timeout": "5s",
                "reconnect_min": "50ms",
                "reconnect_max": "200ms",
            }
        ]
    }


def sfloat(v: float) -> bytes:
    return encode_sfloat(v).to_bytes(2, "little")


def bp(systolic: float, diastolic: float, pulse: float, user: int = 1) -> bytes:
    return (
        bytes([0x0C])
        + sfloat(systolic)
        + sfloat(diastolic)
        + bytes.fromhex("ff07")
        + sfloat(pulse)
        + bytes([user])
    )


def events(records: list[Any], kind: str) -> list[Event]:
    return [r for r in records if isinstance(r, Event) and r.kind == kind]


async def cuff_wakes_up(bluez: MockBluez) -> tuple[str, str]:
    """The cuff appears with its blood-pressure service and advertises; returns (device, char) paths."""
    device = await bluez.add_device(CUFF, "BP cuff")
    char = await bluez.add_gatt(device, 0x1810, 0x2A35)
    await bluez.advertise(device, {})
    return device, char


async def cuff_measuring(rt: Any, bluez: MockBluez) -> tuple[list[Any], str, str]:
    """The cuff wakes up and the driver subscribes; returns (records seen by the hub, device, char)."""
    seen: list[Any] = []
    rt.hub.subscribe(seen.extend)
    device, char = await cuff_wakes_up(bluez)
    await wait_subscribed(bluez, char)
    return seen, device, char


async def subscribed(bluez: MockBluez, char: str) -> bool:
    return bool(await bluez.property(char, CHAR, "Notifying"))


async def wait_subscribed(bluez: MockBluez, char: str) -> None:
    await until_async(lambda: subscribed(bluez, char), what="StartNotify on the measurement")


async def test_indication_becomes_a_sensitive_blood_pressure_event(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, cuff_site(), web=False) as rt:
        seen, _device, char = await cuff_measuring(rt, bluez)
        slot = rt.slots["kiosk-bp"]
        assert slot.health.state == HealthState.ONLINE
        await bluez.indicate(char, bp(152, 95, 78, user=2))
        await until(lambda: events(seen, "blood_pressure"), what="blood_pressure event")
        (event,) = events(seen, "blood_pressure")
        assert event.source == "kiosk-bp"
        assert event.payload == {
            "systolic_mmhg": 152,
            "diastolic_mmhg": 95,  # the cuff sent NaN for the mean arterial pressure: left out
            "pulse_bpm": 78,
            "user": 2,
            "privacy": "sensitive",
        }
        await until(lambda: rt.hub.latest.get("kiosk-bp.measurements"), what="counter")
        assert rt.hub.latest["kiosk-bp.measurements"].value == 1


async def test_special_values_are_counted_bad_measurements_not_numbers(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, cuff_site(), web=False) as rt:
        seen, _device, char = await cuff_measuring(rt, bluez)
        slot = rt.slots["kiosk-bp"]
        driver = slot.driver
        for special in ("ff07", "0008", "fe07", "0208"):  # NaN, NRes, +INF, -INF
            before = driver.counters["bad_measurements"]
            await bluez.indicate(char, bytes([0x00]) + bytes.fromhex(special) + sfloat(80) + sfloat(90))
            await until(lambda b=before: driver.counters["bad_measurements"] == b + 1, what=special)
        assert slot.health.state == HealthState.DEGRADED
        assert "systolic" in slot.health.reason and "4 bad measurements" in slot.health.reason
        await bluez.indicate(char, bp(118, 76, 64))
        await until(lambda: events(seen, "blood_pressure"), what="a good measurement")
        assert [e.payload["systolic_mmhg"] for e in events(seen, "blood_pressure")] == [118]
        assert driver.counters["measurements"] == 1
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online after a good one")


async def test_instrument_that_disconnects_is_reconnected_when_it_advertises_again(
    tmp_path: Path, bluez: MockBluez
) -> None:
    async with running_site(tmp_path, cuff_site(), web=False) as rt:
        seen, device, char = await cuff_measuring(rt, bluez)
        driver = rt.slots["kiosk-bp"].driver
        await bluez.indicate(char, bp(120, 80, 70))
        await until(lambda: len(events(seen, "blood_pressure")) == 1, what="first measurement")
        # the cuff goes back to sleep: BlueZ reports the link gone
        await bluez.disconnect(device)
        await bluez.set_properties(char, CHAR, {"Notifying": Variant("b", False)})
        await until(lambda: not driver.connected, what="driver saw the disconnect")
        await bluez.advertise(device, {})  # next morning: it wakes up for a new measurement
        await until(lambda: driver.counters["connects"] == 2, what="reconnected")
        await wait_subscribed(bluez, char)
        await bluez.indicate(char, bp(125, 85, 72))
        await until(lambda: len(events(seen, "blood_pressure")) == 2, what="second measurement")
        assert rt.hub.latest["kiosk-bp.measurements"].value == 2


async def test_refused_connection_backs_off_and_is_reported(tmp_path: Path, bluez: MockBluez) -> None:
    async with running_site(tmp_path, cuff_site(), web=False) as rt:
        device = await bluez.add_device(CUFF, "BP cuff", refuse="le-connection-abort-by-remote")
        char = await bluez.add_gatt(device, 0x1810, 0x2A35)
        slot = rt.slots["kiosk-bp"]
        driver = slot.driver
        await until(lambda: driver.counters["connect_failures"] >= 2, what="two failed attempts")
        assert slot.health.state == HealthState.DEGRADED
        assert "GATT connection to C0:26:DA:00:00:01 failed" in slot.health.reason
        assert "le-connection-abort-by-remote" in slot.health.reason
        assert slot.restarts == 0
        await bluez.refuse_connections(device, "")
        await wait_subscribed(bluez, char)
        await until(lambda: slot.health.state == HealthState.ONLINE, what="online once it connects")


async def test_hanging_connection_times_out_and_holds_up_no_other_device(
    tmp_path: Path, bluez: MockBluez
) -> None:
    site = cuff_site()
    site["devices"][0]["connect_timeout"] = "4s"
    site["devices"].append(
        {"id": "bin-1", "driver": "ble", "address": "A4:C1:38:00:00:01", "adapter": ADAPTER}
    )
    async with running_site(tmp_path, site, web=False) as rt:
        cuff = await bluez.add_device(CUFF, "BP cuff", refuse="hang")
        await bluez.add_gatt(cuff, 0x1810, 0x2A35)
        bin_path = await bluez.add_device("A4:C1:38:00:00:01")
        slot = rt.slots["kiosk-bp"]
        driver = slot.driver
        await until(lambda: driver.connected is False and driver.counters["advertisements"] > 0)
        # while the cuff's connection hangs, the bin's advertisements keep arriving
        for pid in range(3):
            await bluez.advertise(bin_path, {SERVICE_UUID: bytes([0x40, 0x00, pid, 0x01, 50 + pid])})
            await until(lambda pid=pid: rt.hub.latest.get("bin-1.battery", None) is not None
                        and rt.hub.latest["bin-1.battery"].value == 50 + pid, what=f"bin packet {pid}")  # fmt: skip
        assert driver.counters["connect_failures"] == 0  # still inside the first attempt
        await until(lambda: driver.counters["connect_failures"] >= 1, timeout=10, what="the timeout")
        assert "no connection within 4s" in slot.health.reason
        assert slot.restarts == 0


async def test_the_health_pack_alerts_on_a_very_high_reading_from_a_real_cuff(
    tmp_path: Path, bluez: MockBluez
) -> None:
    site = {**cuff_site(), "rules": {"packs": [str(ROOT / "deploy/rules/health.yaml")]}}
    async with running_site(tmp_path, site, web=False) as rt:
        seen, _device, char = await cuff_measuring(rt, bluez)
        await bluez.indicate(char, bp(186, 124, 90))
        alerts = await until(lambda: events(seen, "alert"), what="the health pack's alert")
        assert [a.payload["rule"] for a in alerts] == ["bp-very-high"]
        assert alerts[0].severity == "critical" and "186/124" in alerts[0].payload["message"]
        assert alerts[0].payload["privacy"] == "sensitive"  # it quotes a sensitive measurement
        await bluez.indicate(char, bp(118, 76, 70))  # a normal reading: no alert
        await until(lambda: len(events(seen, "blood_pressure")) == 2, what="the normal reading")
        await bluez.indicate(char, bp(150, 85, 72))  # a high one: the warning, after nothing else
        await until(lambda: len(events(seen, "alert")) == 2, what="the second alert")
        assert [a.payload["rule"] for a in events(seen, "alert")] == ["bp-very-high", "bp-high"]


async def test_the_demo_kiosk_sends_all_five_instruments_as_real_ones_would(tmp_path: Path) -> None:
    from edge.demo.site import demo_site

    entry = next(d for d in demo_site(tmp_path)["devices"] if d["id"] == "kiosk-instruments")
    assert entry["driver"] == "demo_kiosk"
    site = {
        "devices": [{**entry, "every": "20ms"}],
        "rules": {"packs": [str(ROOT / "deploy/rules/health.yaml")]},
    }
    kinds = {"blood_pressure", "weight", "body_temperature", "glucose", "spo2"}
    async with running_site(tmp_path, site, web=False) as rt:
        seen: list[Any] = []
        rt.hub.subscribe(seen.extend)
        await until(
            lambda: {e.kind for e in seen if isinstance(e, Event)} >= kinds | {"alert"},
            timeout=30,
            what="every instrument's event and a health alert",
        )
    by_kind = {e.kind: e.payload for e in seen if isinstance(e, Event) and e.kind in kinds}
    for payload in by_kind.values():
        assert payload["privacy"] == "sensitive" and payload["resident"].startswith("r-")
    assert {"systolic_mmhg", "diastolic_mmhg", "pulse_bpm"} <= set(by_kind["blood_pressure"])
    assert set(by_kind["glucose"]) >= {"glucose_mmol_l", "glucose_mg_dl", "unit_sent", "meal", "sequence"}
    assert by_kind["spo2"]["mode"] == "spot_check" and "pulse_bpm" in by_kind["spo2"]
    assert "weight_kg" in by_kind["weight"] and by_kind["body_temperature"]["body_site"] == "ear"
