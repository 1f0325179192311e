"""The demo's parking camera: `edge demo` draws its video, the real camera driver reads it, the
zone points follow the car, the demo-gate pack's rules take snapshots stored as blobs; a second
start reuses the video, and without OpenCV the demo runs without the camera."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.demo.site import DEMO_CAMERA, DEMO_VIDEO, car_at, prepare
from tests.core.test_demo_modbus import edge_demo
from tests.support.cli import edge_cli
from tests.support.waiting import until_sync

ZONES = (f"{DEMO_CAMERA}.space_1_occupied", f"{DEMO_CAMERA}.space_2_occupied")


def _tail(site: Path) -> list[dict[str, Any]]:
    out = edge_cli("buffer", "tail", "-c", str(site), "-n", "5000", "--json").stdout
    return [json.loads(line) for line in out.splitlines()]


def _camera_seen(site: Path, data: Path) -> dict[str, Any] | None:
    """Both zone points reported, one of them changed, and a rule's snapshot stored as a blob."""
    records = _tail(site)
    good = [r for r in records if r["type"] == "reading" and r["quality"] == "good"]
    zones = {z: [r["value"] for r in good if r["point"] == z] for z in ZONES}
    fps = [r["value"] for r in good if r["point"] == f"{DEMO_CAMERA}.fps"]
    shots = [
        r["payload"]
        for r in records
        if r["type"] == "event" and r["kind"] == "snapshot" and r["payload"].get("rule")
    ]
    changed = any(len(set(v)) > 1 for v in zones.values())
    if not (all(zones.values()) and changed and shots and fps and max(fps) > 0):
        return None
    return {"zones": zones, "snapshots": shots, "blob_dir": data / "blobs" / DEMO_CAMERA}


def test_the_demo_camera_sees_the_car_park_and_rules_take_snapshots(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    site = prepare(data, "127.0.0.1", 8080)
    video = data / DEMO_VIDEO
    assert not video.exists()
    with edge_demo(data):
        assert video.stat().st_size > 100_000  # drawn before the site started
        seen: Any = until_sync(
            lambda: _camera_seen(site, data), timeout=60, interval=0.5, what="zones, a change, a snapshot"
        )
    # the first occupied space is space_1 (the car parks there first), after an empty start
    assert seen["zones"][ZONES[0]][:1] == [False] and True in seen["zones"][ZONES[0]]
    for shot in seen["snapshots"]:
        blob = seen["blob_dir"] / f"{shot['blob']}.jpg"
        assert blob.is_file() and blob.stat().st_size == shot["bytes"], shot
        assert shot["redacted"] is True and (shot["width"], shot["height"]) == (320, 240)
        assert shot["rule"] in ("snapshot-space-occupied", "snapshot-gate-south-vehicle")
    assert edge_cli("check", "-q", "-c", str(site)).returncode == 0

    # a second start on the same data dir reuses the video and the camera runs again
    before = video.stat()
    with edge_demo(data):
        until_sync(
            lambda: _flowing_fps(site, after=before.st_mtime), timeout=30, interval=0.5, what="fps again"
        )
    after = video.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert "demo video reused" in (tmp_path / "demo.log").read_text()


def _flowing_fps(site: Path, after: float) -> bool:
    return any(
        r["type"] == "reading" and r["point"] == f"{DEMO_CAMERA}.fps" and r["ts"] > after and r["value"] > 0
        for r in _tail(site)
    )


def test_without_opencv_the_demo_runs_without_its_camera(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shadow = tmp_path / "no-opencv"
    shadow.mkdir()
    (shadow / "cv2.py").write_text("raise ImportError('OpenCV is not installed (test)')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    data = tmp_path / "demo"
    site = prepare(data, "127.0.0.1", 8080)
    text = site.read_text(encoding="utf-8")
    with edge_demo(data):
        copy = data / "site.no-camera.yaml"
        until_sync(
            lambda: (
                edge_cli("buffer", "stats", "-c", str(copy), "--json").stdout
                and _has_readings(copy, "meter-b1")
            ),
            timeout=30,
            interval=0.5,
            what="readings without the camera",
        )
    assert site.read_text(encoding="utf-8") == text  # the site file keeps its camera for later
    assert DEMO_CAMERA not in {d["id"] for d in yaml.safe_load(copy.read_text(encoding="utf-8"))["devices"]}
    assert not (data / DEMO_VIDEO).exists()
    log = (tmp_path / "demo.log").read_text()
    assert [
        line for line in log.splitlines() if "demo camera off" in line and "OpenCV is not installed" in line
    ]


def _has_readings(site: Path, device: str) -> bool:
    stats = json.loads(edge_cli("buffer", "stats", "-c", str(site), "--json").stdout)
    return bool(stats["devices"].get(device, {}).get("recent_readings", 0) > 0)


def test_the_video_parks_the_car_in_each_space_in_turn() -> None:
    """The drawn path: empty at the start (the reference), then space_1, empty, space_2."""
    assert car_at(0) is None and car_at(0.9) is None and car_at(3)[1] < 0.5  # not in a space
    assert car_at(20) == pytest.approx((0.15, 0.57)) and car_at(48) == pytest.approx((0.65, 0.57))
    assert car_at(31) is None and car_at(59) is None


def test_demo_gate_pack_snapshots_only_while_the_camera_reports() -> None:
    """A vehicle at the south gate is snapshotted while cam-parking reports; not once it stopped
    (a demo run without OpenCV after one with it) nor on a site without that camera."""
    from zoneinfo import ZoneInfo

    from edge.model import Reading
    from rules.model import compile_pack
    from rules.replay import Replay

    pack = Path(__file__).resolve().parents[2] / "deploy" / "rules" / "demo-gate.yaml"
    rp = Replay(compile_pack(pack.read_text(encoding="utf-8"), pack.name), ZoneInfo("Asia/Shanghai"))
    loop = "gate-south.loop_occupied"
    rp.feed([Reading(1000.0, loop, False), Reading(1001.0, loop, True), Reading(1002.0, loop, False)])
    rp.feed(
        [
            Reading(1010.0, f"{DEMO_CAMERA}.fps", 5.0),
            Reading(1011.0, loop, True),
            Reading(1012.0, loop, False),
        ]
    )
    rp.feed([Reading(1013.0, f"{DEMO_CAMERA}.space_1_occupied", True)])
    rp.feed([Reading(1100.0, loop, True)])
    rp.finish()
    fired = [(f["rule"], f["ts"]) for f in rp.firings if f["kind"] == "fired"]
    assert fired == [("snapshot-gate-south-vehicle", 1011.0), ("snapshot-space-occupied", 1013.0)]
