"""`edge modbus probe`: read a register range once and print it decoded in every word order."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from drivers.modbus.codec import NUMERIC_TYPES
from edge.cli import Subcommands, add_command, add_command_group, arg, one_of

TYPES = [*NUMERIC_TYPES, "string"]


def register(subparsers: Subcommands) -> None:
    # the plain layout: these helps state their defaults themselves, and the description is wrapped
    plain = argparse.HelpFormatter
    sub = add_command_group(
        subparsers,
        "modbus",
        help="Modbus commissioning tools",
        description="Modbus commissioning tools.",
        dest="modbus_command",
        metavar=None,
        formatter_class=plain,
    )
    add_command(
        sub,
        "probe",
        help="read registers once; print them raw and decoded in every word order",
        description=(
            "Read COUNT registers (or bits) from a device once and print the raw values and, for "
            "register tables, the values decoded as TYPE in each word order (ABCD, CDAB, BADC, DCBA), "
            "so you can tell which order the device uses."
        ),
        func=probe_command,
        formatter_class=plain,
        args=[
            one_of(
                arg("--host", help="Modbus TCP device or serial server (IP or name)"),
                arg("--serial", metavar="DEVICE", help="serial port for RTU, e.g. /dev/ttyUSB0"),
                required=True,
            ),
            arg("--port", type=int, default=502, help="TCP port (default 502)"),
            arg("--rtu-over-tcp", action="store_true", help="RTU framing over TCP (serial servers)"),
            arg("--baudrate", type=int, default=9600, help="serial speed (default 9600)"),
            arg("--parity", choices=["N", "E", "O"], default="N", help="serial parity (default N)"),
            arg("--unit", type=int, default=1, help="unit id (default 1)"),
            arg(
                "--table",
                choices=["coil", "discrete", "holding", "input"],
                default="holding",
                help="default holding",
            ),
            arg("--address", type=lambda s: int(s, 0), default=0, help="start address, 8192 or 0x2000"),
            arg("--count", type=int, default=2, help="registers or bits to read (default 2)"),
            arg("--type", choices=TYPES, default="float32", help="decode as (default float32)"),
            arg("--timeout", type=float, default=2.0, help="seconds (default 2)"),
            arg("--json", action="store_true", help="print the result as JSON"),
        ],
    )


def probe_command(args: argparse.Namespace) -> int:
    import logging

    # pymodbus logs its own connection errors; the probe says what failed in one line of its own
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    logging.getLogger("drivers.modbus").setLevel(logging.ERROR)  # a malformed answer: said below
    from drivers.modbus.config import Connection
    from drivers.modbus.probe import format_probe, probe
    from drivers.modbus.transport import DeviceException, LinkError

    try:
        if args.serial:
            spec = {"transport": "rtu", "port": args.serial, "baudrate": args.baudrate, "parity": args.parity}
        else:
            transport = "rtu_over_tcp" if args.rtu_over_tcp else "tcp"
            spec = {"transport": transport, "host": args.host, "port": args.port}
        conn = Connection.model_validate(spec)
        limit = 2000 if args.table in ("coil", "discrete") else 125
        if not 1 <= args.count <= limit:
            raise ValueError(f"--count must be 1..{limit} for table {args.table}")
        result = asyncio.run(
            probe(
                conn,
                unit=args.unit,
                table=args.table,
                address=args.address,
                count=args.count,
                data_type=args.type,
                timeout=args.timeout,
            )
        )
    except (LinkError, DeviceException, ValueError) as exc:
        print(f"edge modbus probe: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, default=str) if args.json else format_probe(result))
    return 0
