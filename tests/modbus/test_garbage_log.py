"""A device that answers garbage does not flood the log: `edge run` polling a TCP "device" that
answers every request with 64 KiB of random bytes writes short lines (pymodbus logged each bad
frame as an ERROR with a hex dump of all it had received: a device answering garbage wrote
126 MB of log in 40 s, formatted on the event loop); the driver counts those failures itself."""

from __future__ import annotations

import os
from pathlib import Path

from tests.modbus.servers import GarbageServer
from tests.support.cli import start_edge_run
from tests.support.procs import stop_process
from tests.support.site import site_file
from tests.support.waiting import until

GARBAGE = 64 * 1024


async def test_a_device_answering_garbage_writes_short_log_lines(tmp_path: Path) -> None:
    srv = await GarbageServer(lambda request: os.urandom(GARBAGE)).start()
    doc = {
        "devices": [
            {
                "id": "meter",
                "driver": "modbus",
                "connection": {"transport": "tcp", "host": "127.0.0.1", "port": srv.port},
                "poll": 0.2,
                "timeout": 0.5,
                "retries": 0,
                "points": [{"name": "v", "address": 0, "type": "float32"}],
            }
        ],
        "web": {"listen": "127.0.0.1:0"},
    }
    log = tmp_path / "edge.log"
    edge = start_edge_run(site_file(tmp_path, doc), log)
    try:
        await until(
            lambda: len(srv.requests) >= 10 or edge.poll() is not None, timeout=60, what="ten garbage answers"
        )
        assert edge.poll() is None, log.read_text(errors="replace")[-2000:]
    finally:
        stop_process(edge)
        await srv.stop()
    lines = log.read_text(errors="replace").splitlines()
    longest = max(len(line) for line in lines)
    assert longest < 3000, f"a log line of {longest:,} characters"
    assert log.stat().st_size < 10 * GARBAGE, (
        f"{log.stat().st_size:,} bytes of log for {len(srv.requests)} answers"
    )
