"""Commissioning: read a register range once and show it decoded in every word order.

A technician on site rarely knows a meter's word order; reading the voltage register and seeing
which order gives ~230 V settles it. `probe()` is a plain coroutine (the CLI and the web UI's
commissioning page both call it); `format_probe()` renders its result as text.
"""

from __future__ import annotations

from typing import Any

from drivers.modbus import codec
from drivers.modbus.config import BIT_TABLES, Connection
from drivers.modbus.driver import READ_METHODS
from drivers.modbus.transport import Link


def decode_all(registers: list[int], data_type: str) -> list[dict[str, Any]]:
    """Each value that fits in `registers`, decoded in every order: [{"offset", "orders": {...}}]."""
    n = codec.register_count(data_type, len(registers) * 2 if data_type == "string" else None)
    rows = []
    step = n if data_type != "string" else len(registers)
    for off in range(0, len(registers) - n + 1, step):
        rows.append({"offset": off, "orders": codec.every_order(registers[off : off + n], data_type)})
    return rows


async def probe(
    connection: Connection,
    *,
    unit: int = 1,
    table: str = "holding",
    address: int = 0,
    count: int = 2,
    data_type: str = "float32",
    timeout: float = 2.0,
) -> dict[str, Any]:
    """Read once and decode; raises LinkError / DeviceException with a readable message."""
    if table not in READ_METHODS:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(READ_METHODS)}")
    link = Link(connection, timeout=timeout, retries=0)
    try:
        resp = await link.call(unit, READ_METHODS[table], address, count=count)
    finally:
        link.close()
    out: dict[str, Any] = {
        "target": link.describe(),
        "unit": unit,
        "table": table,
        "address": address,
        "count": count,
        "type": data_type,
    }
    if table in BIT_TABLES:
        out["bits"] = [bool(b) for b in resp.bits[:count]]
        return out
    regs = list(resp.registers[:count])
    out["registers"] = regs
    out["decoded"] = decode_all(regs, data_type)
    return out


def format_probe(result: dict[str, Any]) -> str:
    lines = [
        f"{result['target']} unit {result['unit']} {result['table']} {result['address']} "
        f"(0x{result['address']:04X}) count {result['count']}"
    ]
    if "bits" in result:
        for i, b in enumerate(result["bits"]):
            lines.append(f"  {result['address'] + i:5d}  {int(b)}")
        return "\n".join(lines)
    lines.append("raw registers:")
    for i, r in enumerate(result["registers"]):
        lines.append(f"  {result['address'] + i:5d}  0x{r:04X}  {r:6d}")
    lines.append(f"as {result['type']} in each word order:")
    lines.append("  address  " + "  ".join(f"{o:>16}" for o in codec.ORDERS))
    for row in result["decoded"]:
        cells = "  ".join(f"{_fmt(row['orders'][o]):>16}" for o in codec.ORDERS)
        lines.append(f"  {result['address'] + row['offset']:7d}  {cells}")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v) if isinstance(v, str) else str(v)
