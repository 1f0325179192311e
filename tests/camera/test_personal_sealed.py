"""On a site with a master key, a personal camera (the gate's, the default class) seals its
snapshot files too, as personal data (`<sha256>.psealed`): no byte of the image is on disk in
clear, the API opens it for the callers allowed personal data (a technician, not a viewer) and
audits the read as personal, the file goes at the personal retention (not the sensitive one), and
a picture a rule took for a plate goes with that plate's `forget`. A site without a master key
still stores plain `.jpg` files."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge import audit
from edge.model import PointInfo, PointType, Privacy, Reading
from edge.privacy.atrest import Sealer
from edge.privacy.keyfile import create_master_key
from edge.store.blobs import BlobStore
from edge.store.rows import register, unregister
from tests.camera.helpers import Collector, write_video
from tests.camera.test_snapshots import moving_dots
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles

CITY = "city-token-0123456789"
JPEG_START = b"\xff\xd8\xff"  # the first bytes of every JPEG image


def gate_site(video: Path, master: Path | None) -> dict[str, Any]:
    """The gate camera `cam`, personal (the default), with a master key when `master` is given."""
    cam = {"id": "cam", "driver": "camera", "url": str(video), "loop": True}
    out: dict[str, Any] = {
        "devices": [cam],
        "consumers": [{"id": "city", "token_env": "EDGE_TEST_CITY"}],  # max_privacy personal
    }
    if master is not None:
        out["privacy"] = {
            "master_key_file": str(master),
            "retention": {"sensitive": "30d", "personal": "90d"},
        }
    return out


def files(blobs: Path) -> list[str]:
    return sorted(p.relative_to(blobs).as_posix() for p in blobs.rglob("*") if p.is_file())


async def snapshot(rt: Any, **kw: Any) -> dict[str, Any]:
    """A snapshot of a frame newer than the last one taken (each picture its own file)."""
    await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")
    driver = rt.slots["cam"].driver
    if driver.snapshots_taken:
        taken = driver.source.latest().seq
        await until(lambda: driver.source.latest().seq > taken, timeout=10, what="a new frame")
    payload: dict[str, Any] = await driver.snapshot("test", **kw)
    return payload


async def consumer_get(base: str, path: str, token: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as http:
        async with http.get(base + path, headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status, await r.read()


async def test_a_personal_cameras_snapshot_is_sealed_with_a_master_key_and_served_to_technicians(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_TEST_CITY", CITY)
    video = write_video(tmp_path / "gate.avi", moving_dots, 150, fps=15)

    # without a master key: a plain JPEG file, as before
    plain_dir = tmp_path / "plain"
    plain_dir.mkdir()
    async with running_site(plain_dir, gate_site(video, None), web=False) as rt:
        plain = await snapshot(rt)
    assert plain["privacy"] == "personal" and "sealed" not in plain
    assert files(plain_dir / "blobs") == [f"cam/{plain['blob']}.jpg"]
    assert (plain_dir / "blobs" / "cam" / f"{plain['blob']}.jpg").read_bytes().startswith(JPEG_START)

    master = tmp_path / "master.key"
    create_master_key(master)
    blobs = tmp_path / "blobs"
    async with running_site(tmp_path, gate_site(video, master)) as rt:
        payload = await snapshot(rt)
        assert payload["privacy"] == "personal" and payload["sealed"] is True
        assert files(blobs) == [f"cam/{payload['blob']}.psealed"]
        path = blobs / "cam" / f"{payload['blob']}.psealed"
        assert JPEG_START not in path.read_bytes() and path.stat().st_mode & 0o077 == 0

        base = f"http://127.0.0.1:{rt.web_port}"
        blob = f"/api/v1/blobs/{payload['blob']}"
        async with signed_in_roles(rt) as by_role:
            tech, viewer = by_role["technician"], by_role["viewer"]
            resp = await tech.request("GET", blob)
            assert resp.status == 200 and resp.content_type == "image/jpeg"
            assert resp.headers["Cache-Control"] == "no-store"
            image = await resp.read()
            assert image.startswith(JPEG_START) and len(image) == payload["bytes"]
            assert hashlib.sha256(image).hexdigest() == payload["blob"] == payload["sha256"]
            resp = await viewer.request("GET", blob)
            assert resp.status == 403 and resp.content_type != "image/jpeg"
            assert await consumer_get(base, blob, CITY) == (200, image)
            assert rt.state is not None
            views = [e for e in audit.entries(rt.state) if e["action"] == "view_snapshot"]
            assert [(e["actor"], e["target"]) for e in views] == [  # newest first
                ("city", payload["blob"]),
                ("technician", payload["blob"]),
            ]
            assert all(e["detail"]["classes"] == {"personal": 1} for e in views)


async def test_a_personal_cameras_sealed_snapshots_expire_at_the_personal_retention(tmp_path: Path) -> None:
    """Personal 90 days, sensitive 30 days: the personal camera's sealed file of 40 days stays, the
    one of 100 days goes; a sensitive sealed file of 40 days goes. One event per class."""
    from tests.camera.test_sealed_snapshots import expire_snapshots
    from tests.store.test_retention_privacy import DAY, KEEP_HISTORY, START

    master = tmp_path / "master.key"
    create_master_key(master)
    video = write_video(tmp_path / "gate.avi", moving_dots, 150, fps=15)
    async with running_site(tmp_path, gate_site(video, master), web=False) as rt:
        young = await snapshot(rt)
        old = await snapshot(rt)
    store = BlobStore(tmp_path / "blobs")
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    register(store.root, sealer)
    try:
        kiosk = store.put("kiosk-cam", b"a picture at the kiosk", seal="R-10293", sensitive=True)
        aged = {
            "personal-40": (store.root / "cam" / f"{young['blob']}.psealed", 40),
            "personal-100": (store.root / "cam" / f"{old['blob']}.psealed", 100),
            "sensitive-40": (kiosk.path, 40),
        }
        for path, days in aged.values():
            os.utime(path, (START - days * DAY, START - days * DAY))
        lab = tmp_path / "lab"
        lab.mkdir()
        expired, events = await expire_snapshots(
            lab, store, {"sensitive": "30d", "personal": "90d"}, KEEP_HISTORY, 2
        )
        assert aged["personal-40"][0].exists()
        assert not aged["personal-100"][0].exists() and not aged["sensitive-40"][0].exists()
        assert expired == 2
        assert sorted((e["class"], e["count"], e["blobs"], e["retention_s"]) for e in events) == [
            ("personal", 1, [old["blob"]], 90 * DAY),
            ("sensitive", 1, [kiosk.id], 30 * DAY),
        ]
    finally:
        unregister(store.root, sealer)
        sealer.close()


async def test_a_rules_snapshot_at_the_gate_goes_with_the_plates_forget(tmp_path: Path) -> None:
    """A rule on the gate's plate takes a picture: sealed under the plate's key as personal data,
    listed in the plate's export, removed by forgetting the plate; a picture naming nobody stays."""
    from tests.camera.test_sealed_snapshots import keyed_site

    doc = keyed_site(tmp_path, gate_site)
    blobs = tmp_path / "blobs"
    plate = "沪A23522"
    async with running_site(tmp_path, doc, web=False) as rt:
        seen = Collector(rt)
        of_nobody = await snapshot(rt)
        source = rt.slots["cam"].driver.source
        taken = source.latest().seq
        await until(lambda: source.latest().seq > taken, timeout=10, what="a new frame")
        rt.components["rules"].put(
            {"id": "at-gate", "when": "gate.plate", "then": [{"snapshot": "cam"}]}, "test", "create"
        )
        rt.hub.register_points(
            [PointInfo("gate.plate", "gate", "plate", type=PointType.STR, privacy=Privacy.PERSONAL)]
        )
        rt.hub.ingest([Reading(time.time(), "gate.plate", plate)])
        got = await until(
            lambda: [e.payload for e in seen.kind("snapshot") if e.payload.get("rule") == "at-gate"],
            timeout=15,
            what="the rule's snapshot",
        )
        of_plate = got[0]
    assert of_plate["sealed"] is True and of_plate["subject"] == plate
    assert of_plate["privacy"] == "personal" and "subject" not in of_nobody
    names = [f"cam/{x['blob']}.psealed" for x in (of_plate, of_nobody)]
    assert files(blobs) == sorted(names)

    config = str(site_file(tmp_path, doc))
    out = tmp_path / "export.jsonl"
    done = edge_cli("privacy", "export", "-c", config, "--subject", plate, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [(x["blob"], x["source"], x["privacy"]) for x in lines if x["type"] == "blob"] == [
        (of_plate["blob"], "cam", "personal")
    ]
    done = edge_cli("privacy", "forget", "-c", config, "--subject", plate)
    assert done.returncode == 0, done.stderr
    assert "1 sealed snapshot removed" in done.stdout
    assert files(blobs) == [names[1]]


def test_a_sealed_files_class_is_bound_and_a_clear_copy_of_the_same_picture_goes(tmp_path: Path) -> None:
    """A picture stored in clear before the site had a key, stored again sealed: the clear copy
    is removed. A personal sealed file renamed to the sensitive suffix (or back) does not open."""
    master = tmp_path / "master.key"
    create_master_key(master)
    store = BlobStore(tmp_path / "blobs")
    image = JPEG_START + b" a picture of the gate"
    plain = store.put("cam", image)
    assert plain.path.name.endswith(".jpg") and not plain.sealed and plain.privacy == "personal"
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    register(store.root, sealer)
    try:
        sealed = store.put("cam", image, seal="@camera:cam", sensitive=False)
        assert sealed.path.name == f"{plain.id}.psealed" and sealed.privacy == "personal"
        assert files(store.root) == [f"cam/{plain.id}.psealed"]
        assert store.find(plain.id) == sealed.path and store.open(sealed.path) == image
        renamed = sealed.path.with_name(f"{plain.id}.sealed")
        sealed.path.rename(renamed)
        with pytest.raises(ValueError):
            store.open(renamed)
        kiosk = store.put("kiosk", image, seal="R-10293", sensitive=True)
        moved = kiosk.path.with_name(f"{plain.id}.psealed")
        kiosk.path.rename(moved)
        with pytest.raises(ValueError):
            store.open(moved)
    finally:
        unregister(store.root, sealer)
        sealer.close()
