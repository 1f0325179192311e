"""A restore of a backup taken before `edge privacy forget` keeps the erasure: the forgotten key
stays deleted (keys.db is not in the archive), the `subject_erased` notice is journaled again
above the restore's seqs so every pull consumer receives it (the replaced journal's one is in the
restore's gap, which no recipient is served), and the audit log keeps the `privacy_forget` entry
and every other entry written since the backup, with their ids; the restore itself is audited and
the log verifies.

Real `edge backup`, `edge privacy forget`, `edge restore` and `edge audit verify` processes, a
real master key, and the gateway started in this process on the files they leave.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from edge import audit
from edge.privacy.keyfile import create_master_key
from edge.privacy.pseudonym import PseudonymiseConfig, Pseudonymiser, RecordShaper, pseudonym
from edge.state import StateDB
from tests.privacy.conftest import RESIDENT, measurement, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


@pytest.fixture
def master(tmp_path: Path) -> Path:
    path = tmp_path / "master.key"
    create_master_key(path)
    return path


def with_consumer(tmp_path: Path, master: Path) -> tuple[Path, bytes]:
    """The sealed kiosk site with a pull consumer that has a pseudonym key."""
    key = b"city-pseudonym-key-" * 3
    path = tmp_path / "city.pskey"
    path.write_bytes(key)
    path.chmod(0o600)
    token = tmp_path / "city.token"
    token.write_text("t" * 40)
    token.chmod(0o600)
    doc = (
        site_doc(master)
        + f"consumers:\n  - {{id: city, token_file: {token}, pseudonymise: {{key_file: {path}}}}}\n"
    )
    return site_file(tmp_path, doc), key


def audit_log(tmp_path: Path) -> list[tuple[int, str, str]]:
    """(id, action, target) of every audit entry, oldest first."""
    state = StateDB(str(tmp_path / "state.db"))
    try:
        return [(e["id"], e["action"], e["target"]) for e in reversed(audit.entries(state, limit=1000))]
    finally:
        state.close()


def query(db: Path, sql: str) -> list[Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def write_audit(tmp_path: Path, action: str) -> None:
    state = StateDB(str(tmp_path / "state.db"))
    try:
        audit.record(state, "ops", action, "ops")
    finally:
        state.close()


async def test_a_restore_from_before_a_forget_notifies_the_erasure_again_and_keeps_its_audit_entry(
    tmp_path: Path, master: Path
) -> None:
    config, key = with_consumer(tmp_path, master)
    doc = config.read_text(encoding="utf-8")
    journal = tmp_path / "edge.db"
    async with running_site(tmp_path, doc, web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    write_audit(tmp_path, "login")
    archive = tmp_path / "before-forget.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    archived = int(query(journal, "SELECT max(seq) FROM journal")[0][0])

    write_audit(tmp_path, "login")  # after the backup: its id must not name another entry later
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    async with running_site(tmp_path, doc, web=False) as rt:
        await rt.journal.flush()  # the notice is journaled at the start, above the archive's seqs
    [(notified,)] = query(journal, "SELECT seq FROM journal WHERE kind='subject_erased'")
    assert notified > archived
    before = audit_log(tmp_path)
    assert [a for _, a, _ in before].count("privacy_forget") == 1

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert "1 erasure done since the backup (edge privacy forget) carried forward" in done.stdout
    assert "audit entries written since the backup carried forward" in done.stdout
    assert "this restore is audit entry" in done.stdout
    top = int(query(journal, "SELECT value FROM meta WHERE key='last_seq'")[0][0])
    assert top >= notified

    async with running_site(tmp_path, doc, web=False) as rt:
        await rt.journal.flush()
        rows = [r for r in rt.journal.read_rows(top, 1000) if r[5] == "subject_erased"]
        records = rt.journal.read(top, 1000)
        # the erased measurement stays erased: the key was not brought back
        bps = [r["payload"] for r in rt.journal.read(0, 1000) if r.get("kind") == "blood_pressure"]
    assert bps == [{"erased": True}]
    # above the seqs the consumer holds: the city receives its own pseudonym of the resident
    [row] = rows
    shaper = RecordShaper(
        Pseudonymiser(PseudonymiseConfig(key_file=str(tmp_path / "city.pskey"))), lambda: {}
    )
    assert orjson.loads(shaper.apply([row])[0][7]) == {"subject": pseudonym(key, RESIDENT)}
    said = next(r["payload"] for r in records if r.get("kind") == "journal_restored")
    assert said["erasures_carried"] == 1 and said["audit_entries_carried"] >= 2

    after = audit_log(tmp_path)
    assert after[: len(before)] == before  # every entry kept, under its own id
    assert [a for _, a, _ in after].count("privacy_forget") == 1  # not audited a second time
    restore_entry = after[len(before)]
    assert restore_entry[1:] == ("restore", archive.name)
    ids = [i for i, _, _ in after]
    assert ids == sorted(set(ids))
    verified = edge_cli("audit", "verify", "-c", str(config))
    assert verified.returncode == 0 and "intact" in verified.stdout, verified.stdout + verified.stderr


async def test_an_erasure_queued_while_the_gateway_was_stopped_is_carried_forward(
    tmp_path: Path, master: Path
) -> None:
    """A forget with the gateway stopped queues the notice in the state DB only: a restore right
    after it must not drop it."""
    config, _key = with_consumer(tmp_path, master)
    doc = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, doc, web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    archive = tmp_path / "before-forget.tar.gz"
    assert edge_cli("backup", "-c", str(config), "--out", str(archive)).returncode == 0
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert "1 erasure done since the backup" in done.stdout

    async with running_site(tmp_path, doc, web=False) as rt:
        await rt.journal.flush()
        kinds = [r.get("kind") for r in rt.journal.read(0, 1000)]
    assert kinds.count("subject_erased") == 1
    assert [a for _, a, _ in audit_log(tmp_path)].count("privacy_forget") == 1


async def backed_up_then_state_lost(tmp_path: Path, master: Path) -> tuple[Path, Path, list[Any]]:
    """A site that ran, wrote one audit entry and was backed up, whose state DB was then lost (a
    replacement box's, or one set up anew): its site file, the archive and the archive's log."""
    config, _key = with_consumer(tmp_path, master)
    doc = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, doc, web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    write_audit(tmp_path, "login")
    archive = tmp_path / "nightly.tar.gz"
    assert edge_cli("backup", "-c", str(config), "--out", str(archive)).returncode == 0
    archived = audit_log(tmp_path)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    return config, archive, archived


async def test_a_log_that_did_not_go_on_from_the_backup_is_kept_aside_and_its_ids_not_reused(
    tmp_path: Path, master: Path
) -> None:
    """The state DB replaced is not the archive's line (a replacement box's own): its entries are
    not carried, the restore says where they are, and the restored log's next ids go above them."""
    config, archive, archived = await backed_up_then_state_lost(tmp_path, master)
    for _ in range(len(archived) + 3):
        write_audit(tmp_path, "login")  # a log of its own, longer than the archive's
    theirs = audit_log(tmp_path)

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert "did not go on from the backup's" in done.stderr
    assert "state.db.pre-restore" in done.stderr

    after = audit_log(tmp_path)
    assert after[: len(archived)] == archived
    [(entry_id, action, _target)] = after[len(archived) :]
    assert action == "restore" and entry_id == theirs[-1][0] + 1
    state = StateDB(str(tmp_path / "state.db"))
    try:
        assert audit.verify(state).ok
        detail = audit.entries(state, limit=1)[0]["detail"]
    finally:
        state.close()
    assert detail["replaced_log"]["last_id"] == theirs[-1][0]


async def test_a_log_with_no_entry_yet_is_nothing_to_carry(tmp_path: Path, master: Path) -> None:
    """A state DB whose audit log was set up and never written (a new box's) takes no id and
    draws no warning: the restored log goes on from the archive's."""
    config, archive, archived = await backed_up_then_state_lost(tmp_path, master)
    assert audit_log(tmp_path) == []  # its audit tables made, no entry

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert "audit" not in done.stderr
    after = audit_log(tmp_path)
    assert after[: len(archived)] == archived
    assert [(i, a) for i, a, _ in after[len(archived) :]] == [(archived[-1][0] + 1, "restore")]
