"""The record of processing says which records are encrypted at rest: sensitive ones, where the
site names a master key; none without one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.privacy.conftest import site_doc
from tests.privacy.test_migration import SITE_WITHOUT_KEY
from tests.support.cli import edge_cli
from tests.support.site import site_file


def test_the_report_says_sensitive_records_are_encrypted_at_rest(tmp_path: Path, master: Path) -> None:
    config = site_file(tmp_path, site_doc(master))
    report = json.loads(edge_cli("privacy", "report", "-c", str(config), "--json").stdout)
    assert {c: v["encrypted_at_rest"] for c, v in report["classes"].items()} == {
        "public": False,
        "personal": False,
        "sensitive": True,
    }
    point = next(p for p in report["points"] if p["point"] == "kiosk-1.last_systolic")
    assert point["encrypted_at_rest"] is True
    text = edge_cli("privacy", "report", "-c", str(config)).stdout
    assert (
        f"sensitive: yes, AES-256-GCM with one data key per resident, wrapped by the master key in {master}"
        in text
    )

    plain = site_file(tmp_path, SITE_WITHOUT_KEY, name="plain.yaml")
    report = json.loads(edge_cli("privacy", "report", "-c", str(plain), "--json").stdout)
    assert not any(v["encrypted_at_rest"] for v in report["classes"].values())
