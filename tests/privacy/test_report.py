"""The record of processing says which records are encrypted at rest: personal and sensitive ones
(a personal point's numbers excepted), where the site names a master key; none without one."""

from __future__ import annotations

import json
from pathlib import Path

from tests.privacy.conftest import site_doc
from tests.privacy.test_migration import SITE_WITHOUT_KEY
from tests.support.cli import edge_cli
from tests.support.site import site_file


def test_the_report_says_personal_and_sensitive_records_are_encrypted_at_rest(
    tmp_path: Path, master: Path
) -> None:
    doc = site_doc(master, gate=True).replace(
        "      - {name: loop_occupied,",
        "      - {name: occupancy, privacy: personal, signal: constant, value: 1}\n"
        "      - {name: loop_occupied,",
    )
    config = site_file(tmp_path, doc)
    report = json.loads(edge_cli("privacy", "report", "-c", str(config), "--json").stdout)
    assert {c: v["encrypted_at_rest"] for c, v in report["classes"].items()} == {
        "public": False,
        "personal": True,
        "sensitive": True,
    }
    at_rest = {p["point"]: p["encrypted_at_rest"] for p in report["points"]}
    assert at_rest["kiosk-1.last_systolic"] is True and at_rest["gate-1.last_plate"] is True
    assert at_rest["gate-1.occupancy"] is False  # a personal point's numbers stay clear
    assert at_rest["gate-1.loop_occupied"] is False
    passage = next(e for e in report["events"] if e["kind"] == "vehicle_passage")
    assert passage["encrypted_at_rest"] is True
    text = edge_cli("privacy", "report", "-c", str(config)).stdout
    assert "personal and sensitive: yes, AES-256-GCM with one data key per resident or plate" in text

    plain = site_file(tmp_path, SITE_WITHOUT_KEY, name="plain.yaml")
    report = json.loads(edge_cli("privacy", "report", "-c", str(plain), "--json").stdout)
    assert not any(v["encrypted_at_rest"] for v in report["classes"].values())


def test_the_modbus_servers_map_and_a_sensitive_cameras_snapshots_are_in_the_record(
    tmp_path: Path, master: Path
) -> None:
    doc = site_doc(master) + (
        "  - {id: kiosk-cam, driver: camera, url: rtsp://127.0.0.1:8554/kiosk, privacy: sensitive}\n"
        "  - {id: gate-cam, driver: camera, url: rtsp://127.0.0.1:8554/gate}\n"
        "  - id: gate-1\n"
        "    driver: sim\n"
        "    points:\n"
        "      - {name: occupancy, privacy: personal, signal: constant, value: 1}\n"
        "      - {name: loop_occupied, type: bool, signal: constant, value: false}\n"
        "modbus_server:\n"
        "  listen: 127.0.0.1:0\n"
        "  max_privacy: personal\n"
        "  points:\n"
        "    - {point: gate-1.loop_occupied, table: coil, address: 0}\n"
        "    - {point: gate-1.occupancy, address: 0}\n"
        "    - {point: kiosk-1.last_systolic, address: 2}\n"
    )
    config = site_file(tmp_path, doc)
    report = json.loads(edge_cli("privacy", "report", "-c", str(config), "--json").stdout)
    (server,) = [r for r in report["recipients"] if r["id"] == "modbus_server"]
    assert (server["kind"], server["type"], server["max_privacy"]) == ("server", "modbus", "personal")
    assert server["points"] == ["gate-1.loop_occupied", "gate-1.occupancy", "kiosk-1.last_systolic"]
    served = {p["point"]: p["recipients"]["modbus_server"] for p in report["points"]}
    assert served["gate-1.loop_occupied"] == {"receives": "clear"}
    assert served["gate-1.occupancy"] == {"receives": "clear"}
    assert served["kiosk-1.last_systolic"]["receives"] == "withheld"
    assert "above its max_privacy personal" in served["kiosk-1.last_systolic"]["why"]
    assert served["kiosk-1.in_use"] == {"receives": "withheld", "why": "not in its map"}
    assert all(e["recipients"]["modbus_server"]["receives"] == "withheld" for e in report["events"])

    snapshots = {e["source"]: e for e in report["events"] if e["kind"] == "snapshot"}
    assert snapshots["kiosk-cam"]["privacy"] == "sensitive" and snapshots["kiosk-cam"]["encrypted_at_rest"]
    assert snapshots["gate-cam"]["privacy"] == "personal"

    text = edge_cli("privacy", "report", "-c", str(config)).stdout
    assert "modbus_server: server (modbus), max_privacy personal, serves 3 points" in text
