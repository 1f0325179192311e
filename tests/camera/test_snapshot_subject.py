"""A sensitive camera with `subject_from: {device: kiosk-1, within: ...}` files its periodic and
command snapshots under the resident the kiosk's newest measurement names, while that measurement
is at most `within` old: the snapshot event names the resident, the file is sealed under the
resident's key, the resident's export lists it and forgetting the resident removes it. An older
measurement, another device's event or one naming nobody leaves the picture under the camera's
own key; a rule's explicit subject still wins. The measurement is found again in the journal when
the camera's driver starts: a restarted gateway or driver names the same resident. A `subject_from`
naming no other device of the site, or on a camera that is not sensitive, is refused at its line of
the site file."""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from edge.model import CommandStatus, Event
from edge.privacy.keyfile import create_master_key
from tests.camera.helpers import Collector, write_video
from tests.camera.test_snapshots import moving_dots
from tests.privacy.conftest import RESIDENT
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until

OTHER = "R-55218"  # another resident, measured elsewhere or named by a rule
MEASURED_EVERY_300MS = [
    {
        "kind": "blood_pressure",
        "every": "300ms",
        "privacy": "sensitive",
        "payload": {"resident": RESIDENT, "systolic_mmhg": 131, "privacy": "sensitive"},
    }
]  # the kiosk's events: a measurement of the resident every 300 ms
IDLE_POINT = {"name": "in_use", "type": "bool", "signal": "constant", "value": False, "interval": "1h"}


def new_kiosk_site(tmp_path: Path, **options: Any) -> dict[str, Any]:
    """`kiosk_site` with a new master key and the video the camera plays in a loop, in tmp_path."""
    master = tmp_path / "master.key"
    create_master_key(master)
    return kiosk_site(write_video(tmp_path / "kiosk.avi", moving_dots, 150, fps=15), master, **options)


def kiosk_site(
    video: Path, master: Path, *, within: str = "2m", every: str = "0s", events: list[Any] | None = None
) -> dict[str, Any]:
    """The sensitive camera `cam` beside the kiosk `kiosk-1` (a sim device, emitting `events`)."""
    cam = {
        "id": "cam",
        "driver": "camera",
        "url": str(video),
        "loop": True,
        "privacy": "sensitive",
        "subject_from": {"device": "kiosk-1", "within": within},
        "snapshots": {"every": every},
    }
    kiosk = {"id": "kiosk-1", "driver": "sim", "points": [IDLE_POINT], "events": events or []}
    return {"devices": [cam, kiosk], "privacy": {"master_key_file": str(master)}}


async def measured(seen: Collector) -> None:
    await until(
        lambda: [e for e in seen.kind("blood_pressure") if e.source == "kiosk-1"],
        timeout=10,
        what="a measurement at the kiosk",
    )


async def camera_online(rt: Any) -> None:
    await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")


async def command_snapshot(rt: Any, seen: Collector) -> dict[str, Any]:
    """Write the camera's `snapshot` point (the command path) and return its snapshot event's
    payload; waits for a frame newer than the last one taken, so each picture is its own file."""
    source = rt.slots["cam"].driver.source
    taken = source.latest().seq
    await until(lambda: source.latest().seq > taken, timeout=10, what="a new frame")
    result = await rt.hub.write("cam.snapshot", True, source="test")
    assert result.status == CommandStatus.OK, result.reason
    blob = result.reason.removeprefix("blob ")
    got: list[dict[str, Any]] = await until(
        lambda: [e.payload for e in seen.kind("snapshot") if e.payload["blob"] == blob],
        timeout=10,
        what="the command's snapshot event",
    )
    return got[0]


async def restart_camera(rt: Any) -> None:
    """Stop the camera's driver and start a new one, as applying a changed site file does; wait
    until it is online and past the old driver's frames: the new one plays the video from its
    start, and a snapshot of a frame taken before would be the same file (named by its content)."""
    played = rt.slots["cam"].driver.source.latest().seq
    await rt.stop_device("cam")
    rt.start_device(rt.site.device("cam"))
    await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online again")
    source = rt.slots["cam"].driver.source
    await until(lambda: source.latest().seq > played, timeout=15, what="frames past the old driver's")


def export(config: Path, subject: str, out: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """`edge privacy export`: the blob ids sealed under `subject`'s key and its snapshot events."""
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", subject, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    blobs = sorted(x["blob"] for x in lines if x["type"] == "blob")
    return blobs, [x["payload"] for x in lines if x.get("kind") == "snapshot"]


def files(blobs: Path) -> set[str]:
    return {p.name for p in blobs.rglob("*") if p.is_file()}


async def test_the_kiosks_measurement_names_whom_the_periodic_and_command_snapshots_show(
    tmp_path: Path,
) -> None:
    """The kiosk (its own driver, through the hub) measures a resident every 300 ms: a command
    snapshot and a periodic one are that resident's, sealed under their key, exported with them
    and removed by forgetting them."""
    doc = new_kiosk_site(tmp_path, every="1s", events=MEASURED_EVERY_300MS)
    blobs = tmp_path / "blobs"
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await camera_online(rt)
        await measured(seen)
        by_command = await command_snapshot(rt, seen)
        periodic: list[dict[str, Any]] = await until(
            lambda: [
                e.payload
                for e in seen.kind("snapshot")
                if e.payload["reason"] == "periodic" and e.payload.get("subject") == RESIDENT
            ],
            timeout=15,
            what="a periodic snapshot of the resident",
        )
    for payload in (by_command, periodic[0]):
        assert payload["subject"] == RESIDENT and payload["subject_from"] == "kiosk-1"
        assert payload["sealed"] is True and payload["privacy"] == "sensitive"
    named = {by_command["blob"], periodic[0]["blob"]}
    assert {f"{b}.sealed" for b in named} <= files(blobs)

    config = site_file(tmp_path, doc)
    listed, snapshots = export(config, RESIDENT, tmp_path / "export.jsonl")
    assert named <= set(listed)
    assert by_command in snapshots  # the command's event, as journaled, is the resident's too

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    removed = re.search(r"(\d+) sealed snapshots? removed", done.stdout)
    assert removed is not None and int(removed.group(1)) == len(listed), done.stdout
    assert not files(blobs) & {f"{b}.sealed" for b in listed}


async def test_an_old_measurement_another_device_or_no_resident_leave_the_snapshot_under_the_cameras_key(
    tmp_path: Path,
) -> None:
    """A measurement older than `within` names nobody in the picture; nor does a resident named by
    another device, nor an event of the kiosk naming nobody. A fresh measurement does; a rule's
    explicit subject wins over it."""
    doc = new_kiosk_site(tmp_path, within="30s")
    blobs = tmp_path / "blobs"
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await camera_online(rt)
        now = time.time()
        # the hub hands every journaled batch to the camera synchronously: no wait is needed
        rt.hub.publish_event(Event("blood_pressure", "kiosk-1", payload={"resident": RESIDENT}, ts=now - 45))
        rt.hub.publish_event(Event("blood_pressure", "kiosk-2", payload={"resident": OTHER}))
        rt.hub.publish_event(Event("door", "kiosk-1", payload={"state": "open"}))
        stale = await command_snapshot(rt, seen)
        rt.hub.publish_event(Event("blood_pressure", "kiosk-1", payload={"resident": RESIDENT}))
        fresh = await command_snapshot(rt, seen)
        source = rt.slots["cam"].driver.source
        taken = source.latest().seq
        await until(lambda: source.latest().seq > taken, timeout=10, what="a new frame")
        by_rule = await rt.slots["cam"].driver.snapshot("rule:at-kiosk", rule="at-kiosk", subject=OTHER)
    assert stale["sealed"] is True and "subject" not in stale and "subject_from" not in stale
    assert fresh["subject"] == RESIDENT and fresh["subject_from"] == "kiosk-1"
    assert by_rule["subject"] == OTHER and "subject_from" not in by_rule
    assert files(blobs) == {f"{p['blob']}.sealed" for p in (stale, fresh, by_rule)}

    config = site_file(tmp_path, doc)
    assert export(config, RESIDENT, tmp_path / "resident.jsonl")[0] == [fresh["blob"]]
    assert export(config, OTHER, tmp_path / "other.jsonl")[0] == [by_rule["blob"]]
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert "1 sealed snapshot removed" in done.stdout
    assert files(blobs) == {f"{p['blob']}.sealed" for p in (stale, by_rule)}


async def test_after_a_gateway_restart_the_camera_names_the_resident_of_the_kiosks_journaled_measurement(
    tmp_path: Path,
) -> None:
    """The kiosk measures a resident, then the gateway stops. Started again on the same data and
    master key, with the kiosk quiet, the camera's first command snapshot is that resident's:
    the measurement (sealed at rest) is read back from the journal when the camera starts."""
    async with running_site(tmp_path, new_kiosk_site(tmp_path, events=MEASURED_EVERY_300MS), web=False) as rt:
        seen = Collector(rt)
        await measured(seen)
    with contextlib.closing(sqlite3.connect(tmp_path / "edge.db")) as conn:
        stored = conn.execute("SELECT typeof(payload) FROM journal WHERE kind = 'blood_pressure'").fetchall()
    assert stored and {t for (t,) in stored} == {"blob"}  # sealed at rest

    doc = kiosk_site(tmp_path / "kiosk.avi", tmp_path / "master.key")  # the kiosk emits nothing now
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await camera_online(rt)
        snap = await command_snapshot(rt, seen)
        assert not seen.kind("blood_pressure")  # named by the journaled measurement, not a new one
    assert snap["subject"] == RESIDENT and snap["subject_from"] == "kiosk-1"
    assert snap["sealed"] is True
    assert f"{snap['blob']}.sealed" in files(tmp_path / "blobs")

    config = site_file(tmp_path, doc)
    listed, snapshots = export(config, RESIDENT, tmp_path / "export.jsonl")
    assert listed == [snap["blob"]] and snap in snapshots
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert "1 sealed snapshot removed" in done.stdout, done.stdout
    assert f"{snap['blob']}.sealed" not in files(tmp_path / "blobs")


async def test_a_restarted_camera_driver_takes_the_newest_journaled_event_within_its_window(
    tmp_path: Path,
) -> None:
    """The camera's driver restarted (as a config apply does) while the kiosk's newest measurement
    is older than `within`: its snapshot stays under the camera's key. Restarted again after a
    fresh measurement of another resident and a newer event of the kiosk naming nobody: its
    snapshot is that resident's."""
    doc = new_kiosk_site(tmp_path, within="30s")
    blobs = tmp_path / "blobs"
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        await camera_online(rt)
        old = {"resident": RESIDENT, "privacy": "sensitive"}
        rt.hub.publish_event(Event("blood_pressure", "kiosk-1", payload=old, ts=time.time() - 45))
        await restart_camera(rt)
        stale = await command_snapshot(rt, seen)
        rt.hub.publish_event(
            Event("blood_pressure", "kiosk-1", payload={"resident": OTHER, "privacy": "sensitive"})
        )
        rt.hub.publish_event(Event("door", "kiosk-1", payload={"state": "open"}))
        await restart_camera(rt)
        fresh = await command_snapshot(rt, seen)
    assert stale["sealed"] is True and "subject" not in stale and "subject_from" not in stale
    assert fresh["subject"] == OTHER and fresh["subject_from"] == "kiosk-1"
    assert files(blobs) == {f"{p['blob']}.sealed" for p in (stale, fresh)}

    config = site_file(tmp_path, doc)
    assert export(config, RESIDENT, tmp_path / "resident.jsonl")[0] == []
    assert export(config, OTHER, tmp_path / "other.jsonl")[0] == [fresh["blob"]]
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", OTHER)
    assert done.returncode == 0, done.stderr
    assert "1 sealed snapshot removed" in done.stdout, done.stdout
    assert files(blobs) == {f"{stale['blob']}.sealed"}


def test_subject_from_naming_no_other_device_or_on_a_camera_that_is_not_sensitive_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    video = tmp_path / "kiosk.avi"  # never opened: edge check reads the site file only

    def check(doc: dict[str, Any]) -> tuple[Path, str]:
        config = site_file(tmp_path, doc)
        done = edge_cli("check", "-c", str(config))
        assert done.returncode == 1, done.stdout
        return config, done.stdout + done.stderr

    def line_of(config: Path, text: str) -> int:
        lines = config.read_text(encoding="utf-8").splitlines()
        return next(i for i, line in enumerate(lines, 1) if text in line)

    doc = kiosk_site(video, master)
    doc["devices"][0]["subject_from"]["device"] = "kiosk-9"
    config, err = check(doc)
    at = f"{config}:{line_of(config, 'kiosk-9')}: devices[0].subject_from.device: camera cam: 'kiosk-9'"
    assert at in err and "names no device of the site (devices: kiosk-1)" in err, err

    doc["devices"][0]["subject_from"]["device"] = "cam"
    config, err = check(doc)
    assert f"{config}:{line_of(config, 'device: cam')}: devices[0].subject_from.device" in err, err
    assert "names the camera itself" in err, err

    doc = kiosk_site(video, master)
    doc["devices"][0]["privacy"] = "personal"
    config, err = check(doc)
    at = f"{config}:{line_of(config, 'subject_from:')}: devices[0].subject_from: subject_from needs privacy: sensitive"
    assert at in err, err

    doc = kiosk_site(video, master, within="0s")
    config, err = check(doc)
    assert "devices[0].subject_from.within" in err and "must be between 1 s and 60 min" in err, err
