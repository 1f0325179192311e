"""A rule pack the site file names by a relative path is the one beside the site file, as every
other relative path of the site file, whichever folder the gateway or `edge check` runs in: a
file of the same name in the working folder was taken instead. An absolute path is taken as it
is; a pack found only from the working folder is still found."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rules.config import resolve_pack
from tests.support.site import running_site, site_file

ROOT = Path(__file__).resolve().parents[2]


def _pack(folder: Path, rule_id: str, name: str = "rules/site.yaml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"rules:\n  - {{id: {rule_id}, when: m.v, if: value > 1, then: [{{alert: x}}]}}\n", encoding="utf-8"
    )
    return path


def _site(packs: list[str]) -> dict[str, object]:
    return {
        "rules": {"packs": packs},
        "devices": [
            {
                "id": "m",
                "driver": "sim",
                "points": [{"name": "v", "signal": "constant", "value": 0, "interval": "1h"}],
            }
        ],
    }


async def test_a_pack_beside_the_site_file_wins_over_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pack(tmp_path, "beside")
    elsewhere = tmp_path / "elsewhere"
    _pack(elsewhere, "working-folder")
    monkeypatch.chdir(elsewhere)
    async with running_site(tmp_path, _site(["rules/site.yaml"]), web=False) as rt:
        rules = rt.components["rules"]
        assert set(rules.engine.rules) == {"beside"}


async def test_an_absolute_path_and_a_pack_only_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = _pack(tmp_path / "abs", "absolute")
    elsewhere = tmp_path / "elsewhere"
    _pack(elsewhere, "working-folder", "old/pack.yaml")
    monkeypatch.chdir(elsewhere)
    async with running_site(tmp_path, _site([str(absolute), "old/pack.yaml"]), web=False) as rt:
        assert set(rt.components["rules"].engine.rules) == {"absolute", "working-folder"}


def test_edge_check_reads_the_pack_beside_the_site_file(tmp_path: Path) -> None:
    _pack(tmp_path, "beside")
    broken = tmp_path / "elsewhere" / "rules" / "site.yaml"
    broken.parent.mkdir(parents=True)
    broken.write_text("rules: [oops\n", encoding="utf-8")  # would fail edge check if read
    site = site_file(tmp_path, _site(["rules/site.yaml"]))
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "-c", str(site)],
        cwd=tmp_path / "elsewhere",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_missing_pack_is_named_beside_the_site_file(tmp_path: Path) -> None:
    site = tmp_path / "conf" / "site.yaml"
    assert resolve_pack("rules/none.yaml", str(site)) == tmp_path / "conf" / "rules" / "none.yaml"
