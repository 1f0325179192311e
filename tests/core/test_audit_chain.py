"""The audit log's hash chain (edge/audit.py) on a real state DB file: an untouched log verifies; an
entry edited with sqlite3 behind the gateway's back, one deleted from the middle and one cut from
the end are each found; entries from before the chain are chained when the file is opened; writers
in parallel never fork the chain; the export can be checked with hashlib alone; and the
`edge audit verify/export` commands say all this with their exit codes (run through edge.cli's
main, with edge.audit_cli added to its command modules in the test)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge import audit, cli
from edge.state import StateDB
from tests.support.site import site_file


@pytest.fixture
def state_path(tmp_path: Path) -> Iterator[Path]:
    """A state DB file with five entries, the way the gateway writes them; closed again."""
    path = tmp_path / "state.db"
    state = StateDB(str(path))
    audit.record(state, "wang", "login", "wang", address="127.0.0.1")
    audit.record(state, "wang", "user_add", "li", role="viewer")
    audit.record(state, "li", "point_write", "pump.setpoint", value=42.5)
    audit.record(state, "wang", "rule_update", "night-gate", note="闸门夜间关闭")
    audit.record(state, "cli", "token_create", "central", scopes=["read"])
    state.close()
    yield path


def sql(path: Path, statement: str, *args: object) -> None:
    """A change made behind the gateway's back, with SQLite itself."""
    with sqlite3.connect(path) as conn:
        conn.execute(statement, args)
    conn.close()


def verify(path: Path) -> audit.Verification:
    state = StateDB(str(path))
    try:
        return audit.verify(state)
    finally:
        state.close()


def test_an_untouched_log_verifies_up_to_its_head(state_path: Path) -> None:
    result = verify(state_path)
    assert result.ok and result.broken is None
    assert (result.checked, result.last_id) == (5, 5)
    with sqlite3.connect(state_path) as conn:
        assert conn.execute("SELECT last_hash FROM audit_head").fetchone()[0] == result.last_hash
        prev = [row[0] for row in conn.execute("SELECT prev_hash FROM audit ORDER BY id")]
        hashes = [row[0] for row in conn.execute("SELECT hash FROM audit ORDER BY id")]
    conn.close()
    assert prev == [audit.GENESIS, *hashes[:-1]]


@pytest.mark.parametrize(
    ("change", "entry_id", "reason"),
    [
        (
            'UPDATE audit SET detail=\'{"role": "admin"}\' WHERE id=2',
            2,
            "entry #2 was changed after it was written: its content no longer matches its hash",
        ),
        ("UPDATE audit SET ts=ts-3600 WHERE id=4", 4, "entry #4 was changed after it was written"),
        ("DELETE FROM audit WHERE id=3", 4, "entry #3 is missing: deleted from the middle of the log"),
        ("DELETE FROM audit WHERE id IN (2, 3)", 4, "entries #2–#3 (2) are missing: deleted from the middle"),
        ("DELETE FROM audit WHERE id=1", 2, "entry #1 is missing from the start of the log"),
        ("DELETE FROM audit WHERE id=5", 5, "the log ends at entry #4 but its head records #5 as the last"),
        ("DELETE FROM audit", 5, "the log is empty but its head records #5 as the last"),
        ("INSERT INTO audit(ts, actor, action) VALUES (1e9, 'nobody', 'login')", 6, "entry #6 has no hash"),
        ("DELETE FROM audit_head", None, "the head record (table audit_head) is missing"),
    ],
)
def test_a_change_made_with_sqlite_is_found_at_its_entry(
    state_path: Path, change: str, entry_id: int | None, reason: str
) -> None:
    sql(state_path, change)
    result = verify(state_path)
    assert result.broken is not None
    assert (result.broken.entry_id, result.broken.reason[: len(reason)]) == (entry_id, reason)


def test_the_broken_entry_is_shown_as_it_now_reads(state_path: Path) -> None:
    sql(state_path, "UPDATE audit SET detail=? WHERE id=2", json.dumps({"role": "admin"}))
    result = verify(state_path)
    assert result.broken is not None and result.broken.entry is not None
    assert result.broken.entry["detail"] == {"role": "admin"} and result.broken.entry["id"] == 2
    assert result.checked == 1


def test_an_edit_that_recomputes_its_own_hash_breaks_the_next_link(state_path: Path) -> None:
    with sqlite3.connect(state_path) as conn:
        ts, prev = conn.execute("SELECT ts, prev_hash FROM audit WHERE id=3").fetchone()
        detail = json.dumps({"value": 0})
        forged = audit.entry_hash(prev, audit.canonical(3, ts, "li", "point_write", "pump.setpoint", detail))
        conn.execute("UPDATE audit SET detail=?, hash=? WHERE id=3", (detail, forged))
    conn.close()
    result = verify(state_path)
    assert result.broken is not None and result.broken.entry_id == 4
    assert "does not follow entry #3" in result.broken.reason


def test_after_the_last_entry_is_cut_the_gap_stays_visible(state_path: Path) -> None:
    sql(state_path, "DELETE FROM audit WHERE id=5")
    assert verify(state_path).checked == 4
    state = StateDB(str(state_path))  # the gateway goes on writing after the cut
    audit.record(state, "wang", "logout", "wang")
    state.close()
    result = verify(state_path)
    assert result.broken is not None and result.broken.entry_id == 6
    assert result.broken.reason == "entry #5 is missing: deleted from the middle of the log"


def test_entries_from_before_the_chain_are_chained_when_the_file_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as conn:  # a state DB of the previous release: audit schema 1
        conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        conn.executescript(audit.MIGRATIONS[0])
        conn.execute("INSERT INTO schema_versions VALUES ('audit', 1)")
        for i, action in enumerate(["setup", "login", "token_create"]):
            conn.execute(
                "INSERT INTO audit(ts, actor, action, target, detail) VALUES (?,?,?,?,?)",
                (1_700_000_000.25 + i, "wang", action, "", json.dumps({"n": i})),
            )
    conn.close()

    state = StateDB(str(path))
    assert audit.verify(state).ok  # opening it chained the three entries
    audit.record(state, "wang", "logout", "wang")
    result = audit.verify(state)
    state.close()
    assert (result.ok, result.checked, result.last_id) == (True, 4, 4)
    sql(path, "UPDATE audit SET action='login_failed' WHERE id=2")
    broken = verify(path).broken
    assert broken is not None and broken.entry_id == 2


def test_writers_in_parallel_never_fork_the_chain(tmp_path: Path) -> None:
    """Four connections to one file, as the gateway and `edge users add` beside it would be."""
    path = tmp_path / "state.db"
    audit.ensure(StateDB(str(path)))
    start = threading.Barrier(4)

    def write(n: int) -> None:
        state = StateDB(str(path))
        start.wait()
        for i in range(40):
            audit.record(state, f"writer-{n}", "point_write", f"p{i}")
        state.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    result = verify(path)
    assert (result.ok, result.checked) == (True, 160), result.broken


def test_verify_beside_a_writing_gateway_sees_one_consistent_log(state_path: Path) -> None:
    done = threading.Event()

    def gateway() -> None:
        state = StateDB(str(state_path))
        for i in range(300):
            audit.record(state, "wang", "point_write", f"p{i}", value=i)
        state.close()
        done.set()

    writer = threading.Thread(target=gateway)
    writer.start()
    checks: list[audit.Verification] = []
    while not done.is_set() or not checks:
        checks.append(verify(state_path))
    writer.join(timeout=120)
    assert [c.broken for c in checks if not c.ok] == []
    assert verify(state_path).checked == 305


def test_the_export_is_checkable_with_hashlib_alone(state_path: Path) -> None:
    import io

    state = StateDB(str(state_path))
    out = io.StringIO()
    assert audit.export(state, out) == 5
    state.close()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["action"] for e in lines] == ["login", "user_add", "point_write", "rule_update", "token_create"]
    assert lines[3]["detail"] == {"note": "闸门夜间关闭"}
    prev = "0" * 64
    for entry in lines:
        body = {k: v for k, v in entry.items() if k not in ("prev_hash", "hash")}
        encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert entry["prev_hash"] == prev
        assert hashlib.sha256(prev.encode() + b"\n" + encoded).hexdigest() == entry["hash"]
        prev = entry["hash"]
    assert prev == verify(state_path).last_hash


# ---------------------------------------------------------------- the commands
def test_audit_verify_exits_0_on_an_intact_log_and_1_at_the_first_break(
    tmp_path: Path, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = site_file(tmp_path, {"devices": [], "storage": {"state_path": str(state_path)}})
    assert cli.main(["audit", "verify", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("audit log intact: 5 entries, last entry #5, head hash ")
    assert verify(state_path).last_hash in out

    sql(state_path, "DELETE FROM audit WHERE id=2")
    assert cli.main(["audit", "verify", "-c", str(config)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "audit log broken at entry #3: entry #2 is missing: deleted from the middle of the log"
    assert json.loads(lines[1])["action"] == "point_write"
    assert lines[2] == "1 entry before it verified"


def test_audit_export_writes_a_private_file_and_records_itself(
    tmp_path: Path, state_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = site_file(tmp_path, {"devices": [], "storage": {"state_path": str(state_path)}})
    target = tmp_path / "audit.jsonl"
    assert cli.main(["audit", "export", "-c", str(config), "--output", str(target)]) == 0
    assert "exported 5 audit entries to" in capsys.readouterr().err
    assert target.stat().st_mode & 0o777 == 0o600
    assert [json.loads(line)["id"] for line in target.read_text(encoding="utf-8").splitlines()] == [
        1,
        2,
        3,
        4,
        5,
    ]

    assert cli.main(["audit", "export", "-c", str(config)]) == 0  # to stdout, now with the first export
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entries[-1]["action"] == "audit_export" and entries[-1]["target"] == str(target)
    assert entries[-1]["detail"] == {"entries": 5}
    assert cli.main(["audit", "verify", "-c", str(config)]) == 0


def test_audit_commands_refuse_a_site_without_a_state_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "state.db"
    config = site_file(tmp_path, {"devices": [], "storage": {"state_path": str(missing)}})
    for action in ("verify", "export"):
        assert cli.main(["audit", action, "-c", str(config)]) == 1
        assert f"{missing}: no state database yet" in capsys.readouterr().err
    assert not missing.exists()
    unwritable = tmp_path / "no-such-dir" / "out.jsonl"
    site_file(tmp_path, {"devices": [], "storage": {"state_path": str(tmp_path / "s.db")}}, name="s.yaml")
    state = StateDB(str(tmp_path / "s.db"))
    audit.record(state, "wang", "login", "wang")
    state.close()
    assert cli.main(["audit", "export", "-c", str(tmp_path / "s.yaml"), "--output", str(unwritable)]) == 1
    assert f"error: {unwritable}: cannot write the export" in capsys.readouterr().err
