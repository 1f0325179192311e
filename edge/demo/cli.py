"""`edge demo`: prepares the demo's data directory, starts its simulated Modbus field devices and
serves the site with its web UI."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from edge.cli import Subcommands, add_command, arg, load_or_report, log_level_arg
from edge.commands import site_problems, token_prefix


def register(sub: Subcommands) -> None:
    add_command(
        sub,
        "demo",
        help="run a simulated community site with its web UI",
        description=(
            "Run a simulated community site: electricity and water meters, parking gates with loop\n"
            "sensors, waste bins, a health kiosk (its five instruments simulated down to the bytes they\n"
            "send: blood pressure, weight, temperature, glucose, SpO2), the kiosk's wheelchair tag (an\n"
            "iBeacon that leaves now and then), a corridor thermometer (pvvx firmware advertisements)\n"
            "and an environment sensor that drops out now and then.\n"
            "Two devices are real Modbus TCP devices simulated in the demo process on 127.0.0.1:15020\n"
            "(a free port if that one is taken) and read by the modbus driver: meter-main (CHINT\n"
            "DTSU666, unit 1) and gate-south (parking barrier, unit 2). cam-parking is a camera\n"
            "reading a video the demo draws into DATA_DIR (OpenCV, no camera needed).\n"
            "The site file is written to DATA_DIR/site.yaml (kept across runs, so edits survive); point\n"
            "the other commands at it, e.g. `edge buffer stats -c DATA_DIR/site.yaml`."
        ),
        func=cmd_demo,
        args=[
            arg("--data-dir", default="demo-data", help="where the journal, state and site file live"),
            arg("--host", default="127.0.0.1", help="address of the web UI (0.0.0.0 for the site LAN)"),
            arg("--port", type=int, default=8080, help="port of the web UI"),
            log_level_arg(),
        ],
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from edge.demo.site import prepare
    from edge.logs import setup_logging

    data_dir = Path(args.data_dir)
    path = prepare(data_dir, args.host, args.port)
    setup_logging(args.log_level)
    return asyncio.run(_demo(args, data_dir, path))


async def _demo(args: argparse.Namespace, data_dir: Path, path: Path) -> int:
    """Start the simulated Modbus field devices, then serve the site; stop them afterwards."""
    import logging

    from edge.runtime import SiteLock, StartError

    log = logging.getLogger("edge.demo")
    # one gateway per site, as `edge run`: taken before the demo changes its site file (a camera-less
    # copy, the simulator's port) or starts a simulator, so a second demo on this folder changes
    # nothing of the first's
    first = load_or_report(str(path))
    if first is None:
        return 1
    lock = SiteLock(first.storage.path)
    try:
        lock.acquire()
    except StartError as exc:
        print(f"edge demo: {exc}", file=sys.stderr)
        return 1
    try:
        return await _demo_locked(args, data_dir, path, lock, log)
    finally:
        lock.release()  # the runtime releases it at its stop; this covers an earlier return


async def _demo_locked(args: argparse.Namespace, data_dir: Path, path: Path, lock: Any, log: Any) -> int:
    from edge.demo.site import SIM_HOST, move_simulator_port, ready_cameras, simulator_port
    from edge.service import serve

    path = ready_cameras(path, log)  # without OpenCV: a copy of the site file without cameras
    simulator: Any = None
    wanted = simulator_port(path)
    if wanted is None:
        log.info("site file %s has no simulated Modbus devices (delete it to get them)", path)
    else:
        from drivers.modbus.simulator import FieldDeviceSimulator

        simulator = FieldDeviceSimulator(SIM_HOST, wanted)
        try:
            await simulator.start()
        except OSError as exc:
            simulator = FieldDeviceSimulator(SIM_HOST, 0)
            got = await simulator.start()
            move_simulator_port(path, wanted, got)
            log.warning("Modbus simulator: port %d unavailable (%s); serving on %d instead", wanted, exc, got)
        log.info(
            "Modbus simulator on %s:%d (unit 1: CHINT DTSU666 meter, unit 2: parking barrier)",
            SIM_HOST,
            simulator.port,
        )
    try:
        site = load_or_report(str(path))
        if site is None:
            return 1
        site.web = site.web.model_copy(update={"listen": f"{args.host}:{args.port}"})
        token_file = data_dir / "city-platform.token"
        # a log is copied into tickets and chats: it names the token and where it is, not all of it
        shown = token_prefix(token_file.read_text().strip())

        def announce(rt: Any) -> None:
            url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{rt.web_port}/"
            log.info(
                "demo site running: open %s (site file %s; pull API token for consumer city-platform: "
                "%s, the whole token is in %s)",
                url,
                path,
                shown,
                token_file,
            )

        return await serve(str(path), site, check=site_problems, on_ready=announce, lock=lock)
    finally:
        if simulator is not None:
            await simulator.stop()
