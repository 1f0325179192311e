"""MQTT benchmark: drain a backlog of readings from the journal through a local mosquitto with the
mqtt sink (json format, QoS 1, one batch in flight), beside a floor measured in the same run: a
bare aiomqtt client publishing the same payloads at QoS 1 (encoded ahead, rows in memory), one
batch's messages in flight at a time, as the sink does.

    python -m bench.mqtt [--quick]

mosquitto runs in its own process (Debian package mosquitto). The last line is one JSON object
with the figures and "ratio" (drain / floor; target >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.sync import catch_up_trend, fill_journal, rows_for

BATCH = 5000
CAP = 256 * 1024  # the sink's default max_message_bytes


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        sys.exit("mosquitto is not installed (Debian package mosquitto; scripts/setup-system.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\nmax_inflight_messages 0\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("mosquitto did not start")


async def floor(port: int, rows: list[Any]) -> float:
    """The same payloads published by a bare client at QoS 1, each batch's PUBACKs awaited."""
    import aiomqtt

    from edge.mqtt import formats

    batches = [
        formats.json_messages("bench", "floor", "bench/floor", part, part[0][0], part[-1][0], CAP)
        for part in (rows[i : i + BATCH] for i in range(0, len(rows), BATCH))
    ]
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier="bench-floor",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=200,
    ) as client:
        start = time.perf_counter()
        for msgs in batches:
            await asyncio.gather(*(client.publish(m.topic, m.payload, qos=1) for m in msgs))
        return len(rows) / (time.perf_counter() - start)


async def drain(tmp: Path, db: Path, port: int, committed: int) -> float:
    from edge import plugins
    from edge.config import load_site
    from edge.mqtt.plugin import PLUGIN
    from edge.runtime import Runtime

    found = plugins.discover()
    plugins.use(found if any(p.name == "mqtt" for p in found) else [*found, PLUGIN])
    sink = {
        "id": "central",
        "type": "mqtt",
        "host": "127.0.0.1",
        "port": port,
        "batch": {"max_items": BATCH, "max_age": "1s"},
    }
    doc = {"site": {"id": "bench"}, "storage": {"path": str(db)}, "web": {"listen": "127.0.0.1:0"}}
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump({**doc, "upstream": [sink]}))
    rt = Runtime(load_site(path), with_web=False)
    await rt.start()
    try:
        s = rt.components["sync"].sinks["central"]  # type: ignore[attr-defined]
        start, done = time.perf_counter(), s.cursor
        await s.wait_cursor(committed)
        return (committed - done) / (time.perf_counter() - start)
    finally:
        await rt.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100,000 readings instead of 500,000")
    args = ap.parse_args()
    n = 100_000 if args.quick else 500_000
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as d:
        tmp = Path(d)
        proc, port = start_broker(tmp)
        try:
            db = tmp / "edge.db"
            committed = fill_journal(str(db), n)
            catch_up_trend(db)
            rows = rows_for(n)
            floor_before = asyncio.run(floor(port, rows))
            rate = asyncio.run(drain(tmp, db, port, committed))
            # the machine is shared: measure the floor on both sides of the drain, keep the higher
            floor_after = asyncio.run(floor(port, rows))
        finally:
            proc.terminate()
            proc.wait(10)
    floor_rate = max(floor_before, floor_after)
    ratio = rate / floor_rate
    print(
        f"backlog: {committed:,} records; batches of {BATCH}, json format, messages of at most {CAP // 1024} KiB"
    )
    print(
        f"floor: bare client, QoS 1, same payloads   {floor_rate:>12,.0f} readings/s "
        f"(best of {floor_before:,.0f} before and {floor_after:,.0f} after the drain)"
    )
    print(f"mqtt sink drain from the journal            {rate:>12,.0f} readings/s")
    print(
        f"ratio {ratio:.2f} (target >= 0.50); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(
        json.dumps(
            {
                "records": committed,
                "floor_readings_per_s": round(floor_rate),
                "drain_readings_per_s": round(rate),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
