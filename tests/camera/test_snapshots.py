"""Snapshots as blobs: from a rule's snapshot action and from the `snapshot` command point, written
atomically under the blob dir, described by a `snapshot` event, capped per camera."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.camera.helpers import Collector, write_video
from tests.support.site import running_site
from tests.support.waiting import until


def moving_dots(i: int) -> np.ndarray[Any, Any]:
    """A 320x240 frame whose content changes every frame (so every snapshot is a new blob)."""
    img = np.full((240, 320, 3), 90, np.uint8)
    cv2.circle(img, ((i * 7) % 320, 120), 20, (255, 255, 255), -1)
    cv2.putText(img, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 255, 0), 2)
    return img


def site(video: Path, **camera: Any) -> dict[str, Any]:
    cam = {"id": "cam", "driver": "camera", "url": str(video), "loop": True, "analyse_every": "200ms"}
    cam.update(camera)
    return {"devices": [cam], "rules": {"max_actions_per_minute": 600}}


async def test_rule_snapshot_action_stores_a_jpeg_blob_and_emits_a_snapshot_event(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", moving_dots, 150, fps=15)
    async with running_site(tmp_path, site(video), web=False) as rt:
        seen = Collector(rt)
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=10, what="camera online")
        rules = rt.components["rules"]
        rules.put(
            {"id": "snap-on-motion", "when": "cam.motion", "if": "value >= 0", "then": [{"snapshot": "cam"}]},
            "test",
            "create",
        )
        rules.put(
            {"id": "snap-nowhere", "when": "cam.motion", "if": "value >= 0", "then": [{"snapshot": "nocam"}]},
            "test",
            "create",
        )
        event = (await until(lambda: seen.kind("snapshot"), timeout=10, what="snapshot event"))[0]
        p = event.payload
        assert event.source == "cam"
        assert p["rule"] == "snap-on-motion" and p["reason"] == "rule:snap-on-motion"
        assert p["privacy"] == "personal" and p["redacted"] is True
        path = Path(rt.site.storage.resolved_blob_dir()) / "cam" / f"{p['blob']}.jpg"
        data = path.read_bytes()
        assert len(data) == p["bytes"] and hashlib.sha256(data).hexdigest() == p["sha256"] == p["blob"]
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape == (p["height"], p["width"], 3) == (240, 320, 3)
        assert not list(path.parent.glob(".*.tmp")), "no temp file left behind"

        failed = await until(
            lambda: [e for e in seen.kind("rule_action_failed") if e.payload["rule"] == "snap-nowhere"],
            what="the unknown camera fails the action",
        )
        assert "no device 'nocam'" in failed[0].payload["error"]


async def test_retention_deletes_the_oldest_snapshots_and_counts_each(tmp_path: Path) -> None:
    video = write_video(tmp_path / "cam.avi", moving_dots, 150, fps=15)
    async with running_site(tmp_path, site(video, snapshots={"keep": 3}), web=False) as rt:
        seen = Collector(rt)
        slot = rt.slots["cam"]
        await until(lambda: slot.health.state == "online", timeout=10, what="camera online")
        driver: Any = slot.driver
        ids: list[str] = []
        for n in range(5):
            last_seq = driver.source.latest().seq
            await until(lambda s=last_seq: driver.source.latest().seq != s, what="a new frame")  # type: ignore[misc]
            result = await rt.hub.write("cam.snapshot", True, source="test")  # the command point
            assert result.ok, result.reason
            new = await until(lambda n=n: seen.kind("snapshot")[n:], what="snapshot")  # type: ignore[misc]
            ids.append(new[0].payload["blob"])
        assert len(set(ids)) == 5
        folder = Path(rt.site.storage.resolved_blob_dir()) / "cam"
        assert sorted(p.stem for p in folder.glob("*.jpg")) == sorted(ids[2:])
        pruned = [b for e in seen.kind("blobs_pruned") for b in e.payload["blobs"]]
        assert pruned == ids[:2]
        await until(
            lambda: getattr(rt.hub.latest.get("cam.snapshots_deleted"), "value", 0) == 2, what="counter"
        )
