"""Modbus polling benchmark: requests per cycle and poll-cycle wall time against floors.

    python -m bench.modbus [--quick]

One map of 1,000 points across 10 devices (mixed uint16/uint32/float32, small and large gaps) is
planned three ways — the driver's coalescing planner, one request per point (ThingsBoard style)
and Telegraf's greedy `max_insert` — and then polled for real: 10 ModbusDrivers against a
pymodbus TCP server in a separate process, versus the floor of raw pymodbus clients issuing the
very same requests without decoding or bookkeeping, measured in the same run: floor and driver
cycles alternate, so each pair sees the same machine load. The last line is JSON with `"ratio"` =
the median over those pairs of driver cycle time / raw floor cycle time, and `"cpu_ratio"` = this
process's CPU time per driver cycle / per floor cycle (less sensitive to a busy machine).

The map is planned with `max_gap` 10 so the figures compare with earlier runs; the plan the same
map gets with the default `max_gap` is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import statistics
import subprocess
import sys
import time
from typing import Any

from drivers.modbus.codec import register_count
from drivers.modbus.config import ModbusDevice
from drivers.modbus.driver import ModbusDriver
from drivers.modbus.planner import Request, greedy_max_insert, plan
from drivers.modbus.transport import acquire
from edge.driver import DriverContext

DEVICES = 10
POINTS_PER_DEVICE = 100
MAX_GAP = 10


def build_map(seed: int = 7) -> list[list[dict[str, Any]]]:
    """Per device: 100 points; mostly 0-4 register gaps, every ~12th a jump of 20-200 registers."""
    rng = random.Random(seed)
    devices = []
    for _d in range(DEVICES):
        address = rng.randrange(0, 50)
        points = []
        for i in range(POINTS_PER_DEVICE):
            dtype = rng.choice(["uint16", "uint16", "int32", "float32", "float32"])
            points.append({"name": f"p{i}", "table": "input", "address": address, "type": dtype})
            gap = rng.randrange(20, 200) if rng.random() < 0.08 else rng.choice([0, 0, 0, 1, 2, 4])
            address += register_count(dtype) + gap
        devices.append(points)
    return devices


def serve(port: int, max_address: int) -> None:
    """The device side, in its own process: unit ids 1..10, every input register readable."""
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    logging.disable(logging.WARNING)

    async def main() -> None:
        devices = [
            SimDevice(
                unit,
                simdata=(
                    [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                    [SimData(0, values=[False] * 16, datatype=DataType.BITS)],
                    [SimData(0, values=[0] * 16, datatype=DataType.REGISTERS)],
                    [
                        SimData(
                            0,
                            values=[(a * 7) & 0xFFFF for a in range(max_address)],
                            datatype=DataType.REGISTERS,
                        )
                    ],
                ),
            )
            for unit in range(1, DEVICES + 1)
        ]
        server = ModbusTcpServer(devices, address=("127.0.0.1", port))
        await server.serve_forever()

    asyncio.run(main())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError("benchmark server did not start")


async def raw_cycle(clients: list[Any], plans: list[list[Request]]) -> None:
    """The floor: the same requests straight through pymodbus, devices concurrent, no decoding."""

    async def one(unit: int, client: Any, reqs: list[Request]) -> None:
        for r in reqs:
            resp = await client.read_input_registers(r.start, count=r.count, device_id=unit)
            assert not resp.isError()

    await asyncio.gather(*(one(i + 1, c, p) for i, (c, p) in enumerate(zip(clients, plans, strict=True))))


async def run(quick: bool) -> dict[str, Any]:
    from pymodbus.client import AsyncModbusTcpClient

    logging.disable(logging.WARNING)
    cycles = 60 if quick else 300
    maps = build_map()
    max_address = max(p["address"] + 4 for pts in maps for p in pts) + 1
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; the server runs beside us
        [sys.executable, "-m", "bench.modbus", "--serve", str(port), "--max-address", str(max_address)],
        stdout=subprocess.DEVNULL,
    )
    try:
        await wait_listening(port)
        ctx = DriverContext("bench", "/tmp", logging.getLogger("bench"), time.time)
        drivers = []
        for i, pts in enumerate(maps):
            dev = ModbusDevice.model_validate(
                {
                    "id": f"dev{i}",
                    "connection": {"transport": "tcp", "host": "127.0.0.1", "port": port},
                    "unit": i + 1,
                    "poll": 1.0,
                    "max_gap": MAX_GAP,
                    "timeout": 5.0,
                    "points": pts,
                }
            )
            d = ModbusDriver(dev, ctx)
            d.link = acquire(dev.connection, timeout=5.0, retries=0)
            drivers.append(d)
        plans = [d.plan_for(1.0) for d in drivers]
        coalesced = sum(len(p) for p in plans)
        greedy_plans = [greedy_max_insert(d.device.points, max_insert=MAX_GAP) for d in drivers]
        greedy = sum(len(p) for p in greedy_plans)
        registers = sum(r.count for p in plans for r in p)
        greedy_registers = sum(r.count for p in greedy_plans for r in p)
        default_gap = sum(len(plan(d.device.points)) for d in drivers)
        per_point_plans = [
            [Request(p.table, p.address, p.count, (p.name,)) for p in d.device.points] for d in drivers
        ]
        assert all(
            len(plan(d.device.points, max_gap=MAX_GAP)) == len(p) for d, p in zip(drivers, plans, strict=True)
        )

        clients = [AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=0) for _ in drivers]
        for c in clients:
            await c.connect()

        async def driver_cycle() -> None:
            await asyncio.gather(*(d.poll_group(1.0) for d in drivers))
            for d in drivers:  # the runtime would drain these batches into the hub
                while not d._queue.empty():
                    d._queue.get_nowait()

        async def timed(fn: Any, n: int) -> float:
            await fn()  # warm-up (connects, first plan)
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                await fn()
                samples.append(time.perf_counter() - t0)
            return statistics.median(samples)

        # alternate floor and driver cycles so both see the same machine load
        floors, drivers_t, floor_cpu, driver_cpu = [], [], 0.0, 0.0
        await raw_cycle(clients, plans)
        await driver_cycle()
        for _ in range(cycles):
            c0, t0 = time.process_time(), time.perf_counter()
            await raw_cycle(clients, plans)
            c1, t1 = time.process_time(), time.perf_counter()
            await driver_cycle()
            c2, t2 = time.process_time(), time.perf_counter()
            floors.append(t1 - t0)
            drivers_t.append(t2 - t1)
            floor_cpu += c1 - c0
            driver_cpu += c2 - c1
        floor, cycle = statistics.median(floors), statistics.median(drivers_t)
        ratio = statistics.median(d / f for d, f in zip(drivers_t, floors, strict=True))
        per_point = await timed(lambda: raw_cycle(clients, per_point_plans), max(3, cycles // 5))
        for c in clients:
            c.close()
        for d in drivers:
            assert d.health.state == "online", d.health.reason
            if d.link:
                d.link.close()
    finally:
        proc.kill()
        proc.wait()
    points = DEVICES * POINTS_PER_DEVICE
    return {
        "points": points,
        "devices": DEVICES,
        "max_gap": MAX_GAP,
        "requests_per_cycle": coalesced,
        "greedy_max_insert_requests": greedy,
        "registers_read": registers,
        "greedy_registers_read": greedy_registers,
        "default_max_gap_requests": default_gap,
        "one_per_point_requests": points,
        "cycle_ms": round(cycle * 1000, 2),
        "raw_floor_ms": round(floor * 1000, 2),
        "one_per_point_raw_ms": round(per_point * 1000, 2),
        "cycles": cycles,
        "ratio": round(ratio, 3),
        "cpu_ratio": round(driver_cpu / floor_cpu, 3) if floor_cpu else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer cycles (well under a minute)")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--max-address", type=int, default=20000, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.max_address)
        return
    r = asyncio.run(run(args.quick))
    print(f"map: {r['points']} points on {r['devices']} devices (max_gap {r['max_gap']})")
    print(
        f"requests per cycle: coalesced {r['requests_per_cycle']}, greedy max_insert "
        f"{r['greedy_max_insert_requests']}, one per point {r['one_per_point_requests']}; registers read "
        f"{r['registers_read']} vs greedy {r['greedy_registers_read']}; with the default max_gap "
        f"{r['default_max_gap_requests']} requests"
    )
    print(
        f"poll cycle (all devices concurrently, median of {r['cycles']}): driver {r['cycle_ms']} ms, "
        f"raw pymodbus floor for the same requests {r['raw_floor_ms']} ms (ratio {r['ratio']}, "
        f"CPU {r['cpu_ratio']}); "
        f"one request per point, raw: {r['one_per_point_raw_ms']} ms"
    )
    print(json.dumps(r))


if __name__ == "__main__":
    main()
