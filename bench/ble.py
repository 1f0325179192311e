"""BLE benchmark: BTHome advertisements/s decoded and dispatched through the driver to the hub,
beside a floor measured in the same run (a bare `struct.unpack_from` loop over the same bytes).

    python -m bench.ble [--quick]

50 BTHome sensors (battery, temperature, humidity, distance, each packet with a new packet id)
listen on one shared scanner; the benchmark calls the scanner's detection callback as bleak
would for each advertisement, and every driver's stream is consumed into a Hub as the runtime
does. The radio and BlueZ are not part of it: a real adapter delivers tens to a few hundred
advertisements per second, far below either figure.

The GATT health decoders (glucose measurement + context, PLX spot-check and continuous, blood
pressure) are timed the same way: values/s through `drivers.ble.glucose`/`plx`/`measurements`
beside a floor of `struct.unpack_from` over the same bytes (flags and the two SFLOATs).
The last line is one JSON object with the figures, "ratio" (pipeline / floor) and "gatt_ratio".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import struct
import time
from types import SimpleNamespace
from typing import Any

from drivers.ble import glucose, measurements, plx
from drivers.ble.bthome import SERVICE_UUID, encode
from drivers.ble.config import BleDevice
from drivers.ble.driver import BleDriver
from drivers.ble.scanner import SharedScanner
from edge.driver import DriverContext
from edge.hub import Hub

DEVICES = 50
FLOOR_LAYOUT = struct.Struct("<xxBxBxhxHxH")  # info, pid, battery, temperature, humidity, distance


def advertisements(n: int) -> list[tuple[Any, Any]]:
    """n (BLEDevice, AdvertisementData) look-alikes, round-robin over the devices."""
    out = []
    for i in range(n):
        address = f"A4:C1:38:00:{i % DEVICES // 256:02X}:{i % DEVICES % 256:02X}"
        data = encode(
            [(0x01, 50 + i % 50), (0x02, 2000 + i % 500), (0x03, 5000 + i % 1000), (0x40, i % 4000)],
            packet_id=(i // DEVICES) % 256,
        )
        out.append(
            (SimpleNamespace(address=address), SimpleNamespace(service_data={SERVICE_UUID: data}, rssi=-60))
        )
    return out


def floor(ads: list[tuple[Any, Any]], rounds: int) -> float:
    payloads = [adv.service_data[SERVICE_UUID] for _dev, adv in ads]
    unpack = FLOOR_LAYOUT.unpack_from
    t0 = time.perf_counter()
    for _ in range(rounds):
        for data in payloads:
            unpack(data)
    return len(payloads) * rounds / (time.perf_counter() - t0)


async def pipeline(ads: list[tuple[Any, Any]], rounds: int) -> tuple[float, int]:
    hub = Hub()
    scanner = SharedScanner("hci0")
    ctx = DriverContext(
        "bench", "/tmp", logging.getLogger("bench.ble"), time.time, register_points=hub.register_points
    )
    drivers = []
    for i in range(DEVICES):
        address = f"A4:C1:38:00:{i // 256:02X}:{i % 256:02X}"
        dev = BleDevice.model_validate(
            {
                "id": f"bin-{i}",
                "driver": "ble",
                "address": address,
                "points": [
                    {"name": "battery"},
                    {"name": "temperature"},
                    {"name": "humidity"},
                    {"name": "fill_distance", "object": "distance_mm"},
                ],
            }
        )
        driver = BleDriver(dev, ctx)
        scanner.listeners[dev.address] = driver._on_advertisement  # what start() registers
        hub.register_points(driver.points())
        drivers.append(driver)

    async def consume(driver: BleDriver) -> None:
        async for batch in driver.stream():
            hub.ingest(batch)

    consumers = [asyncio.create_task(consume(d)) for d in drivers]
    dispatch = scanner.dispatch
    t0 = time.perf_counter()
    for _ in range(rounds):
        for j, (device, adv) in enumerate(ads):
            dispatch(device, adv)
            if j % 500 == 499:
                await asyncio.sleep(0)  # the runtime's consumers run between bursts
    for d in drivers:
        d.end_stream()  # after the last batch: each consumer drains its queue, then ends
    await asyncio.gather(*consumers)
    elapsed = time.perf_counter() - t0
    packets = sum(d.counters["packets"] for d in drivers)
    assert sum(d.counters["garbage"] + d.counters["duplicates"] for d in drivers) == 0
    return packets / elapsed, hub.received


#: one value of each GATT characteristic the driver decodes, with its decoder
GATT_VALUES: list[tuple[Any, bytes]] = [
    (glucose.measurement, bytes.fromhex("1b 01 00 e3 07 02 1b 0b 0a 1e fb ff 34 b0 12 05 01")),
    (glucose.context, bytes.fromhex("ff 00 00 b3 03 64 00 04 12 3c 00 32 04 d2 f4 59 f1")),
    (plx.spot_check, bytes.fromhex("0f ac f3 be f5 e8 07 0b 1d 17 08 39 20 40 22 00 00 66 e3")),
    (plx.continuous, bytes.fromhex("1f de f3 ca f3 ca f3 5a f5 d4 f3 b2 f2 20 01 00 00 00 7a e3")),
    (measurements.blood_pressure, bytes.fromhex("1e 98 00 5f 00 ff 07 e8 07 0c 06 07 00 00 4e 00 02 00 00")),
]
GATT_FLOOR = struct.Struct("<BHH")


def gatt(rounds: int) -> tuple[float, float]:
    """(values/s through the decoders, floor unpacks/s over the same bytes)."""
    values = GATT_VALUES * 200
    t0 = time.perf_counter()
    for _ in range(rounds):
        for decode, data in values:
            decode(data)
    rate = len(values) * rounds / (time.perf_counter() - t0)
    unpack = GATT_FLOOR.unpack_from
    t0 = time.perf_counter()
    for _ in range(rounds):
        for _decode, data in values:
            unpack(data)
    return rate, len(values) * rounds / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer advertisements (under a minute)")
    args = ap.parse_args()
    n, rounds = (20_000, 3) if args.quick else (100_000, 5)
    ads = advertisements(n)
    floor_rate = floor(ads, rounds * 5)
    rate, readings = asyncio.run(pipeline(ads, rounds))
    ratio = rate / floor_rate
    gatt_rate, gatt_floor = gatt(20 if args.quick else 100)
    print(f"floor (struct.unpack_from over the same bytes): {floor_rate:,.0f} packets/s")
    print(
        f"decode + dispatch + driver + hub:               {rate:,.0f} advertisements/s ({readings:,} readings)"
    )
    print(f"ratio {ratio:.3f}")
    print(f"GATT floor (struct.unpack_from, flags + 2 SFLOATs): {gatt_floor:,.0f} values/s")
    print(f"GATT decoders (glucose, context, PLX, blood pressure): {gatt_rate:,.0f} values/s")
    print(f"GATT ratio {gatt_rate / gatt_floor:.3f}")
    print(
        json.dumps(
            {
                "bench": "ble",
                "devices": DEVICES,
                "advertisements": n * rounds,
                "advertisements_per_s": round(rate),
                "readings": readings,
                "floor_unpack_per_s": round(floor_rate),
                "gatt_values_per_s": round(gatt_rate),
                "gatt_floor_unpack_per_s": round(gatt_floor),
                "gatt_ratio": round(gatt_rate / gatt_floor, 3),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
