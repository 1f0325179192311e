"""`edge doctor` on real files, directories and ports: a serial device path the service user may
not open, a secret file others may read, a port another program holds, a site file that does not
validate; each finding with its fix, and the exit code of the worst one. The service user is
`nobody`, so the mode bits count even when the test runs as root; a site file meant to be read by
it lives in a folder it may reach (pytest's own are their owner's alone)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from edge.doctor import check_bluez
from tests.support.cli import edge_cli
from tests.support.ports import free_port
from tests.support.site import site_file

USER = "nobody"


def doctor(config: Path, *more: str) -> tuple[int, list[dict[str, Any]]]:
    done = edge_cli("doctor", "-c", str(config), "--user", USER, "--json", *more)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)["findings"]


def of(findings: list[dict[str, Any]], check: str, severity: str | None = None) -> list[dict[str, Any]]:
    return [f for f in findings if f["check"] == check and severity in (None, f["severity"])]


def modbus_rtu(port: str) -> dict[str, Any]:
    return {
        "id": "meter",
        "driver": "modbus",
        "connection": {"transport": "rtu", "port": port},
        "unit": 1,
        "points": [{"name": "v", "address": 0, "type": "uint16"}],
    }


def test_doctor_finds_each_problem_with_its_fix(tmp_path: Path, open_dir: Path) -> None:
    serial = tmp_path / "ttyUSB7"  # a file, owned by the test, that nobody may not open
    serial.write_bytes(b"")
    serial.chmod(0o600)
    key = tmp_path / "hmac.key"
    key.write_text("s" * 40)
    key.chmod(0o644)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        doc = {
            # a path under /dev/ (how the doctor knows a device node) that leads to the test's file
            "devices": [modbus_rtu("/dev/.." + str(serial))],
            "web": {"listen": f"127.0.0.1:{port}"},
            "upstream": [
                {"id": "central", "type": "http", "url": "http://127.0.0.1:9/x", "hmac_secret_file": str(key)}
            ],
        }
        config = site_file(open_dir, doc)
        code, findings = doctor(config)
    assert code == 2, findings
    assert of(findings, "site") == [
        {"check": "site", "severity": "ok", "message": f"{config} is valid", "fix": ""}
    ]
    (device,) = of(findings, "device", "error")
    assert "may not open it" in device["message"] and "0600" in device["message"]
    assert "chmod g+rw" in device["fix"]
    (group,) = of(findings, "group", "error")
    assert "not in group dialout" in group["message"]
    assert group["fix"].startswith(f"sudo usermod -aG dialout {USER}")
    (secret,) = of(findings, "secret", "error")
    assert "0644" in secret["message"] and secret["fix"] == f"chmod 600 {key}"
    (held_port,) = of(findings, "port", "error")
    assert "in use by another program" in held_port["message"] and f":{port}'" in held_port["fix"]
    assert of(findings, "disk") and of(findings, "clock")


def test_a_healthy_setup_has_nothing_to_fix_and_exit_0(tmp_path: Path) -> None:
    key = tmp_path / "hmac.key"
    key.write_text("s" * 40)
    key.chmod(0o600)
    doc = {
        "devices": [
            {"id": "m", "driver": "sim", "points": [{"name": "v", "signal": "constant", "value": 1}]}
        ],
        "web": {"listen": f"127.0.0.1:{free_port()}"},
        "upstream": [
            {"id": "central", "type": "http", "url": "http://127.0.0.1:9/x", "hmac_secret_file": str(key)}
        ],
        "clock": {"trust_unsynced": True},  # a synchronised host or not, the site believes it
    }
    config = site_file(tmp_path, doc)
    key.chmod(0o604)  # readable by others, nobody included: the mode is the problem
    code, findings = doctor(config)
    assert code == 2 and of(findings, "secret", "error")
    key.chmod(0o600)
    code, findings = doctor(config)
    # owned by the test's user, 0600: nobody cannot read what the gateway needs
    (unreadable,) = of(findings, "secret", "error")
    assert f"not readable by {USER}" in unreadable["message"]
    assert unreadable["fix"] == f"sudo chown {USER} {key}"
    done = edge_cli("doctor", "-c", str(config), "--user", "root", "--json")
    assert done.returncode == 0, done.stdout
    assert {f["severity"] for f in json.loads(done.stdout)["findings"]} <= {"ok", "info"}


def test_an_invalid_site_file_is_an_error_naming_the_key(open_dir: Path) -> None:
    config = site_file(open_dir, {"storage": {"max_bytes": "lots"}})
    code, findings = doctor(config)
    assert code == 2
    (site,) = of(findings, "site", "error")
    assert "max_bytes" in site["message"] and "edge check -c" in site["fix"]
    human = edge_cli("doctor", "-c", str(config), "--user", USER)
    assert human.returncode == 2 and "FAIL site" in human.stdout and "fix: " in human.stdout


def test_an_unknown_user_is_refused(tmp_path: Path) -> None:
    done = edge_cli("doctor", "-c", str(site_file(tmp_path, {})), "--user", "no-such-user-here")
    assert done.returncode == 2 and "no user 'no-such-user-here'" in done.stderr


def test_bluez_without_an_adapter_says_how_to_get_one(tmp_path: Path) -> None:
    findings = list(check_bluez(tmp_path / "no-sysfs"))
    assert any(f.severity == "error" and "no Bluetooth adapter" in f.message for f in findings)
    assert all(f.fix for f in findings if f.severity == "error")


@pytest.fixture(autouse=True)
def _nobody_exists() -> None:
    import pwd

    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"this host has no user {USER}")


@pytest.mark.parametrize("trusted", [False, True])
def test_an_unsynchronised_clock_suggests_trust_unsynced_only_to_a_site_without_it(
    monkeypatch: pytest.MonkeyPatch, trusted: bool
) -> None:
    # the kernel's NTP state cannot be set by a test: the sync source answers "not synchronised"
    import edge.clock
    from edge.doctor import check_clock

    monkeypatch.setattr(edge.clock, "kernel_sync_status", lambda: edge.clock.SyncStatus(False, "no NTP"))
    (found,) = check_clock({"clock": {"trust_unsynced": trusted}})
    assert found.severity == ("info" if trusted else "warning")
    assert "timedatectl set-ntp true" in found.fix
    assert ("may set clock.trust_unsynced" in found.fix) is not trusted, found.fix
