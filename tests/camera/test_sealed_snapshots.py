"""A camera with `privacy: sensitive` (the one at the health kiosk) seals its snapshot files: no
byte of the image is on disk in clear, the API opens it for callers allowed sensitive data only
and audits the read as sensitive, a master-key rotation keeps it readable, forgetting the
resident it shows removes it and leaves any earlier copy unreadable, and a site without a master
key is refused."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge import audit
from edge.model import Event, PointInfo, PointType, Privacy, Reading
from edge.plugins import StartError
from edge.privacy.atrest import Sealer
from edge.privacy.keyfile import create_master_key
from edge.runtime import Runtime
from edge.store.blobs import BlobStore
from edge.store.rows import register, unregister
from tests.camera.helpers import write_video
from tests.camera.test_snapshots import moving_dots
from tests.privacy.conftest import RESIDENT
from tests.support.cli import edge_cli
from tests.support.site import load, running_site, site_file
from tests.support.waiting import until
from tests.web.conftest import Client, signed_in_roles

CITY, CLINIC = "city-token-0123456789", "clinic-token-0123456789"


def kiosk_site(video: Path, master: Path | None) -> dict[str, Any]:
    cam = {"id": "cam", "driver": "camera", "url": str(video), "loop": True, "privacy": "sensitive"}
    out: dict[str, Any] = {
        "devices": [cam],
        "consumers": [
            {"id": "city", "token_env": "EDGE_TEST_CITY"},  # max_privacy personal by default
            {"id": "clinic", "token_env": "EDGE_TEST_CLINIC", "max_privacy": "sensitive"},
        ],
    }
    if master is not None:
        out["privacy"] = {
            "master_key_file": str(master),
            "retention": {"sensitive": "30d", "personal": "90d"},
        }
    return out


def clear_bytes_of(image: bytes, folder: Path) -> list[str]:
    """Files under `folder` holding a piece of `image` in clear: its JFIF/EXIF header, 32 bytes
    from its middle, or its last 32 bytes."""
    mid = len(image) // 2
    pieces = [image[:20], b"JFIF", b"Exif\x00", image[mid : mid + 32], image[-32:]]
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and any(piece in p.read_bytes() for piece in pieces if piece)
    )


async def snapshot(rt: Any, **kw: Any) -> dict[str, Any]:
    await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")
    payload: dict[str, Any] = await rt.slots["cam"].driver.snapshot("test", **kw)
    return payload


async def consumer_get(base: str, path: str, token: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as r:
            await r.read()
            return r.status


async def test_a_sensitive_cameras_snapshots_are_sealed_served_to_admins_and_erased_with_their_subject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    monkeypatch.setenv("EDGE_TEST_CITY", CITY)
    monkeypatch.setenv("EDGE_TEST_CLINIC", CLINIC)
    video = write_video(tmp_path / "kiosk.avi", moving_dots, 150, fps=15)
    doc = kiosk_site(video, master)
    blobs = tmp_path / "blobs"
    async with running_site(tmp_path, doc) as rt:
        of_resident = await snapshot(rt, subject=RESIDENT)
        source = rt.slots["cam"].driver.source
        taken = source.latest().seq
        await until(lambda: source.latest().seq > taken, timeout=10, what="a new frame")
        of_nobody = await snapshot(rt)
        assert of_nobody["blob"] != of_resident["blob"]
        assert of_resident["privacy"] == "sensitive" and of_resident["sealed"] is True
        assert of_resident["subject"] == RESIDENT and "subject" not in of_nobody
        base = f"http://127.0.0.1:{rt.web_port}"
        async with signed_in_roles(rt) as by_role:
            admin, tech, viewer = by_role["admin"], by_role["technician"], by_role["viewer"]
            images = {}
            for payload in (of_resident, of_nobody):
                resp = await admin.request("GET", f"/api/v1/blobs/{payload['blob']}")
                assert resp.status == 200 and resp.content_type == "image/jpeg"
                assert resp.headers["Cache-Control"] == "no-store"
                image = await resp.read()
                assert hashlib.sha256(image).hexdigest() == payload["blob"] == payload["sha256"]
                assert len(image) == payload["bytes"] and image[:2] == b"\xff\xd8"
                images[payload["blob"]] = image
            blob = f"/api/v1/blobs/{of_resident['blob']}"
            # personal data is not enough: a technician, a viewer and a personal consumer are refused
            for client in (tech, viewer):
                resp = await client.request("GET", blob)
                assert resp.status == 403 and resp.content_type != "image/jpeg"
            assert await consumer_get(base, blob, CITY) == 403
            assert await consumer_get(base, blob, CLINIC) == 200
            assert rt.state is not None
            views = [e for e in audit.entries(rt.state) if e["action"] == "view_snapshot"]
            assert [(e["actor"], e["target"]) for e in views] == [  # newest first
                ("clinic", of_resident["blob"]),
                ("boss", of_nobody["blob"]),  # the admin of signed_in_roles
                ("boss", of_resident["blob"]),
            ]
            assert all(e["detail"]["classes"] == {"sensitive": 1} for e in views)

    files = sorted(p.relative_to(blobs).as_posix() for p in blobs.rglob("*") if p.is_file())
    assert files == sorted(f"cam/{b}.sealed" for b in images)
    for image in images.values():
        assert clear_bytes_of(image, blobs) == []
        assert all(p.stat().st_mode & 0o077 == 0 for p in blobs.rglob("*.sealed"))
    copy = tmp_path / "copy-of-blobs"
    shutil.copytree(blobs, copy)

    # rotate-key rewraps the data keys: the same files open under the new master key
    config = site_file(tmp_path, doc)
    new = tmp_path / "master-2.key"
    done = edge_cli("privacy", "rotate-key", "-c", str(config), "--new-key", str(new))
    assert done.returncode == 0, done.stderr
    doc = kiosk_site(video, new)
    config = site_file(tmp_path, doc)
    async with running_site(tmp_path, doc) as rt:
        admin = Client(f"http://127.0.0.1:{rt.web_port}")
        try:
            await admin.login("boss")  # the admin signed_in_roles set up
            for blob_id, image in images.items():
                resp = await admin.request("GET", f"/api/v1/blobs/{blob_id}")
                assert resp.status == 200 and await resp.read() == image
            # the API's export lists the resident's sealed file by its key, beside its event
            resp = await admin.request("POST", "/api/v1/privacy/subjects/export", json={"subject": RESIDENT})
            assert resp.status == 200
            exported = [json.loads(line) for line in (await resp.read()).splitlines()]
            assert [(x["blob"], x["source"]) for x in exported if x.get("type") == "blob"] == [
                (of_resident["blob"], "cam")
            ]
        finally:
            await admin.close()

    # the export lists the resident's sealed snapshot, not the one that names nobody
    out = tmp_path / "export.jsonl"
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(x["blob"], x["source"]) for x in lines if x["type"] == "blob"] == [(of_resident["blob"], "cam")]
    event = next(x for x in lines if x.get("kind") == "snapshot")
    assert event["payload"]["blob"] == of_resident["blob"] and event["payload"]["privacy"] == "sensitive"

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert "1 sealed snapshot removed" in done.stdout
    assert sorted(p.name for p in blobs.rglob("*") if p.is_file()) == [f"{of_nobody['blob']}.sealed"]

    # the copy taken before the forget does not open, by the store or through the API
    sealer = Sealer.open(tmp_path / "edge.db", str(new))
    register(copy, sealer)
    try:
        store = BlobStore(copy)
        kept = store.find(of_nobody["blob"])
        assert kept is not None and store.open(kept) == images[of_nobody["blob"]]
        gone = store.find(of_resident["blob"])
        assert gone is not None
        with pytest.raises(LookupError):
            store.open(gone)
    finally:
        unregister(copy, sealer)
        sealer.close()
    shutil.copy(copy / "cam" / f"{of_resident['blob']}.sealed", blobs / "cam")
    async with running_site(tmp_path, doc) as rt:
        admin = Client(f"http://127.0.0.1:{rt.web_port}")
        try:
            await admin.login("boss")  # the admin signed_in_roles set up
            resp = await admin.request("GET", f"/api/v1/blobs/{of_resident['blob']}")
            assert resp.status == 410 and resp.content_type != "image/jpeg"
        finally:
            await admin.close()


async def test_a_sensitive_camera_without_a_master_key_is_refused_naming_the_camera_and_the_key(
    tmp_path: Path,
) -> None:
    video = write_video(tmp_path / "kiosk.avi", moving_dots, 10, fps=15)
    config = site_file(tmp_path, kiosk_site(video, None))
    done = edge_cli("check", "-c", str(config))
    assert done.returncode == 1
    err = done.stdout + done.stderr
    assert f"{config}:" in err and "devices[0].privacy: camera cam has privacy: sensitive" in err, err
    assert "privacy.master_key_file" in err, err

    rt = Runtime(load(tmp_path, kiosk_site(video, None)), with_web=False)
    try:
        with pytest.raises(StartError, match=r"camera cam has privacy: sensitive.*privacy\.master_key_file"):
            await rt.start()
    finally:
        await rt.stop()
    assert not (tmp_path / "blobs").exists() or not any((tmp_path / "blobs").rglob("*.jpg"))

    public = kiosk_site(video, None)
    public["devices"][0]["privacy"] = "public"
    done = edge_cli("check", "-c", str(site_file(tmp_path, public)))
    assert (
        done.returncode == 1 and "privacy is personal (the default) or sensitive" in done.stdout + done.stderr
    )


async def expire_snapshots(
    data: Path, store: BlobStore, retention: dict[str, str], keep: float | None, count: int
) -> tuple[int, list[dict[str, Any]]]:
    """Run a journal on a test clock over `store` (`retention` per class, `keep` as keep_history)
    until it has expired `count` snapshots; (its `snapshots_expired` counter, the events' payloads)."""
    from tests.store.helpers import sql
    from tests.store.test_retention_privacy import FakeClock, journal, passes

    clock = FakeClock()
    j = journal(data, clock, retention, keep=keep, blobs=store)
    try:
        await until(lambda: j.counters["snapshots_expired"] == count, what=f"{count} snapshots expired")
        await passes(j, clock)
        await j.flush()
        events = [
            json.loads(p) for (p,) in sql(j, "SELECT payload FROM journal WHERE kind = 'snapshots_expired'")
        ]
    finally:
        await j.close()
    return j.counters["snapshots_expired"], events


@pytest.mark.parametrize("personal", ["90d", None], ids=["personal-90d", "personal-kept"])
async def test_sealed_snapshots_expire_at_the_sensitive_retention_on_the_journals_clock(
    tmp_path: Path, personal: str | None
) -> None:
    """Sealed files go at the sensitive age, plain ones at the personal age; with personal data
    kept (no personal retention, no keep_history) the sealed ones still go."""
    from tests.store.test_retention_privacy import DAY, KEEP_HISTORY, START

    master = tmp_path / "master.key"
    create_master_key(master)
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    store = BlobStore(tmp_path / "blobs")
    register(store.root, sealer)
    try:
        aged = {}
        for name, days, seal in (
            ("sealed-40", 40, RESIDENT),
            ("sealed-10", 10, RESIDENT),
            ("plain-40", 40, None),
        ):
            blob = store.put("cam", f"a picture: {name}".encode(), seal=seal)
            os.utime(blob.path, (START - days * DAY, START - days * DAY))
            aged[name] = blob
        retention = {"sensitive": "30d", **({"personal": personal} if personal else {})}
        expired, events = await expire_snapshots(
            tmp_path, store, retention, KEEP_HISTORY if personal else None, 1
        )
        assert not aged["sealed-40"].path.exists()
        assert aged["sealed-10"].path.exists() and aged["plain-40"].path.exists()
        assert expired == 1
        # the event says which class went, at which retention
        assert [(e["class"], e["count"], e["blobs"], e["retention_s"]) for e in events] == [
            ("sensitive", 1, [aged["sealed-40"].id], 30 * DAY)
        ]
    finally:
        unregister(store.root, sealer)
        sealer.close()


def keyed_site(tmp_path: Path, make: Callable[[Path, Path | None], dict[str, Any]]) -> dict[str, Any]:
    """The site `make` builds on a moving-dots video, with a new master key, without consumers."""
    master = tmp_path / "master.key"
    create_master_key(master)
    doc = make(write_video(tmp_path / "camera.avi", moving_dots, 150, fps=15), master)
    doc.pop("consumers")
    return doc


async def test_a_rules_snapshot_is_sealed_under_the_key_of_the_subject_of_the_record_that_fired_it(
    tmp_path: Path,
) -> None:
    """A rule on a resident's blood pressure that takes a picture at the kiosk: the picture is
    that resident's data, so forgetting them removes it; the same for a rule on a personal point's
    plate; a snapshot naming nobody stays."""
    from tests.camera.helpers import Collector

    doc = keyed_site(tmp_path, kiosk_site)
    blobs = tmp_path / "blobs"
    plate = "沪A23522"
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        source = rt.slots["cam"].driver.source
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")
        rules = rt.components["rules"]
        rules.put(
            {"id": "at-kiosk", "when": {"event": "blood_pressure"}, "then": [{"snapshot": "cam"}]},
            "test",
            "create",
        )
        rules.put({"id": "at-gate", "when": "gate.plate", "then": [{"snapshot": "cam"}]}, "test", "create")
        rt.hub.register_points(
            [PointInfo("gate.plate", "gate", "plate", type=PointType.STR, privacy=Privacy.PERSONAL)]
        )

        async def fired_by(rule: str) -> dict[str, Any]:
            got = await until(
                lambda: [e.payload for e in seen.kind("snapshot") if e.payload.get("rule") == rule],
                timeout=15,
                what=f"the snapshot of rule {rule}",
            )
            taken = source.latest().seq
            await until(lambda: source.latest().seq > taken, timeout=10, what="a new frame")
            return got[0]

        rt.hub.publish_event(
            Event("blood_pressure", "kiosk", payload={"resident": RESIDENT, "systolic_mmhg": 131})
        )
        of_resident = await fired_by("at-kiosk")
        rt.hub.ingest([Reading(time.time(), "gate.plate", plate)])
        of_plate = await fired_by("at-gate")
        of_nobody = await snapshot(rt)
    assert of_resident["sealed"] is True and of_resident["subject"] == RESIDENT
    assert of_plate["sealed"] is True and of_plate["subject"] == plate
    assert "subject" not in of_nobody
    names = [f"{x['blob']}.sealed" for x in (of_resident, of_plate, of_nobody)]
    assert sorted(p.name for p in blobs.rglob("*.sealed")) == sorted(names)
    config = str(site_file(tmp_path, doc))
    for subject, gone in ((RESIDENT, names[0]), (plate, names[1])):
        done = edge_cli("privacy", "forget", "-c", config, "--subject", subject)
        assert done.returncode == 0, done.stderr
        assert gone not in [p.name for p in blobs.rglob("*")]
    assert sorted(p.name for p in blobs.rglob("*") if p.is_file()) == [names[2]]
