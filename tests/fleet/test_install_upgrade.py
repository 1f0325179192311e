"""`deploy/install.sh --from BUNDLE` upgrading a gateway in a prefix of its own (SERVICE=none):
the backup before an upgrade is taken whether the service runs or not (and a site with no journal
yet is told there is none to take), only the newest KEEP_BACKUPS backups stay after a healthy
upgrade, and a version older than the installed one is refused unless ALLOW_DOWNGRADE=1.

The bundles are the session's real one (`make dist`) and copies of it whose BUNDLE file names
another version (SHA256SUMS made to match), one of them with a project wheel that cannot start."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from tests.fleet.conftest import alive, repack, stop_pid_file
from tests.fleet.test_dist import Gateway as DistGateway
from tests.support.waiting import until_sync

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the session's bundle may be built first


@pytest.fixture(scope="module")
def bundles(bundle: Path, upgrade_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's bundle (0.1.0) and its copies: 0.2.0, and a 0.1.5 that fails its health gate."""
    out = tmp_path_factory.mktemp("bundles")
    return {
        "0.1.0": bundle,
        "0.2.0": upgrade_bundle,
        "0.1.5-broken": repack(bundle, out / "community-edge-0.1.5.tar.gz", "0.1.5", broken=True),
    }


class Gateway(DistGateway):
    """A gateway's prefix, site file and data folder under tmp_path, and install.sh run on it
    (online: the bundles are local files)."""

    site_id = "upgrade-site"
    interval = "50ms"

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path, [])

    def backups(self) -> list[str]:
        return sorted(p.name for p in (self.prefix / "backups").iterdir())

    def journaled(self) -> bool:
        """The gateway's journal holds a record."""
        db = self.data / "edge.db"
        if not db.exists():
            return False
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            try:
                return conn.execute("SELECT count(*) FROM journal").fetchone()[0] > 0
            finally:
                conn.close()
        except sqlite3.Error:
            return False


def test_upgrades_back_up_a_stopped_gateway_keep_the_newest_backups_and_refuse_a_downgrade(
    bundles: dict[str, Path], tmp_path: Path, pid_files: list[Path]
) -> None:
    gw = Gateway(tmp_path)
    pid_files.append(gw.pid_file)
    first = gw.install(bundles["0.1.0"])
    assert first.returncode == 0 and "answers healthy" in first.stdout, first.stdout + first.stderr
    until_sync(gw.journaled, timeout=60, what="the gateway journaling")
    # two backups of earlier upgrades, the older first, and a file of the operator's
    backups = gw.prefix / "backups"
    now = time.time()
    for age, name in ((2, "before-0.0.1-aaaaaaaaaaaa.tar.gz"), (1, "before-0.0.2-bbbbbbbbbbbb.tar.gz")):
        (backups / name).write_bytes(b"an earlier backup")
        os.utime(backups / name, (now - age * 86400, now - age * 86400))
    (backups / "notes.txt").write_text("kept")
    stop_pid_file(gw.pid_file)

    # stopped: backed up all the same; healthy: only the newest two backups stay, and it says which went
    upgrade = gw.install(bundles["0.2.0"])
    assert upgrade.returncode == 0 and "answers healthy" in upgrade.stdout, upgrade.stdout + upgrade.stderr
    (before_020,) = backups.glob("before-0.2.0-*.tar.gz")
    assert "the service is not running; it is started after the upgrade for the health gate" in upgrade.stderr
    assert gw.backups() == ["before-0.0.2-bbbbbbbbbbbb.tar.gz", before_020.name, "notes.txt"]
    assert (
        f"removed the pre-upgrade backups older than the newest 2 (KEEP_BACKUPS) from {backups}: "
        "before-0.0.1-aaaaaaaaaaaa.tar.gz" in upgrade.stdout
    )
    newer = gw.current()
    pid = int(gw.pid_file.read_text())
    versions = sorted(p.name for p in (gw.prefix / "versions").iterdir())

    # an older version: refused, nothing changed, and how to go back to the data before 0.2.0
    refused = gw.install(bundles["0.1.0"])
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "community-edge 0.1.0, older than the installed 0.2.0" in refused.stderr
    assert f"edge restore -c {gw.etc / 'site.yaml'} {before_020}" in refused.stderr
    assert "ALLOW_DOWNGRADE=1" in refused.stderr
    assert gw.current() == newer and int(gw.pid_file.read_text()) == pid and alive(pid)
    assert sorted(p.name for p in (gw.prefix / "versions").iterdir()) == versions

    # asked for, on a site whose journal is not there yet (moved to a new folder): nothing to back
    # up, and the rollback of a version that cannot start says so instead of naming no file
    stop_pid_file(gw.pid_file)
    (gw.data / "moved").mkdir()
    gw.site(gw.data / "moved" / "edge.db")
    downgrade = gw.install(bundles["0.1.5-broken"], health_timeout=10, ALLOW_DOWNGRADE="1")
    assert downgrade.returncode == 1, downgrade.stdout + downgrade.stderr
    assert "installing community-edge 0.1.5 over 0.2.0 (ALLOW_DOWNGRADE=1)" in downgrade.stderr
    assert (
        f"rolled back to {newer} and the data as the failed version left it: no backup was taken (no journal yet"
        in downgrade.stderr
    )
    assert "data from ;" not in downgrade.stderr and "it answers healthy" in downgrade.stderr
    assert gw.current() == newer
    assert gw.backups() == ["before-0.0.2-bbbbbbbbbbbb.tar.gz", before_020.name, "notes.txt"]


def fake_installed(gw: Gateway, version: str) -> str:
    """A prefix as install.sh leaves it with `version` current (no venv: a refusal comes first)."""
    name = f"{version}-0123456789ab"
    (gw.prefix / "versions" / name).mkdir(parents=True)
    (gw.prefix / "versions" / name / "BUNDLE").write_text(f"version={version}\n")
    (gw.prefix / "current").symlink_to(f"versions/{name}")
    return name


@pytest.mark.parametrize(
    ("installed", "settings", "code", "said"),
    [
        ("0.2.0", {}, 1, "0.1.0, older than the installed 0.2.0"),
        ("0.2.0", {}, 1, "No backup taken before 0.2.0 is kept"),
        ("0.10.0", {}, 1, "0.1.0, older than the installed 0.10.0"),
        ("2026.12-weekly", {}, 1, "cannot tell whether"),
        ("0.2.0", {"ALLOW_DOWNGRADE": "yes"}, 2, "ALLOW_DOWNGRADE=yes: 1 installs a version older"),
        ("0.0.1", {"KEEP_BACKUPS": "-1"}, 2, "KEEP_BACKUPS=-1: the number of pre-upgrade backups"),
    ],
)
def test_refusals_change_nothing(
    bundles: dict[str, Path],
    tmp_path: Path,
    pid_files: list[Path],
    installed: str,
    settings: dict[str, str],
    code: int,
    said: str,
) -> None:
    gw = Gateway(tmp_path)
    pid_files.append(gw.pid_file)
    name = fake_installed(gw, installed)
    done = gw.install(bundles["0.1.0"], health_timeout=5, **settings)
    assert done.returncode == code and said in done.stderr, done.stdout + done.stderr
    assert os.readlink(gw.prefix / "current") == f"versions/{name}"
    assert [p.name for p in (gw.prefix / "versions").iterdir()] == [name]
    assert not (gw.prefix / "backups").exists() and not gw.pid_file.exists()
