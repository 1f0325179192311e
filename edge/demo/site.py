"""`edge demo`: a simulated community site — meters, parking gates, waste bins, a health kiosk.

`kiosk-instruments` (`driver: demo_kiosk`, edge/demo/kiosk.py) plays the kiosk's five Bluetooth
instruments through the BLE driver's decoders, so their events are those of real ones;
`kiosk-wheelchair` (an iBeacon matched by its ids) and `corridor-climate` (a thermometer on the
pvvx firmware) are `driver: demo_ble` devices whose made-up advertisements go through the BLE
driver itself (the same decoders, presence and staleness as a radio's).

The generated site file is an ordinary one (written to DATA_DIR/site.yaml), so every other
command works against it: `edge buffer stats -c DATA_DIR/site.yaml`.

Most devices use the `sim` driver. Two are real Modbus TCP devices driven by the `modbus` driver:
`meter-main` (CHINT DTSU666, unit 1) and `gate-south` (parking-barrier controller, unit 2), served
by `drivers.modbus.simulator` inside the demo process on 127.0.0.1:SIM_PORT. When that port is
taken, the demo serves them on a free port and rewrites the port in the site file.

`cam-parking` is a `camera` device reading a video that the demo draws with OpenCV into
DATA_DIR/demo-parking.avi when it is missing (a car parks in one marked space, leaves, parks in
the other, on a loop): its zone points change and rules take snapshots, with no camera attached.
Without OpenCV the demo runs without its cameras (see `ready_cameras`).
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SIM_HOST = "127.0.0.1"  # the simulated field devices never leave loopback
SIM_PORT = 15020
#: the demo's devices served by the simulator; their `port:` tells the demo where to serve it
SIM_DEVICES = ("meter-main", "gate-south")
_LOOPBACK = ("127.0.0.1", "localhost")
DEMO_CAMERA = "cam-parking"
DEMO_BEACON_UUID = "f7826da6-4fa2-4e98-8024-bc5b71e0893e"  # the wheelchair tag's proximity UUID
DEMO_VIDEO = "demo-parking.avi"  # drawn into the data dir at demo start when missing
#: the site file the demo runs instead when its cameras cannot run (no OpenCV)
NO_CAMERA_SITE = "site.no-camera.yaml"
#: the two marked spaces in the demo video, as fractions of the frame (x0, y0, x1, y1)
SPACES = {"space_1": (0.08, 0.52, 0.42, 0.97), "space_2": (0.58, 0.52, 0.92, 0.97)}


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
                    _walk("flow_m3h", 0, 12, 0.4, "2s", unit="m³/h", deadband=0.05, report_every="30s"),
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
            _camera(data_dir),
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
                "id": "kiosk-instruments",
                "name": "健康小屋 仪器 Health kiosk instruments (simulated Bluetooth)",
                "driver": "demo_kiosk",
                "seed": 10,
                "every": "20s",
            },
            {
                # the kiosk's loan wheelchair carries an iBeacon tag whose address rotates; it leaves
                # now and then, so `present` goes false and comes back
                "id": "kiosk-wheelchair",
                "name": "健康小屋 轮椅 Kiosk wheelchair tag (simulated iBeacon)",
                "driver": "demo_ble",
                "mode": "ibeacon",
                "beacon": {"uuid": DEMO_BEACON_UUID, "major": 1, "minor": 1},
                "stale_after": "1m",
                "every": "5s",
                "away_every": "10m",
                "seed": 11,
            },
            {
                "id": "corridor-climate",
                "name": "走廊温湿度 Corridor thermometer (simulated, pvvx firmware)",
                "driver": "demo_ble",
                "profile": "ble-pvvx-thermometer",
                "address": "A4:C1:38:8C:41:93",
                "every": "10s",
                "seed": 12,
            },
            {
                "id": "env-courtyard",
                "name": "中庭环境 Courtyard environment",
                "driver": "sim",
                "seed": 9,
                "points": [
                    _walk("temperature", -5, 38, 0.1, "5s", start=21, unit="°C", deadband=0.05),
                    _walk("humidity", 20, 95, 0.3, "5s", start=55, unit="%"),
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
    # the operator's evaluation (运营考核): the KPI page has today's figures from the first minutes
    # a laptop running the demo often has no NTP sync: the simulated site trusts its clock
    site["clock"] = {"trust_unsynced": True}
    site["kpi"] = {
        "availability": "99%",
        "completeness": "98%",
        "ack_within": {"critical": "15m", "warning": "4h"},
    }
    return site


def _walk(
    name: str, low: float, high: float, step: float, interval: str, start: float | None = None, **more: Any
) -> dict[str, Any]:
    """A point that drifts by up to `step` a sample between `low` and `high` (from `start`, if given)."""
    point: dict[str, Any] = {"name": name, "signal": "random_walk", "min": low, "max": high}
    if start is not None:
        point["start"] = start
    return {**point, "step": step, "interval": interval, **more}


def _sim(device_id: str, name: str, seed: int, points: list[dict[str, Any]]) -> dict[str, Any]:
    """A device of the `sim` driver; its `seed` makes its signals the same on every run."""
    return {"id": device_id, "name": name, "driver": "sim", "seed": seed, "points": points}


def _meter(device_id: str, name: str, base_kw: float, seed: int) -> dict[str, Any]:
    return _sim(
        device_id,
        name,
        seed,
        [
            _walk("voltage", 214, 236, 0.3, "2s", start=225, unit="V", deadband=0.2, report_every="1m"),
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
            _walk("power_factor", 0.85, 0.99, 0.005, "10s", start=0.95),
        ],
    )


def _camera(data_dir: Path) -> dict[str, Any]:
    def inset(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
        """The zone: the marked space less a margin, so a car passing its edge is not parked in it."""
        x0, y0, x1, y1 = x0 + 0.03, y0 + 0.04, x1 - 0.03, y1 - 0.03
        return [
            [round(x0, 2), round(y0, 2)],
            [round(x1, 2), round(y0, 2)],
            [round(x1, 2), round(y1, 2)],
            [round(x0, 2), round(y1, 2)],
        ]

    return {
        "id": DEMO_CAMERA,
        "name": "停车场摄像头 Parking camera (demo video)",
        "driver": "camera",
        "url": str(data_dir / DEMO_VIDEO),
        "loop": True,
        # one analysis a second and a short hold: cheap (a 320x240 frame), and the video's car
        # stands still in a space for 10 s or more, so a change holds long enough to be reported
        "analyse_every": "1s",
        "reference_frames": 3,
        "hold": "2s",
        "zones": [{"name": name, "polygon": inset(*box)} for name, box in SPACES.items()],
        "snapshots": {"keep": 100, "max_bytes": "32MiB"},
    }


def _bin(device_id: str, name: str, period: str, seed: int) -> dict[str, Any]:
    return _sim(
        device_id,
        name,
        seed,
        [
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
    )


def prepare(data_dir: Path, host: str, port: int, sim_port: int = SIM_PORT) -> Path:
    """Write DATA_DIR/site.yaml (kept if it exists, so edits survive) and the consumer token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    token = data_dir / "city-platform.token"
    if not token.exists():
        # created 0600, never readable by others even for a moment (whatever the umask)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write("demo-" + secrets.token_urlsafe(24) + "\n")
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


# ---------------------------------------------------------------- the demo camera
#: the car's path in the demo video: (second, x, y) of its top-left corner in fractions of the
#: frame, None while it is out of view; positions between two keyframes are interpolated
CAR_W, CAR_H = 0.2, 0.36
LANE_Y = 0.08
_PATH: list[tuple[float, tuple[float, float] | None]] = [
    # the spaces are empty while the first analysed frames become the reference (3 frames, one a
    # second); the first car parks soon after, so the first snapshot (which loads the redaction
    # cascades, a one-off ~20 MiB of RSS) falls in the demo's first seconds, not its steady state
    (0.0, None),
    (1.0, (-CAR_W, LANE_Y)),  # in the lane, outside the zones, while the reference is taken
    (4.0, (0.15, LANE_Y)),
    (5.5, (0.15, 0.57)),  # in space_1
    (24.0, (0.15, 0.57)),
    (27.0, (0.15, LANE_Y)),
    (30.0, (1.0, LANE_Y)),
    (30.01, None),
    (34.0, (-CAR_W, LANE_Y)),
    (38.0, (0.65, LANE_Y)),
    (41.0, (0.65, 0.57)),  # in space_2
    (53.0, (0.65, 0.57)),
    (56.0, (0.65, LANE_Y)),
    (58.0, (1.0, LANE_Y)),
    (58.01, None),
    (60.0, None),
]
VIDEO_FPS = 5.0
VIDEO_SIZE = (320, 240)


def car_at(t: float) -> tuple[float, float] | None:
    """Where the car is `t` seconds into the demo video (top-left corner, fractions), or None."""
    for (t0, a), (t1, b) in itertools.pairwise(_PATH):
        if t0 <= t < t1:
            if a is None or b is None:
                return a
            f = (t - t0) / (t1 - t0)
            return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)
    return None


def write_demo_video(path: Path) -> Path:
    """Draw the demo video: a parking area, two marked spaces, a car parking in each in turn.

    Motion-JPEG in AVI through cv2.VideoWriter (no FFmpeg needed), 320x240 at 5 fps, 60 s: about
    2 MB, written in well under a second. Written to a temporary file and renamed, so a demo
    stopped meanwhile leaves no half video behind."""
    import cv2
    import numpy as np

    w, h = VIDEO_SIZE
    rng = np.random.default_rng(7)
    # asphalt: grey with a fixed, soft texture (the same in every frame, so it is no motion)
    noise = rng.normal(0, 9, (h, w)).astype(np.float32)
    asphalt = np.clip(92 + cv2.GaussianBlur(noise, (0, 0), 1.2), 0, 255).astype(np.uint8)
    ground = cv2.cvtColor(asphalt, cv2.COLOR_GRAY2BGR)
    cv2.rectangle(ground, (0, 0), (w - 1, int(0.03 * h)), (60, 110, 60), -1)  # a hedge at the back
    for x0, y0, x1, y1 in SPACES.values():  # white lines on three sides of each space
        p0, p1 = (int(x0 * w), int(y0 * h)), (int(x1 * w), h - 1)
        cv2.line(ground, p0, (p0[0], p1[1]), (235, 235, 235), 2)
        cv2.line(ground, (p1[0], p0[1]), p1, (235, 235, 235), 2)
        cv2.line(ground, (p0[0], int(y1 * h)), (p1[0], int(y1 * h)), (235, 235, 235), 2)
    for i, name in enumerate(SPACES, 1):
        x0, y0, _, _ = SPACES[name]
        cv2.putText(
            ground,
            f"P{i}",
            (int(x0 * w) + 4, int(y0 * h) - 4),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            (235, 235, 235),
            1,
        )
    cw, ch = int(CAR_W * w), int(CAR_H * h)
    car = np.zeros((ch, cw, 3), np.uint8)
    car[:] = (200, 200, 190)  # a silver car: far brighter than the asphalt, as the analysis needs
    car += rng.integers(0, 14, (ch, cw, 1), dtype=np.uint8)  # paint texture
    cv2.rectangle(car, (6, int(0.18 * ch)), (cw - 7, int(0.38 * ch)), (70, 50, 40), -1)  # windscreen
    cv2.rectangle(car, (8, int(0.42 * ch)), (cw - 9, int(0.72 * ch)), (225, 222, 215), -1)  # roof
    cv2.rectangle(car, (6, int(0.76 * ch)), (cw - 7, int(0.86 * ch)), (70, 50, 40), -1)  # rear window
    for y in (int(0.04 * ch), ch - int(0.06 * ch)):  # lights
        cv2.rectangle(car, (3, y - 2), (11, y + 2), (200, 230, 255), -1)
        cv2.rectangle(car, (cw - 12, y - 2), (cw - 4, y + 2), (200, 230, 255), -1)
    cv2.rectangle(car, (0, 0), (cw - 1, ch - 1), (90, 90, 90), 1)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)  # VideoWriter picks AVI by the suffix
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), VIDEO_FPS, (w, h))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write an MJPG AVI at {tmp}")
    try:
        writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 80)
        for i in range(int(_PATH[-1][0] * VIDEO_FPS)):
            frame = ground.copy()
            at = car_at(i / VIDEO_FPS)
            if at is not None:
                x, y = round(at[0] * w), round(at[1] * h)
                sx0, sy0, sx1, sy1 = max(x, 0), max(y, 0), min(x + cw, w), min(y + ch, h)
                if sx1 > sx0 and sy1 > sy0:
                    frame[sy0:sy1, sx0:sx1] = car[sy0 - y : sy1 - y, sx0 - x : sx1 - x]
            writer.write(frame)
    finally:
        writer.release()
    tmp.replace(path)
    return path


def ready_cameras(path: Path, log: logging.Logger) -> Path:
    """Ready the site file's cameras for `edge demo`; returns the site file to run.

    The demo video is drawn when a camera's url names it and it is missing (a new data dir, or a
    deleted video); an existing one is reused. A site file from an older demo (no camera) runs as
    it is. When OpenCV cannot be imported or the video cannot be drawn, the demo runs without its
    cameras: from a copy of the site file without them (DATA_DIR/site.no-camera.yaml, written anew
    at every start, so the technician's edits to site.yaml still count). `log` gets one line.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return path  # `edge demo` reports the file's errors as usual
    devices = doc.get("devices") if isinstance(doc, dict) else None
    cameras = [d for d in devices or [] if isinstance(d, dict) and d.get("driver") == "camera"]
    if not cameras:
        log.info("site file %s has no camera (delete it to get the demo's parking camera)", path)
        return path
    names = ", ".join(str(d.get("id")) for d in cameras)
    try:
        import cv2  # noqa: F401
    except ImportError as exc:
        return _without_cameras(path, doc, cameras, f"OpenCV cannot be imported ({exc})", log)
    drawn = []
    for cam in cameras:
        url = cam.get("url")
        video = Path(url) if isinstance(url, str) else None
        if video is not None and video.name == DEMO_VIDEO and not video.exists():
            try:
                drawn.append(str(write_demo_video(video)))
            except Exception as exc:  # OSError, cv2.error: the demo runs on without the camera
                return _without_cameras(path, doc, cameras, f"cannot draw {video} ({exc})", log)
    log.info(
        "cameras %s: %s", names, f"drew the demo video {', '.join(drawn)}" if drawn else "demo video reused"
    )
    return path


def _without_cameras(
    path: Path, doc: dict[str, Any], cameras: list[Any], why: str, log: logging.Logger
) -> Path:
    """Write DATA_DIR/site.no-camera.yaml: the site file less its cameras; log why, in one line."""
    names = ", ".join(str(d.get("id")) for d in cameras)
    copy = path.with_name(NO_CAMERA_SITE)
    header = f"# Written by `edge demo` from {path.name} without its cameras ({names}); do not edit.\n"
    others = [d for d in doc.get("devices") or [] if d not in cameras]
    body = yaml.safe_dump({**doc, "devices": others}, allow_unicode=True, sort_keys=False, width=120)
    copy.write_text(header + body, encoding="utf-8")
    log.warning("demo camera off: %s; running without %s (from %s)", why, names, copy)
    return copy
