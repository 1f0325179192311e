"""Capture from a real MJPEG-over-HTTP stream: frames flow, the camera goes offline with a reason
when the source dies and recovers by itself when it comes back, without a driver restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.camera.helpers import Collector, frames_flow, mjpeg_server, value
from tests.support.ports import free_port
from tests.support.site import running_site
from tests.support.waiting import until


def camera_site(url: str, **extra: Any) -> dict[str, Any]:
    cam = {"id": "cam", "driver": "camera", "url": url, "stale_after": "1s", "reconnect_max": "500ms"}
    cam.update(extra)
    return {"devices": [cam]}


async def test_mjpeg_frames_flow_and_the_camera_is_online(tmp_path: Path) -> None:
    with mjpeg_server(free_port()) as source:
        async with running_site(tmp_path, camera_site(source.url), web=False) as rt:
            await frames_flow(rt, (360, 640, 3), min_fps=5, timeout=15)


async def test_source_dies_goes_offline_with_a_reason_and_recovers_without_restart(tmp_path: Path) -> None:
    port = free_port()
    zone = {"name": "bay", "polygon": [[0.1, 0.1], [0.4, 0.1], [0.4, 0.4], [0.1, 0.4]]}
    doc = camera_site(f"http://127.0.0.1:{port}/cam.mjpg", zones=[zone], analyse_every="100ms")
    with mjpeg_server(port) as source:
        async with running_site(tmp_path, doc, web=False) as rt:
            seen = Collector(rt)
            slot = rt.slots["cam"]
            driver = await until(lambda: slot.driver, what="driver")
            await until(lambda: slot.health.state == "online", timeout=15, what="camera online")
            await until(lambda: value(rt, "cam.bay_occupied") is not None, timeout=15, what="zone state")

            source.kill()
            await until(lambda: slot.health.state == "offline", timeout=10, what="camera offline")
            assert "no frame for 1 s" in slot.health.reason
            offline = await until(
                lambda: [e for e in seen.kind("device_state") if e.payload["state"] == "offline"],
                what="offline event",
            )
            assert offline[0].source == "cam" and offline[0].payload["reason"]
            await until(
                lambda: any(r.point == "cam.fps" and r.quality == 2 for r in seen.readings),
                what="fps marked stale",
            )
            frames_before = driver.source.frames

            source.start()  # the same port again
            await until(lambda: slot.health.state == "online", timeout=15, what="camera back online")
            await until(lambda: driver.source.frames > frames_before + 5, timeout=10, what="new frames")
            assert slot.driver is driver and slot.restarts == 0, "recovered inside the driver"
            assert driver.source.opens >= 2
            # the event follows the health flag through the driver's queue
            await until(
                lambda: [e.payload["state"] for e in seen.kind("device_state")][-1] == "online",
                what="the online device_state event",
            )
            # the zone was marked stale with the rest; it is reported again even if unchanged
            await until(
                lambda: rt.hub.latest["cam.bay_occupied"].quality == 0, timeout=15, what="zone state again"
            )


async def test_a_source_that_cannot_be_opened_is_offline_with_the_url_in_the_reason(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/cam.mjpg"
    async with running_site(tmp_path, camera_site(url), web=False) as rt:
        slot = rt.slots["cam"]
        await until(lambda: slot.health.state == "offline", timeout=10, what="camera offline")
        assert "cannot open" in slot.health.reason and url in slot.health.reason
