"""`edge privacy forget` interrupted at any point leaves either nothing done or the erasure audited
and notified: killed after the key's deletion (at its journal scan), the gateway's next start
audits it and journals the subject_erased notice; killed before, the key and the records stay and
nothing is audited or notified; an I/O error after the deletion committed is not reported as
"nothing was changed"."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from edge import audit
from edge.state import StateDB
from tests.privacy.conftest import RESIDENT, measurement, site_doc
from tests.support.cli import ROOT, edge_cli
from tests.support.site import running_site, site_file

# `edge` in a process of its own, with one fault put in first (a statement run before main)
FAULTY_EDGE = """
import os, signal, sqlite3, sys
from edge.privacy import subjects
from edge.privacy.keys import SubjectKeys
{fault}
from edge.cli import main
sys.exit(main(sys.argv[1:]))
"""
KILL = "os.kill(os.getpid(), signal.SIGKILL)"
# at the journal scan that follows the key's deletion
KILLED_AT_SCAN = f"subjects.count_in_clear = lambda *a, **k: {KILL}"
# in the key's deletion, before it commits
KILLED_BEFORE_DELETE = f"SubjectKeys.forget = lambda self, subject: {KILL}"
# the disk fails after the deletion committed (the WAL's truncation) and again at the close
IO_ERROR_AFTER_COMMIT = """
def _fail(self):
    raise sqlite3.OperationalError("disk I/O error")
SubjectKeys._truncate_wal = _fail
"""
IO_ERROR_AT_SCAN = """
def _fail(*a, **k):
    raise sqlite3.OperationalError("disk I/O error")
subjects.count_in_clear = _fail
"""


def forget_args(config: Path) -> list[str]:
    return ["privacy", "forget", "-c", str(config), "--subject", RESIDENT]


def faulty_forget(config: Path, fault: str) -> subprocess.CompletedProcess[str]:
    return faulty_edge(fault, *forget_args(config))


def faulty_edge(fault: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", FAULTY_EDGE.format(fault=fault), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def sealed_site(tmp_path: Path, master: Path) -> Path:
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, site_text(config), web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    return config


def forgets(tmp_path: Path) -> list[dict[str, Any]]:
    """The privacy_forget audit entries' details, oldest first."""
    state = StateDB(str(tmp_path / "state.db"))
    try:
        return [e["detail"] for e in reversed(audit.entries(state)) if e["action"] == "privacy_forget"]
    finally:
        state.close()


def site_text(config: Path) -> str:
    return config.read_text(encoding="utf-8")


async def journaled(tmp_path: Path, config: Path) -> tuple[list[Any], list[Any]]:
    """(subject_erased notices, blood-pressure payloads) the journal holds after a gateway start."""
    async with running_site(tmp_path, site_text(config), web=False) as rt:
        await rt.journal.flush()
        records = rt.journal.read(0, 1000)
    notices = [r["payload"] for r in records if r.get("kind") == "subject_erased"]
    return notices, [r["payload"] for r in records if r.get("kind") == "blood_pressure"]


async def test_killed_after_the_keys_deletion_the_next_start_audits_and_notifies(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    done = faulty_forget(config, KILLED_AT_SCAN)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert forgets(tmp_path) == []  # not audited yet: the command died

    notices, payloads = await journaled(tmp_path, config)
    assert payloads == [{"erased": True}]
    assert len(notices) == 1 and notices[0]["subject"].startswith("ps_")
    [entry] = forgets(tmp_path)
    assert entry["had_key"] is True and entry["interrupted"] is True
    assert RESIDENT not in str(entry) and RESIDENT not in str(notices)

    # a re-run finds no key, and says so after the audited erasure
    again = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert again.returncode == 0, again.stderr
    assert [e["had_key"] for e in forgets(tmp_path)] == [True, False]


async def test_a_re_run_after_the_kill_settles_the_interrupted_erasure_first(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    assert faulty_forget(config, KILLED_AT_SCAN).returncode == -signal.SIGKILL
    again = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert again.returncode == 0, again.stderr
    assert [(e["had_key"], e.get("interrupted")) for e in forgets(tmp_path)] == [(True, True), (False, None)]
    notices, _ = await journaled(tmp_path, config)
    assert len(notices) == 2


async def test_killed_before_the_keys_deletion_nothing_is_done(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    done = faulty_forget(config, KILLED_BEFORE_DELETE)
    assert done.returncode == -signal.SIGKILL, done.stderr

    notices, payloads = await journaled(tmp_path, config)
    assert notices == [] and forgets(tmp_path) == []
    assert [p["resident"] for p in payloads] == [RESIDENT]  # still opens

    # the re-run erases it, once
    again = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert again.returncode == 0, again.stderr
    assert [e["had_key"] for e in forgets(tmp_path)] == [True]
    notices, payloads = await journaled(tmp_path, config)
    assert len(notices) == 1 and payloads == [{"erased": True}]


async def test_an_io_error_after_the_deletion_committed_is_not_nothing_changed(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    done = faulty_forget(config, IO_ERROR_AFTER_COMMIT)
    assert done.returncode == 0, done.stderr
    assert "data key deleted" in done.stdout
    assert "nothing was changed" not in done.stderr and "WAL was not truncated" in done.stderr
    assert [e["had_key"] for e in forgets(tmp_path)] == [True]
    notices, payloads = await journaled(tmp_path, config)
    assert len(notices) == 1 and payloads == [{"erased": True}]


async def test_an_io_error_after_the_deletion_says_the_key_is_deleted(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    done = faulty_forget(config, IO_ERROR_AT_SCAN)
    assert done.returncode == 1
    assert "nothing was changed" not in done.stderr
    assert "is deleted" in done.stderr and RESIDENT not in done.stderr, done.stderr

    notices, payloads = await journaled(tmp_path, config)
    assert len(notices) == 1 and payloads == [{"erased": True}]
    assert [(e["had_key"], e["interrupted"]) for e in forgets(tmp_path)] == [(True, True)]


async def test_a_lock_file_that_cannot_be_opened_holds_back_only_the_interrupted_erasure(
    tmp_path: Path, master: Path
) -> None:
    other = "R-20333"
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, site_text(config), web=False) as rt:
        rt.hub.ingest([measurement(), measurement(resident=other, systolic=131)])
        await rt.journal.flush()
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", other)
    assert done.returncode == 0, done.stderr
    assert faulty_forget(config, KILLED_AT_SCAN).returncode == -signal.SIGKILL
    lock = tmp_path / "keys.db-forget-lock"
    lock.unlink()
    lock.mkdir()  # cannot be opened as the lock

    notices, payloads = await journaled(tmp_path, config)
    assert len(notices) == 1  # the settled erasure; the gateway started all the same
    assert payloads == [{"erased": True}, {"erased": True}]
    assert [e["had_key"] for e in forgets(tmp_path)] == [True]


async def test_a_rotation_whose_commit_went_through_is_not_nothing_changed(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    new = tmp_path / "master-2.key"
    rotate = ("privacy", "rotate-key", "-c", str(config), "--new-key", str(new))
    done = faulty_edge(IO_ERROR_AFTER_COMMIT, *rotate)
    assert done.returncode == 0, done.stderr
    assert "nothing was changed" not in done.stderr and "rewrapped" in done.stdout
    rotated = site_file(tmp_path, site_doc(new))
    copy = tmp_path / "copy.jsonl"
    done = edge_cli("privacy", "export", "-c", str(rotated), "--subject", RESIDENT, "--out", str(copy))
    assert done.returncode == 0, done.stderr
    assert RESIDENT in site_text(copy)
