"""`edge demo`: a simulated community site — meters, a parking gate, waste bins, a health kiosk.

The generated site file is an ordinary one (written to DATA_DIR/site.yaml), so every other
command works against it: `edge buffer stats -c DATA_DIR/site.yaml`.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def demo_site(data_dir: Path, host: str = "127.0.0.1", port: int = 8080) -> dict[str, Any]:
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


def prepare(data_dir: Path, host: str, port: int) -> Path:
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
            demo_site(data_dir.resolve(), host, port), allow_unicode=True, sort_keys=False, width=120
        )
        path.write_text(header + body, encoding="utf-8")
    return path
