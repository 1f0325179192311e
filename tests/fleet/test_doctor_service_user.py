"""`edge doctor` judges the host as the service finds it: the groups its unit gives its user
(SupplementaryGroups=) count, a site file or a missing data folder that user cannot reach is a
problem even when the caller can, and a damaged database (journal, state DB, trend index, keys.db)
is found by SQLite's quick_check, with what to do. Real files, folders and SQLite databases; the
service user is `nobody`, so the mode bits count even when the test runs as root."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.test_doctor import USER, doctor, of
from tests.support.cli import edge_cli
from tests.support.site import site_file


@pytest.fixture(autouse=True)
def _nobody_exists() -> None:
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"this host has no user {USER}")


def unit_file(folder: Path, body: str) -> Path:
    path = folder / "community-edge.service"
    path.write_text("[Unit]\nDescription=test\n\n[Service]\n" + body)
    return path


def sim_site(folder: Path, journal: Path, **more: Any) -> Path:
    doc = {
        "storage": {"path": str(journal)},
        "devices": [
            {"id": "m", "driver": "sim", "points": [{"name": "v", "signal": "constant", "value": 1}]}
        ],
        **more,
    }
    return site_file(folder, doc)


# ---------------------------------------------------------------- the unit's groups
def test_the_units_supplementary_groups_count_for_its_user(tmp_path: Path) -> None:
    try:
        grp.getgrnam("dialout")
    except KeyError:
        pytest.skip("this host has no group dialout")
    doc = {
        "devices": [
            {
                "id": "meter",
                "driver": "modbus",
                "connection": {"transport": "rtu", "port": "/dev/ttyUSB-edge-doctor-test"},
                "unit": 1,
                "points": [{"name": "v", "address": 0, "type": "uint16"}],
            }
        ]
    }
    config = site_file(tmp_path, doc)
    granted = unit_file(tmp_path, f"User={USER}\nSupplementaryGroups=dialout video bluetooth\n")
    _, findings = doctor(config, "--unit", str(granted))
    (group,) = of(findings, "group")
    assert group["severity"] == "ok", group
    assert group["message"] == f"{USER} has group dialout from the unit's SupplementaryGroups"

    # another account's unit gives nobody nothing; a drop-in that clears the list takes them away
    other = tmp_path / "other"
    other.mkdir()
    _, findings = doctor(
        config, "--unit", str(unit_file(other, "User=community-edge\nSupplementaryGroups=dialout\n"))
    )
    assert of(findings, "group", "error"), findings
    (granted.parent / "community-edge.service.d").mkdir()
    (granted.parent / "community-edge.service.d" / "10-no-groups.conf").write_text(
        "[Service]\nSupplementaryGroups=\n"
    )
    _, findings = doctor(config, "--unit", str(granted))
    (group,) = of(findings, "group", "error")
    assert f"{USER} is not in group dialout" in group["message"]


def test_a_device_of_a_group_the_unit_grants_is_openable(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("giving a file to group dialout needs root")
    try:
        dialout = grp.getgrnam("dialout").gr_gid
    except KeyError:
        pytest.skip("this host has no group dialout")
    serial = tmp_path / "ttyUSB3"
    serial.write_bytes(b"")
    os.chown(serial, 0, dialout)
    serial.chmod(0o660)
    doc = {
        "devices": [
            {
                "id": "meter",
                "driver": "modbus",
                "connection": {"transport": "rtu", "port": "/dev/.." + str(serial)},
                "unit": 1,
                "points": [{"name": "v", "address": 0, "type": "uint16"}],
            }
        ]
    }
    config = site_file(tmp_path, doc)
    granted = unit_file(tmp_path, f"User={USER}\nSupplementaryGroups=dialout\n")
    _, findings = doctor(config, "--unit", str(granted))
    assert not of(findings, "device", "error"), findings
    assert of(findings, "device", "ok")


def test_an_unreadable_unit_file_is_refused(tmp_path: Path) -> None:
    config = site_file(tmp_path, {})
    done = edge_cli("doctor", "-c", str(config), "--unit", str(tmp_path / "none.service"))
    assert done.returncode == 2 and "cannot read that unit file" in done.stderr


# ---------------------------------------------------------------- what the user must reach
def test_a_site_file_the_user_cannot_read_is_an_error(open_dir: Path) -> None:
    config = sim_site(open_dir, open_dir / "edge.db")
    config.chmod(0o600)  # the caller's alone
    code, findings = doctor(config)
    assert code == 2
    (site,) = of(findings, "site", "error")
    assert f"is not readable by {USER}, who runs the gateway" in site["message"]
    assert site["fix"].endswith(f"&& sudo chmod g+r {config}")
    config.chmod(0o644)
    inner = open_dir / "closed"
    inner.mkdir(mode=0o700)
    shutil.move(config, inner / "site.yaml")
    _, findings = doctor(inner / "site.yaml")
    (site,) = of(findings, "site", "error")
    assert f"{inner}/ (" in site["message"] and f"may not be searched by {USER}" in site["message"]
    assert site["fix"].endswith(f"sudo chmod g+x {inner}")


def test_a_missing_data_folder_the_user_cannot_create_is_an_error(open_dir: Path) -> None:
    config = sim_site(open_dir, open_dir / "data" / "edge.db")
    code, findings = doctor(config)
    assert code == 2
    (data,) = of(findings, "data", "error")
    assert f"cannot create the data folder {open_dir / 'data'}" in data["message"]
    assert f"{USER} may not create it in {open_dir}/" in data["message"]
    assert data["fix"].startswith(f"sudo install -d -m 0750 -o {USER} ") and data["fix"].endswith(
        str(open_dir / "data")
    )
    # where the user may create it, nothing to say
    open_dir.chmod(0o777)
    _, findings = doctor(config)
    assert not of(findings, "data", "error"), findings


def test_a_missing_state_directory_is_systemds_to_create(tmp_path: Path) -> None:
    name = f"edge-doctor-test-{uuid.uuid4().hex[:8]}"
    state = Path("/var/lib") / name
    assert not state.exists()
    config = sim_site(tmp_path, state / "edge.db")
    _, findings = doctor(config)
    assert of(findings, "data", "error"), findings  # no unit: nobody cannot create it in /var/lib
    unit = unit_file(tmp_path, f"User={USER}\nStateDirectory={name}\n")
    _, findings = doctor(config, "--unit", str(unit))
    assert not of(findings, "data", "error"), findings
    assert not state.exists()  # the doctor changes nothing


# ---------------------------------------------------------------- damaged databases
def filled_db(path: Path, rows: int = 3000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE journal (seq INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO journal (body) VALUES (?)", ((f"{i:06d}" * 30,) for i in range(rows)))
    conn.close()


def damage(path: Path, page: int) -> None:
    """Overwrite the cells of one page (not its header) with garbage, as a torn write would."""
    with path.open("r+b") as f:
        f.seek(4096 * (page - 1) + 100)
        f.write(b"\x07" * 2000)


def test_a_damaged_journal_is_an_error_with_the_restore_to_run(tmp_path: Path) -> None:
    journal = tmp_path / "edge.db"
    filled_db(journal)
    config = sim_site(tmp_path, journal)
    _, findings = doctor(config, "--user", "root")
    (fine,) = of(findings, "data")
    assert fine["severity"] == "ok" and fine["message"].endswith("; quick_check ok: edge.db"), fine
    damage(journal, 40)
    code, findings = doctor(config, "--user", "root")
    assert code == 2
    (broken,) = of(findings, "data", "error")
    assert broken["message"].startswith(f"journal {journal} is damaged (PRAGMA quick_check: ")
    assert "edge restore -c" in broken["fix"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edge.db", "site.yaml"]  # read-only, no -wal/-shm


def test_a_damaged_trend_index_may_simply_be_deleted(tmp_path: Path) -> None:
    trend = tmp_path / "trend.db"
    filled_db(trend)
    damage(trend, 40)
    config = sim_site(tmp_path, tmp_path / "edge.db")
    _, findings = doctor(config, "--user", "root")
    (broken,) = of(findings, "data", "error")
    assert broken["message"].startswith(f"trend index {trend} is damaged")
    assert f"delete {trend}" in broken["fix"] and "rebuilds it" in broken["fix"]


def test_the_check_stops_at_its_time_budget_and_says_what_it_left(tmp_path: Path) -> None:
    journal = tmp_path / "edge.db"
    filled_db(journal)
    from edge.doctor import check_integrity

    (found,) = check_integrity({"storage": {"path": str(journal)}}, budget_s=0)
    assert found.severity == "info" and found.check == "data"
    assert found.message.startswith("not fully checked within 0 s") and str(journal) in found.message


def test_the_shipped_unit_is_read_as_systemd_reads_it() -> None:
    """What the doctor takes from deploy/systemd/community-edge.service is what the unit says."""
    from edge.doctor import read_unit, shipped_unit

    unit = read_unit(shipped_unit())
    assert unit is not None
    assert unit.user == "community-edge"
    assert unit.groups == ("dialout", "video", "bluetooth")
    assert unit.state_dirs == ("/var/lib/community-edge",)


def test_an_installed_bundle_finds_its_shipped_unit_through_the_venv_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """install.sh --from: PREFIX/versions/V/deploy beside PREFIX/versions/V/venv, which the service
    and the `edge` link run as PREFIX/.venv -> current/venv; the package itself in site-packages."""
    import edge.doctor
    from edge.doctor import shipped_unit

    prefix = tmp_path / "opt"
    unit = prefix / "versions" / "0.1.0-abc" / "deploy" / "systemd" / "community-edge.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nUser=community-edge\n")
    (prefix / "versions" / "0.1.0-abc" / "venv").mkdir()
    (prefix / "current").symlink_to("versions/0.1.0-abc")
    (prefix / ".venv").symlink_to("current/venv")
    package = prefix / "versions" / "0.1.0-abc" / "venv" / "lib" / "python3" / "site-packages" / "edge"
    package.mkdir(parents=True)
    monkeypatch.setattr(edge.doctor, "__file__", str(package / "doctor.py"))
    monkeypatch.setattr(sys, "prefix", str(prefix / ".venv"))
    assert shipped_unit().resolve() == unit.resolve()
