"""What the site's `modbus_server:` map allows but someone should decide on purpose: a served point
whose values, as far as its own config tells (a polled Modbus point's register type and scale,
text points), can fall outside what its served register holds. Such values are answered with
exception 0x04 at run time (see server.py); the warning says so before a BMS finds out.

A float point has no known range (a float32 register's range says nothing about the meter), and a
bool fits every register, so neither is warned about.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.modbus import codec
from edge.model import PointType

if TYPE_CHECKING:
    from drivers.modbus.server import ServedPoint, ServerConfig
    from edge.config import Site


def range_warnings(site: Site) -> list[str]:
    """One `modbus_server.points[i]: warning: …` line per served point that may not fit."""
    # the server module imports this one when it starts: the section is taken as it validated
    config: ServerConfig | None = site.sections.get("modbus_server")  # type: ignore[assignment]
    if config is None:
        return []
    devices = {d.id: d for d in site.devices}
    out: list[str] = []
    for i, served in enumerate(config.points):
        if served.type not in codec.NUMERIC_TYPES:
            continue
        device_id, _, name = served.point.partition(".")
        device = devices.get(device_id)
        if device is None:
            continue
        why = _does_not_fit(served, device, name)
        if why:
            out.append(
                f"modbus_server.points[{i}]: warning: {served.point} {why}; a read of its registers is "
                "answered with exception 0x04 (server device failure) while its value does not fit"
            )
    return out


def _does_not_fit(served: ServedPoint, device: Any, name: str) -> str | None:
    source = next(
        (p for p in getattr(device, "points", None) or [] if getattr(p, "name", None) == name), None
    )
    register = str(getattr(source, "type", None))
    if source is not None and getattr(device, "driver", None) == "modbus" and register in codec.INTEGER_TYPES:
        lo, hi = codec.LIMITS[register]
        ends = sorted((lo * source.scale + source.offset, hi * source.scale + source.offset))
        slo, shi = codec.LIMITS[served.type]
        raw = sorted((ends[0] / served.scale, ends[1] / served.scale))
        if served.type in codec.INTEGER_TYPES:
            raw = [round(raw[0]), round(raw[1])]
        if slo <= raw[0] and raw[1] <= shi:
            return None
        span = sorted((slo * served.scale, shi * served.scale))
        return (
            f"({register}{_scaled(source.scale, source.offset)}: {_g(ends[0])}..{_g(ends[1])}) can exceed "
            f"{served.type}{_scaled(served.scale, 0)} at {served.table} address {served.address} "
            f"({_g(span[0])}..{_g(span[1])})"
        )
    info = next((p for p in device.point_infos() if p.name == name), None)
    if info is not None and info.type == PointType.STR:
        return (
            f"is text, which a {served.type} register at {served.table} address {served.address} cannot hold"
        )
    return None


def _scaled(scale: float, offset: float) -> str:
    parts = [f"scale {scale:g}"] if scale != 1 else []
    parts += [f"offset {offset:g}"] if offset else []
    return f" {', '.join(parts)}" if parts else ""


def _g(x: float) -> str:
    return f"{x:.12g}"
