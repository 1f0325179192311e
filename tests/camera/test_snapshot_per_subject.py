"""One sealed copy of a picture per key: two rule snapshots for different plates and a command
snapshot (under the camera's key) of the same frame are three files, each sealed under its own
key with its own blob id. Each plate's export lists its own copy; forgetting one plate removes
its copy only: the other plate's and the camera's still open with the same picture, the
forgotten one is gone from the API. A copy stored under an older id (the picture's sha256) stays
readable by that id."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from edge.privacy.atrest import Sealer
from edge.privacy.keyfile import create_master_key
from edge.store.blobs import BlobStore
from edge.store.rows import register, unregister
from tests.camera.helpers import write_video
from tests.camera.test_personal_sealed import gate_site
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until
from tests.web.conftest import signed_in_roles

PLATE_A = "沪A88934"
PLATE_B = "沪B12345"


def still(i: int) -> np.ndarray[Any, Any]:
    """The same frame every time: every snapshot of the video is the same picture."""
    img = np.full((240, 320, 3), 90, np.uint8)
    img[100:140, 60:260] = 200
    return img


def export(config: Path, subject: str, out: Path) -> list[str]:
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", subject, "--out", str(out))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return sorted(x["blob"] for x in lines if x["type"] == "blob")


def sealed_files(blobs: Path) -> set[str]:
    return {p.name for p in blobs.rglob("*") if p.is_file()}


async def test_the_same_picture_for_two_plates_and_the_camera_is_three_copies_each_forgotten_alone(
    tmp_path: Path,
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    video = write_video(tmp_path / "gate.avi", still, 60, fps=15)
    doc = gate_site(video, master)
    del doc["consumers"]
    doc["devices"][0]["redact"] = False  # the frame as it is: the same bytes every time
    blobs = tmp_path / "blobs"
    async with running_site(tmp_path, doc, web=False) as rt:
        await until(lambda: rt.slots["cam"].health.state == "online", timeout=15, what="camera online")
        driver = rt.slots["cam"].driver
        of_a = await driver.snapshot("rule:at-gate", rule="at-gate", subject=PLATE_A)
        of_b = await driver.snapshot("rule:at-gate", rule="at-gate", subject=PLATE_B)
        of_camera = await driver.snapshot("command")
        again_b = await driver.snapshot("rule:at-gate", rule="at-gate", subject=PLATE_B)
    assert of_a["sha256"] == of_b["sha256"] == of_camera["sha256"]  # one picture
    ids = {of_a["blob"], of_b["blob"], of_camera["blob"]}
    assert len(ids) == 3 and again_b["blob"] == of_b["blob"]
    assert sealed_files(blobs) == {f"{b}.psealed" for b in ids}

    config = site_file(tmp_path, doc)
    assert export(config, PLATE_A, tmp_path / "a.jsonl") == [of_a["blob"]]
    assert export(config, PLATE_B, tmp_path / "b.jsonl") == [of_b["blob"]]

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", PLATE_A)
    assert done.returncode == 0, done.stderr
    removed = re.search(r"(\d+) sealed snapshots? removed", done.stdout)
    assert removed is not None and int(removed.group(1)) == 1, done.stdout
    assert sealed_files(blobs) == {f"{of_b['blob']}.psealed", f"{of_camera['blob']}.psealed"}
    assert export(config, PLATE_B, tmp_path / "b2.jsonl") == [of_b["blob"]]

    async with running_site(tmp_path, doc) as rt:
        async with signed_in_roles(rt) as by_role:
            tech = by_role["technician"]
            resp = await tech.request("GET", f"/api/v1/blobs/{of_a['blob']}")
            assert resp.status == 404 and resp.content_type != "image/jpeg"
            for kept in (of_b, of_camera):
                resp = await tech.request("GET", f"/api/v1/blobs/{kept['blob']}")
                assert resp.status == 200
                assert hashlib.sha256(await resp.read()).hexdigest() == of_a["sha256"]


def test_a_file_sealed_for_one_subject_is_never_sealed_again_for_another(tmp_path: Path) -> None:
    """The store alone: the second subject's put leaves the first subject's file as it was, and
    a file stored under the picture's sha256 stays readable by that id."""
    master = tmp_path / "master.key"
    create_master_key(master)
    store = BlobStore(tmp_path / "blobs")
    image = b"\xff\xd8\xff a picture of two plates"
    sealer = Sealer.open(tmp_path / "edge.db", str(master))
    register(store.root, sealer)
    try:
        first = store.put("cam", image, seal=PLATE_A, sensitive=False)
        before = first.path.read_bytes()
        second = store.put("cam", image, seal=PLATE_B, sensitive=False)
        assert first.id == hashlib.sha256(image).hexdigest() == first.sha256 == second.sha256
        assert second.id != first.id and first.path.read_bytes() == before
        for blob in (first, second):
            found = store.find(blob.id)
            assert found == blob.path and store.open(found) == image
        assert store.put("cam", image, seal=PLATE_A, sensitive=False).path == first.path
        assert first.path.read_bytes() == before
    finally:
        unregister(store.root, sealer)
        sealer.close()
