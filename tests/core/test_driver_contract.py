"""The driver contract in use on a running site: a driver gets typed services from its context
(announce points, the site's blob store), and other parts reach a driver only through a capability
it declares: a rule's snapshot action takes a picture from a driver that declares `Snapshots` and
refuses, with the reason, one that does not (even when it has a method of that name)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import plugins
from edge.driver import BaseDriver, DeviceConfig, DriverContext, Snapshots
from edge.model import CommandResult, CommandStatus, Event, HealthState, PointInfo, Severity, Value, point_id
from edge.plugins import Plugin, Spec
from tests.support.site import running_site
from tests.support.waiting import until

BLOB = b"\xff\xd8 a tiny picture \xff\xd9"


class TinyDevice(DeviceConfig):
    pass


class TinyDriver(BaseDriver):
    """Announces a point it found at start and files a blob, through its context only."""

    config_model = TinyDevice

    def points(self) -> list[PointInfo]:
        return []

    async def start(self) -> None:
        found = PointInfo(id=point_id(self.id, "found"), device=self.id, name="found", unit="lx")
        self.ctx.register_points([found])
        blob = self.ctx.blob_store().put(self.id, BLOB)
        self.emit([Event("tiny_blob", self.id, Severity.INFO, {"blob": blob.id}, self.ctx.clock())])
        self.set_health(HealthState.ONLINE)

    async def stop(self) -> None:
        self.end_stream()

    async def write(self, point: str, value: Value) -> CommandResult:
        return CommandResult(point_id(self.id, point), value, CommandStatus.FAILED, "read-only")


class LookalikeDriver(TinyDriver):
    """Has a `snapshot` method but does not declare the capability: nobody may take it for a camera."""

    async def snapshot(self, reason: str, rule: str | None = None) -> dict[str, Any]:
        payload = {"reason": reason, "rule": rule}
        self.emit([Event("snapshot", self.id, Severity.INFO, payload, self.ctx.clock())])
        return payload


class ShotDriver(LookalikeDriver, Snapshots):
    """Declares `Snapshots`: a rule's snapshot action reaches it."""


def spec(driver: type[TinyDriver]) -> Spec:
    return Spec(config=lambda: TinyDevice, load=lambda: driver)


TEST_PLUGIN = Plugin(
    name="contract-test",
    drivers={"tiny": spec(TinyDriver), "lookalike": spec(LookalikeDriver), "shots": spec(ShotDriver)},
)


@pytest.fixture
def with_test_drivers() -> Iterator[None]:
    plugins.use([*plugins.discover(), TEST_PLUGIN])
    yield
    plugins.use(None)


class Seen:
    def __init__(self, rt: Any) -> None:
        self.events: list[Event] = []
        rt.hub.subscribe(lambda batch: self.events.extend(r for r in batch if isinstance(r, Event)))

    def kind(self, kind: str, source: str | None = None) -> list[Event]:
        return [e for e in self.events if e.kind == kind and source in (None, e.source)]


def rule(rule_id: str, device: str) -> dict[str, Any]:
    return {"id": rule_id, "when": "bin-1.fill_pct", "if": "value >= 0", "then": [{"snapshot": device}]}


SITE: dict[str, Any] = {
    "devices": [
        {"id": "bin-1", "driver": "sim", "points": [{"name": "fill_pct", "signal": "constant", "value": 4}]},
        {"id": "cam-1", "driver": "shots"},
        {"id": "fake-cam", "driver": "lookalike"},
        {"id": "cam-off", "driver": "shots", "enabled": False},
    ],
    "rules": {"enabled": True},
}


async def test_the_snapshot_action_reaches_a_driver_through_its_declared_capability(
    tmp_path: Path, with_test_drivers: None
) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        seen = Seen(rt)
        rules = rt.components["rules"]
        for rule_id, device in [
            ("shot", "cam-1"),
            ("fake", "fake-cam"),
            ("bin", "bin-1"),
            ("off", "cam-off"),
        ]:
            rules.put(rule(rule_id, device), "test", "create")

        taken = await until(lambda: seen.kind("snapshot", "cam-1"), what="the declared camera's snapshot")
        assert taken[0].payload == {"reason": "rule:shot", "rule": "shot"}

        def failure(rule_id: str) -> str:
            found = [e for e in seen.kind("rule_action_failed") if e.payload["rule"] == rule_id]
            return str(found[0].payload["error"]) if found else ""

        fake = await until(lambda: failure("fake"), what="the lookalike refused")
        assert "device 'fake-cam' is a lookalike device, which has no Snapshots capability" in fake
        assert "name a device that takes snapshots" in fake
        assert "device 'bin-1' is a sim device, which has no Snapshots capability" in (
            await until(lambda: failure("bin"), what="the sim device refused")
        )
        assert "device 'cam-off' is disabled" in await until(lambda: failure("off"), what="disabled")
        assert not seen.kind("snapshot", "fake-cam"), "a method named snapshot is no capability"


async def test_driver_with_names_what_is_missing(tmp_path: Path, with_test_drivers: None) -> None:
    async with running_site(tmp_path, SITE, web=False) as rt:
        await until(lambda: rt.driver("cam-1") is not None, what="the camera's driver")
        cam = rt.driver_with("cam-1", Snapshots)
        assert isinstance(cam, ShotDriver) and cam is rt.driver("cam-1")
        with pytest.raises(LookupError, match="this site has no device 'nope'"):
            rt.driver_with("nope", Snapshots)
        with pytest.raises(LookupError, match="'fake-cam' is a lookalike device, which has no Snapshots"):
            rt.driver_with("fake-cam", Snapshots)


async def test_a_driver_gets_typed_services_from_its_context(tmp_path: Path, with_test_drivers: None) -> None:
    blob_dir = tmp_path / "pictures"
    doc = {"storage": {"blob_dir": str(blob_dir)}, "devices": [{"id": "tiny-1", "driver": "tiny"}]}
    async with running_site(tmp_path, doc, web=False) as rt:
        # the point the driver announced is known to the site with its metadata
        info = await until(lambda: rt.hub.points.get("tiny-1.found"), what="the announced point")
        assert info.unit == "lx" and info.device == "tiny-1"
        await until(lambda: rt.driver("tiny-1") is not None and rt.driver("tiny-1").health.state == "online")
    # the blob went to the site's blob store (storage.blob_dir), not a folder the driver chose
    files = list(blob_dir.glob("tiny-1/*.jpg"))
    assert len(files) == 1 and files[0].read_bytes() == BLOB
    assert not (tmp_path / "blobs").exists()


def test_outside_a_runtime_the_context_still_serves(tmp_path: Path) -> None:
    ctx = DriverContext("test", str(tmp_path), logging.getLogger("test.tiny"), lambda: 0.0)
    ctx.register_points([PointInfo(id="x.y", device="x", name="y")])  # nobody listens: no error
    blob = ctx.blob_store().put("x", BLOB)
    assert (tmp_path / "blobs" / "x" / f"{blob.id}.jpg").read_bytes() == BLOB
    assert ctx.blob_store() is ctx.blob_store()
