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
The advertisement formats (iBeacon, Eddystone TLM, the Ruuvi RAWv2 and pvvx layouts of
`drivers/profiles/ble-*.yaml`) are timed likewise: decodes/s of each through `drivers.ble.adverts`
/ `mfr`, and all four beside a floor of one `struct.unpack_from` per payload over the same bytes.
The last line is one JSON object with the figures, "ratio" (pipeline / floor), "gatt_ratio" and
"adverts_ratio".
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

from drivers.ble import adverts, glucose, measurements, mfr, plx
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
        scanner.listeners[address] = driver.on_advertisement  # what start() registers
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


def advert_cases() -> list[tuple[str, Any, tuple[Any, ...], struct.Struct, bytes]]:
    """(name, decoder, its arguments, floor struct, payload) per format, on the golden cases' bytes."""
    ruuvi, pvvx = mfr.load_layout("ble-ruuvi-rawv2"), mfr.load_layout("ble-pvvx-thermometer")
    ruuvi_data = bytes.fromhex("05 12 fc 53 94 c3 7c 00 04 ff fc 04 0c ac 36 42 00 cd cb b8 33 4c 88 4f")
    pvvx_data = bytes.fromhex("93 41 8c 38 c1 a4 ac 08 9e 14 a0 0b 64 88 04")
    ibeacon = adverts.encode_ibeacon(adverts.IBeacon("f7826da6-4fa2-4e98-8024-bc5b71e0893e", 1, 7, -59))
    tlm = adverts.encode_eddystone(adverts.EddystoneTLM(2840, 19.0, 5223, 1094.8))
    return [
        ("ibeacon", adverts.decode_ibeacon, (ibeacon,), struct.Struct(">2x16sHHb"), ibeacon[adverts.APPLE]),
        (
            "eddystone_tlm",
            adverts.decode_eddystone,
            (tlm,),
            struct.Struct(">2xHhII"),
            tlm[adverts.EDDYSTONE_UUID],
        ),
        ("ruuvi_rawv2", mfr.decode, (ruuvi, ruuvi_data), struct.Struct(">xhHHhhhHBH6s"), ruuvi_data),
        ("pvvx", mfr.decode, (pvvx, pvvx_data), struct.Struct("<6shHHBBB"), pvvx_data),
    ]


def advert_formats(rounds: int) -> tuple[dict[str, int], float, float]:
    """(decodes/s per format, all formats' decodes/s, floor unpacks/s over the same payloads)."""
    cases = advert_cases()
    rates: dict[str, int] = {}
    total = 0.0
    for name, decode, args, _layout, _data in cases:
        t0 = time.perf_counter()
        for _ in range(rounds):
            decode(*args)
        elapsed = time.perf_counter() - t0
        rates[f"{name}_per_s"] = round(rounds / elapsed)
        total += elapsed
    t0 = time.perf_counter()
    for _name, _decode, _args, layout, data in cases:
        unpack = layout.unpack_from
        for _ in range(rounds):
            unpack(data)
    return rates, len(cases) * rounds / total, len(cases) * rounds / (time.perf_counter() - t0)


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
    formats, advert_rate, advert_floor = advert_formats(50_000 if args.quick else 200_000)
    print(f"floor (struct.unpack_from over the same bytes): {floor_rate:,.0f} packets/s")
    print(
        f"decode + dispatch + driver + hub:               {rate:,.0f} advertisements/s ({readings:,} readings)"
    )
    print(f"ratio {ratio:.3f}")
    print(f"GATT floor (struct.unpack_from, flags + 2 SFLOATs): {gatt_floor:,.0f} values/s")
    print(f"GATT decoders (glucose, context, PLX, blood pressure): {gatt_rate:,.0f} values/s")
    print(f"GATT ratio {gatt_rate / gatt_floor:.3f}")
    print(f"advertisement floor (struct.unpack_from, one per payload): {advert_floor:,.0f} payloads/s")
    print(
        "advertisement decoders (decodes/s): "
        + ", ".join(f"{k.removesuffix('_per_s')} {v:,}" for k, v in formats.items())
        + f"; together {advert_rate:,.0f}"
    )
    print(f"advertisement ratio {advert_rate / advert_floor:.3f}")
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
                **formats,
                "adverts_per_s": round(advert_rate),
                "adverts_floor_unpack_per_s": round(advert_floor),
                "adverts_ratio": round(advert_rate / advert_floor, 3),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
