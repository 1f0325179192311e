"""`edge demo`: a simulated community site — meters, parking gates, waste bins, a health kiosk.

The generated site file is an ordinary one (written to DATA_DIR/site.yaml), so every other
command works against it: `edge buffer stats -c DATA_DIR/site.yaml`.

Most devices use the `sim` driver. Two are real Modbus TCP devices driven by the `modbus` driver:
`meter-main` (CHINT DTSU666, unit 1) and `gate-south` (parking-barrier controller, unit 2), served
by `drivers.modbus.simulator` inside the demo process on 127.0.0.1:SIM_PORT. When that port is
taken, the demo serves them on a free port and rewrites the port in the site file.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
SIM_HOST = "127.0.0.1"  # the simulated field devices never leave loopback
SIM_PORT = 15020
#: the demo's devices served by the simulator; their `port:` tells the demo where to serve it
SIM_DEVICES = ("meter-main", "gate-south")
_LOOPBACK = ("127.0.0.1", "localhost")


def demo_site(
    data_dir: Path, host: str = "127.0.0.1", port: int = 8080, sim_port: int = SIM_PORT
) -> dict[str, Any]:
    rule_packs = sorted(str(p) for p in (DEPLOY / "rules").glob("*.yaml"))
    site: dict[str, Any] = {
        "site": {
            "id": "sunrise-garden-demo",
            "name": "阳光花园 演示网关 (demo)",
            "timezone": "Asia/Shanghai",
        },
        "storage": {
            "path": str(data_dir / "edge.db"),
            "max_bytes": "512MiB",
            "when_full": "drop_oldest",
            "keep_history": "2d",
        },
        "web": {"listen": f"{host}:{port}"},
        "devices": [
            _meter("meter-b1", "1 号楼 电表 Building 1 meter", base_kw=18, seed=1),
            _meter("meter-b2", "2 号楼 电表 Building 2 meter", base_kw=12, seed=2),
            {
                "id": "meter-main",
                "name": "总进线 电表 Main incomer meter (Modbus)",
                "driver": "modbus",
                "profile": "chint-dtsu666",
                "connection": {"transport": "tcp", "host": SIM_HOST, "port": sim_port},
                "unit": 1,
                "poll": "2s",
            },
            {
                "id": "water-main",
                "name": "总水表 Main water meter",
                "driver": "sim",
                "seed": 3,
                "points": [
                    {
                        "name": "flow_m3h",
                        "signal": "random_walk",
                        "min": 0,
                        "max": 12,
                        "step": 0.4,
                        "interval": "2s",
                        "unit": "m³/h",
                        "deadband": 0.05,
                        "report_every": "30s",
                    },
                    {
                        "name": "total_m3",
                        "signal": "counter",
                        "start": 18250,
                        "step": 0.004,
                        "interval": "2s",
                        "unit": "m³",
                    },
                ],
            },
            {
                "id": "gate-north",
                "name": "北门道闸 North gate barrier",
                "driver": "sim",
                "seed": 4,
                "points": [
                    {
                        "name": "loop_occupied",
                        "type": "bool",
                        "signal": "toggle",
                        "period": "45s",
                        "duty": 0.2,
                        "interval": "500ms",
                        "report_every": "30s",
                    },
                    {
                        "name": "barrier_open",
                        "type": "bool",
                        "signal": "constant",
                        "value": False,
                        "writable": True,
                        "interval": "1s",
                        "report_every": "30s",
                    },
                ],
                "events": [
                    {"kind": "vehicle_passage", "every": "40s", "generator": "vehicle", "privacy": "personal"}
                ],
            },
            {
                "id": "gate-south",
                "name": "南门道闸 South gate barrier (Modbus)",
                "driver": "modbus",
                "profile": "parking-barrier",
                "connection": {"transport": "tcp", "host": SIM_HOST, "port": sim_port},
                "unit": 2,
                "poll": "500ms",
                # polled twice a second, journaled on change (and every 30 s to show it is alive)
                "points": [
                    {"name": name, "report_every": "30s"}
                    for name in (
                        "open_cmd",
                        "close_cmd",
                        "loop_occupied",
                        "barrier_open",
                        "barrier_closed",
                        "fault_code",
                        "vehicle_count",
                    )
                ],
            },
            _bin("bin-east-1", "东区垃圾桶 1 East bin 1", period="20m", seed=5),
            _bin("bin-east-2", "东区垃圾桶 2 East bin 2", period="35m", seed=6),
            {
                **_bin("bin-west-1", "西区垃圾桶 West bin", period="50m", seed=7),
                "faults": [{"type": "garbage", "probability": 0.02}],
            },
            {
                "id": "kiosk-1",
                "name": "健康小屋 Health kiosk",
                "driver": "sim",
                "seed": 8,
                "points": [
                    {
                        "name": "in_use",
                        "type": "bool",
                        "signal": "toggle",
                        "period": "3m",
                        "duty": 0.3,
                        "interval": "5s",
                        "report_every": "1m",
                    },
                ],
                "events": [
                    {
                        "kind": "blood_pressure",
                        "every": "30s",
                        "generator": "blood_pressure",
                        "privacy": "sensitive",
                    }
                ],
            },
            {
                "id": "env-courtyard",
                "name": "中庭环境 Courtyard environment",
                "driver": "sim",
                "seed": 9,
                "points": [
                    {
                        "name": "temperature",
                        "signal": "random_walk",
                        "min": -5,
                        "max": 38,
                        "start": 21,
                        "step": 0.1,
                        "interval": "5s",
                        "unit": "°C",
                        "deadband": 0.05,
                    },
                    {
                        "name": "humidity",
                        "signal": "random_walk",
                        "min": 20,
                        "max": 95,
                        "start": 55,
                        "step": 0.3,
                        "interval": "5s",
                        "unit": "%",
                    },
                ],
                # drops out for 20 s every 5 minutes, so the UI shows offline → recovery
                "faults": [{"type": "dropout", "every": "5m", "duration": "20s"}],
            },
        ],
        "consumers": [
            {
                "id": "city-platform",
                "description": "城市社区平台 City platform (pull API)",
                "token_file": str(data_dir / "city-platform.token"),
            },
        ],
    }
    if rule_packs:
        site["rules"] = {"packs": rule_packs}
    return site


def _meter(device_id: str, name: str, base_kw: float, seed: int) -> dict[str, Any]:
    return {
        "id": device_id,
        "name": name,
        "driver": "sim",
        "seed": seed,
        "points": [
            {
                "name": "voltage",
                "signal": "random_walk",
                "min": 214,
                "max": 236,
                "start": 225,
                "step": 0.3,
                "interval": "2s",
                "unit": "V",
                "deadband": 0.2,
                "report_every": "1m",
            },
            {
                "name": "active_power_kw",
                "signal": "sine",
                "min": base_kw * 0.4,
                "max": base_kw,
                "period": "15m",
                "interval": "2s",
                "unit": "kW",
            },
            {
                "name": "energy_import_kwh",
                "signal": "counter",
                "start": 48210 + seed * 1000,
                "step": 0.01,
                "interval": "2s",
                "unit": "kWh",
            },
            {
                "name": "power_factor",
                "signal": "random_walk",
                "min": 0.85,
                "max": 0.99,
                "start": 0.95,
                "step": 0.005,
                "interval": "10s",
            },
        ],
    }


def _bin(device_id: str, name: str, period: str, seed: int) -> dict[str, Any]:
    return {
        "id": device_id,
        "name": name,
        "driver": "sim",
        "seed": seed,
        "points": [
            {
                "name": "fill_pct",
                "signal": "ramp",
                "min": 0,
                "max": 100,
                "period": period,
                "interval": "5s",
                "unit": "%",
                "deadband": 0.5,
                "report_every": "5m",
            },
            {
                "name": "lid_open",
                "type": "bool",
                "signal": "toggle",
                "period": "7m",
                "duty": 0.05,
                "interval": "2s",
                "report_every": "5m",
            },
        ],
    }


def prepare(data_dir: Path, host: str, port: int, sim_port: int = SIM_PORT) -> Path:
    """Write DATA_DIR/site.yaml (kept if it exists, so edits survive) and the consumer token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    token = data_dir / "city-platform.token"
    if not token.exists():
        token.write_text("demo-" + secrets.token_urlsafe(24) + "\n")
        token.chmod(0o600)
    path = data_dir / "site.yaml"
    if not path.exists():
        header = (
            "# Generated by `edge demo`: a simulated community site. Edit freely; `edge demo` keeps it.\n"
            "# Check it with: edge check -c " + str(path) + "\n"
        )
        body = yaml.safe_dump(
            demo_site(data_dir.resolve(), host, port, sim_port),
            allow_unicode=True,
            sort_keys=False,
            width=120,
        )
        path.write_text(header + body, encoding="utf-8")
    return path


def _served_by_simulator(device: Any, port: Any) -> bool:
    """A Modbus TCP device on loopback at `port` (the simulator's devices, and copies of them)."""
    if not isinstance(device, dict) or device.get("driver") != "modbus":
        return False
    conn = device.get("connection")
    return (
        isinstance(conn, dict)
        and conn.get("transport", "tcp") == "tcp"
        and conn.get("host") in _LOOPBACK
        and conn.get("port") == port
    )


def simulator_port(path: Path) -> int | None:
    """The port the site file expects the simulator on, or None when it has none of its devices.

    A site file written by an older demo (no Modbus devices) gets None: it runs as it always did.
    A file that does not parse gets None too; `edge demo` then reports its errors as usual.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    devices = doc.get("devices") if isinstance(doc, dict) else None
    for device in devices if isinstance(devices, list) else []:
        if not isinstance(device, dict) or device.get("id") not in SIM_DEVICES:
            continue
        port = (device.get("connection") or {}).get("port") if device.get("driver") == "modbus" else None
        if isinstance(port, int) and _served_by_simulator(device, port):
            return port
    return None


def move_simulator_port(path: Path, old: int, new: int) -> None:
    """Point the site file's simulator devices at `new` instead of `old`.

    Edits only those `port:` values, so the technician's comments and edits survive; if the file
    is laid out so that this edit would change anything else, the file is written anew instead.
    """
    text = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    for device in doc.get("devices") or []:
        if _served_by_simulator(device, old):
            device["connection"]["port"] = new
    edited = re.sub(rf"(\bport:\s*){old}\b", rf"\g<1>{new}", text)
    try:
        same = yaml.safe_load(edited) == doc
    except yaml.YAMLError:
        same = False
    if not same:
        lines = text.splitlines(keepends=True)
        header = "".join(
            lines[: next((i for i, ln in enumerate(lines) if not ln.startswith("#")), len(lines))]
        )
        edited = header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120)
    path.write_text(edited, encoding="utf-8")
