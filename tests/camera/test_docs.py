"""The device entry in docs/camera.md is a valid site file fragment (the docs cannot rot)."""

from __future__ import annotations

from pathlib import Path

import yaml

from edge.config import load_site_text

DOC = Path(__file__).resolve().parents[2] / "docs" / "camera.md"


def test_the_documented_device_entry_validates() -> None:
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    doc = {"site": {"id": "docs"}, **yaml.safe_load(block)}
    site = load_site_text(yaml.safe_dump(doc), "docs/camera.md")
    cam = site.devices[0]
    assert [p.name for p in cam.point_infos()][-2:] == ["space_1_occupied", "space_2_occupied"]
