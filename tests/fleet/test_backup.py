"""`edge backup` while a real `edge run` ingests, and `edge restore` onto the stopped gateway: the
restored journal is sound and holds every record committed before the backup began, and the
cursors and rules come back. Restore refuses a running gateway, a foreign site's archive and a
damaged one, and changes nothing when it does."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.store.journal import Journal
from tests.support.cli import answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.site import busy_meter, site_file
from tests.support.waiting import until_sync

PACK = """
rules:
  - id: hot-p0
    name: p0 above 90
    when: meter.p0
    if: value > 90
    then:
      - event: {kind: p0_high, severity: info, message: "p0 is {value}"}
"""


def rows(path: Path, upto: int | None = None) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        where, args = ("WHERE seq <= ?", (upto,)) if upto is not None else ("", ())
        return conn.execute(
            f"SELECT seq, ts, point, value, kind FROM journal {where} ORDER BY seq", args
        ).fetchall()
    finally:
        conn.close()


def last_seq(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT coalesce(max(seq), 0) FROM journal").fetchone()[0])
    finally:
        conn.close()


def cursors(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT name, seq FROM cursors").fetchall())
    finally:
        conn.close()


def site_doc(tmp_path: Path, site_id: str = "backup-site", port: int = 0) -> dict[str, Any]:
    token = tmp_path / "central-pull.token"
    token.write_text("a-pull-token-long-enough-for-any-check-0123456789\n")
    token.chmod(0o600)
    return {
        "site": {"id": site_id, "name": "backup"},
        "web": {"listen": f"127.0.0.1:{port}"},
        "devices": [busy_meter()],
        "consumers": [{"id": "central-pull", "token_file": str(token)}],
    }


async def seed(tmp_path: Path, config: Path) -> None:
    """A consumer cursor and a rule pack, as an operator's gateway would have them."""
    journal = Journal(str(tmp_path / "edge.db")).open()
    try:
        await journal.set_cursor("central-pull", 0, kind="consumer")
    finally:
        await journal.close()
    (tmp_path / "pack.yaml").write_text(PACK)
    done = edge_cli("rules", "import", "-c", str(config), str(tmp_path / "pack.yaml"))
    assert done.returncode == 0, done.stderr


def test_backup_during_ingest_restores_every_committed_record_cursors_and_rules(tmp_path: Path) -> None:
    port = free_port()
    config = site_file(tmp_path, site_doc(tmp_path, port=port))
    asyncio.run(seed(tmp_path, config))
    journal = tmp_path / "edge.db"
    archive = tmp_path / "backups" / "site.tar.gz"
    log = tmp_path / "run.log"
    edge = start_edge_run(config, log)
    try:
        asyncio.run(answering(f"http://127.0.0.1:{port}", edge))
        until_sync(lambda: last_seq(journal) > 500, timeout=60, what="the gateway ingesting")
        # what was committed before the backup began, read on a connection of the test's own
        before = rows(journal)
        assert before
        done = edge_cli("backup", "-c", str(config), "--out", str(archive))
        assert done.returncode == 0, done.stderr
        assert edge.poll() is None, log.read_text()
        until_sync(
            lambda: last_seq(journal) > before[-1][0] + 100, timeout=60, what="ingest after the backup"
        )
        # a running gateway is not restored over
        refused = edge_cli("restore", "-c", str(config), str(archive))
        assert refused.returncode == 1
        assert f"in process {edge.pid}" in refused.stderr and "stop the service" in refused.stderr
    finally:
        terminate(edge)
    assert archive.stat().st_mode & 0o077 == 0  # personal data and password hashes: owner only
    after_run = last_seq(journal)
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert manifest["site_id"] == "backup-site"
    assert manifest["schema"]["journal"] >= 3 and "rules" in manifest["schema"]["state"]
    assert set(manifest["files"]) >= {"journal.db", "state.db"}

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    conn = sqlite3.connect(journal)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    restored = rows(journal)
    assert restored[: len(before)] == before  # every record committed before the backup began
    assert restored[-1][0] == manifest["journal_last_seq"] < after_run  # and the backup's, not later ones
    assert cursors(journal) == {"central-pull": 0}
    exported = edge_cli("rules", "export", "-c", str(config))
    assert exported.returncode == 0, exported.stderr
    assert [r["id"] for r in yaml.safe_load(exported.stdout)["rules"]] == ["hot-p0"]
    assert (tmp_path / "edge.db.pre-restore").exists()  # the replaced journal is kept

    # the restored gateway starts and goes on from the backup's last seq
    edge = start_edge_run(config, log)
    try:
        asyncio.run(answering(f"http://127.0.0.1:{port}", edge))
        until_sync(
            lambda: last_seq(journal) > manifest["journal_last_seq"], timeout=60, what="ingest after restore"
        )
    finally:
        terminate(edge)
        stop_process(edge)


@pytest.fixture
def stopped_site(tmp_path: Path) -> tuple[Path, Path]:
    """A site that has run (journal, state DB with a rule, a snapshot file) and its backup."""
    config = site_file(tmp_path, site_doc(tmp_path))
    asyncio.run(seed(tmp_path, config))
    blob = tmp_path / "blobs" / "cam-gate" / "1.jpg"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\xff\xd8 not really a jpeg")
    archive = tmp_path / "site.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    return config, archive


def rewrite(archive: Path, out: Path, change: Any) -> None:
    """Copy `archive` to `out`, passing each member's (TarInfo, bytes) through `change`."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            member, data = change(member, data)
            member.size = len(data)
            dst.addfile(member, io.BytesIO(data))


def unchanged(tmp_path: Path, config: Path, archive: Path, message: str) -> None:
    before = (tmp_path / "edge.db").read_bytes()
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 1
    assert message in done.stderr, done.stderr
    assert (tmp_path / "edge.db").read_bytes() == before
    assert not (tmp_path / "edge.db.pre-restore").exists()


def test_restore_brings_back_snapshot_files(stopped_site: tuple[Path, Path], tmp_path: Path) -> None:
    config, archive = stopped_site
    blob = tmp_path / "blobs" / "cam-gate" / "1.jpg"
    blob.unlink()
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert blob.read_bytes() == b"\xff\xd8 not really a jpeg"


def test_restore_refuses_a_foreign_sites_backup(stopped_site: tuple[Path, Path], tmp_path: Path) -> None:
    _, archive = stopped_site
    other = site_file(tmp_path, site_doc(tmp_path, "other-site"), name="other.yaml")
    unchanged(tmp_path, other, archive, "backup of site 'backup-site'")


def test_restore_refuses_a_damaged_file(stopped_site: tuple[Path, Path], tmp_path: Path) -> None:
    config, archive = stopped_site
    bad = tmp_path / "bad.tar.gz"

    def flip(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if member.name == "journal.db":
            data = data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:]
        return member, data

    rewrite(archive, bad, flip)
    unchanged(tmp_path, config, bad, "journal.db does not match its checksum")


def test_restore_refuses_a_cut_archive_and_a_stranger(
    stopped_site: tuple[Path, Path], tmp_path: Path
) -> None:
    config, archive = stopped_site
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    unchanged(tmp_path, config, cut, "damaged")
    stranger = tmp_path / "stranger.tar.gz"

    def add_path(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if member.name == "journal.db":
            member.name = "../journal.db"
        return member, data

    rewrite(archive, stranger, add_path)
    unchanged(tmp_path, config, stranger, "'../journal.db' is not a file its manifest lists")
    odd = tmp_path / "odd.tar.gz"

    def odd_manifest(member: tarfile.TarInfo, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
        if member.name == "manifest.json":
            doc = json.loads(data)
            doc["files"]["journal.db"] = "not an entry"
            data = json.dumps(doc).encode()
        return member, data

    rewrite(archive, odd, odd_manifest)
    unchanged(tmp_path, config, odd, "manifest.json is not a backup manifest of format 1")
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(gzip.compress(b"not a tar"))
    unchanged(tmp_path, config, plain, "not a backup archive")
