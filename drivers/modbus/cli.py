"""`edge modbus probe`: read a register range once and print it decoded in every word order."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

TYPES = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "string"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "modbus", help="Modbus commissioning tools", description="Modbus commissioning tools."
    )
    sub = p.add_subparsers(dest="modbus_command", required=True)
    pr = sub.add_parser(
        "probe",
        help="read registers once; print them raw and decoded in every word order",
        description=(
            "Read COUNT registers (or bits) from a device once and print the raw values and, for "
            "register tables, the values decoded as TYPE in each word order (ABCD, CDAB, BADC, DCBA), "
            "so you can tell which order the device uses."
        ),
    )
    target = pr.add_mutually_exclusive_group(required=True)
    target.add_argument("--host", help="Modbus TCP device or serial server (IP or name)")
    target.add_argument("--serial", metavar="DEVICE", help="serial port for RTU, e.g. /dev/ttyUSB0")
    pr.add_argument("--port", type=int, default=502, help="TCP port (default 502)")
    pr.add_argument("--rtu-over-tcp", action="store_true", help="RTU framing over TCP (serial servers)")
    pr.add_argument("--baudrate", type=int, default=9600, help="serial speed (default 9600)")
    pr.add_argument("--parity", choices=["N", "E", "O"], default="N", help="serial parity (default N)")
    pr.add_argument("--unit", type=int, default=1, help="unit id (default 1)")
    pr.add_argument(
        "--table", choices=["coil", "discrete", "holding", "input"], default="holding", help="default holding"
    )
    pr.add_argument("--address", type=lambda s: int(s, 0), default=0, help="start address, 8192 or 0x2000")
    pr.add_argument("--count", type=int, default=2, help="registers or bits to read (default 2)")
    pr.add_argument("--type", choices=TYPES, default="float32", help="decode as (default float32)")
    pr.add_argument("--timeout", type=float, default=2.0, help="seconds (default 2)")
    pr.add_argument("--json", action="store_true", help="print the result as JSON")
    pr.set_defaults(func=probe_command)


def probe_command(args: argparse.Namespace) -> int:
    import logging

    # pymodbus logs its own connection errors; the probe says what failed in one line of its own
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
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
