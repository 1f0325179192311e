"""The site's keys as the commands and the gateway use them: keys.db missing while only the dead
letters hold sealed data is refused, not created empty; `edge check` (the unit's ExecStartPre)
finds a master key that does not open keys.db; a rotate-key run again after its rotation committed
says it was done; `edge backup --out` is refused keys.db's WAL; and a forget through the API is
audited by the erasure itself, once, even when it fails after the key's deletion."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest

from edge import audit
from edge.privacy import subjects
from edge.privacy.atrest import sealed_data
from edge.privacy.component import PrivacyStartError
from edge.privacy.keyfile import create_master_key
from edge.runtime import Runtime
from edge.sync import deadletters
from tests.privacy.conftest import RESIDENT, measurement, private_records, sealed_site_text, site_doc
from tests.support.cli import edge_cli
from tests.support.site import load, running_site, site_file
from tests.support.waiting import until_async
from tests.web.conftest import signed_in_admin

FORGET = "/api/v1/privacy/subjects/forget"

# a site whose journal holds nothing sealed: its one point is public
PUBLIC_SITE = sealed_site_text(
    "dead-letter-keys",
    """
  - id: meter-1
    driver: sim
    points:
      - {name: kw, signal: constant, value: 1.0, interval: 1h}
""",
)


def dead_letter(seq: int) -> dict[str, object]:
    """A resident's measurement as a sink sent it, in the pull-API shape."""
    return {
        "seq": seq,
        "ts": time.time(),
        "type": "event",
        "kind": "blood_pressure",
        "source": "kiosk-1",
        "severity": "info",
        "payload": {"resident": RESIDENT, "systolic_mmhg": 131, "diastolic_mmhg": 80},
    }


async def sealed_site(tmp_path: Path, master: Path) -> Path:
    async with running_site(tmp_path, site_doc(master), web=False) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    return site_file(tmp_path, site_doc(master))


def without_keys_db(folder: Path) -> Path:
    keys = folder / "keys.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{keys}{suffix}").unlink(missing_ok=True)
    return keys


async def test_keys_db_missing_while_only_dead_letters_are_sealed_is_refused(
    tmp_path: Path, master: Path
) -> None:
    doc = PUBLIC_SITE.replace("MASTER", str(master))
    async with running_site(tmp_path, doc, web=False) as rt:
        assert rt.state is not None
        deadletters.ensure(rt.state)
        deadletters.add(rt.state, "central", 1, dead_letter(1), 400, "refused", 2)
    journal, state = tmp_path / "edge.db", tmp_path / "state.db"
    assert sealed_data(journal) is None and sealed_data(journal, state) is not None
    keys = without_keys_db(tmp_path)
    config = site_file(tmp_path, doc)

    for command in (["export", "--subject", RESIDENT], ["forget", "--subject", RESIDENT]):
        done = edge_cli("privacy", *command, "-c", str(config))
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert "missing or empty" in out and "sealed dead letters" in out and "Traceback" not in out, out
        assert not keys.exists()  # no empty key store in its place

    checked = edge_cli("check", "-c", str(config))
    assert checked.returncode != 0 and "sealed dead letters" in checked.stdout + checked.stderr

    rt = Runtime(load(tmp_path, doc), with_web=False)
    try:
        with pytest.raises(PrivacyStartError) as err:
            await rt.start()
    finally:
        await rt.stop()
    assert "sealed dead letters" in str(err.value)
    assert not keys.exists()


async def test_edge_check_finds_a_master_key_that_does_not_open_keys_db(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    assert edge_cli("check", "-c", str(config)).returncode == 0

    other = tmp_path / "other.key"
    create_master_key(other)
    config = site_file(tmp_path, site_doc(other))
    checked = edge_cli("check", "-c", str(config))
    out = checked.stdout + checked.stderr
    assert checked.returncode != 0, out
    assert "privacy.master_key_file" in out and "does not open the key store" in out, out


async def test_rotate_key_run_again_after_its_rotation_says_it_was_done(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    new = tmp_path / "master-2.key"
    rotate = ("privacy", "rotate-key", "-c", str(config), "--new-key", str(new))
    done = edge_cli(*rotate)
    assert done.returncode == 0, done.stderr

    again = edge_cli(*rotate)  # the site file still names the old key
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already rotated" in again.stdout and f"privacy.master_key_file: {new}" in again.stdout

    unrelated = tmp_path / "master-3.key"
    create_master_key(unrelated)
    other = edge_cli("privacy", "rotate-key", "-c", str(config), "--new-key", str(unrelated))
    assert other.returncode == 1 and "does not open" in other.stderr, other.stdout + other.stderr


async def test_edge_backup_refuses_to_write_over_keys_db_s_side_files(tmp_path: Path, master: Path) -> None:
    config = await sealed_site(tmp_path, master)
    for name in ("keys.db-wal", "keys.db-forget-lock"):
        out = tmp_path / name
        before = out.read_bytes() if out.exists() else None
        done = edge_cli("backup", "-c", str(config), "--out", str(out))
        assert done.returncode != 0, done.stdout
        assert f"the data keys' file {tmp_path / name}" in done.stderr, done.stderr
        assert (out.read_bytes() if out.exists() else None) == before


def forget_entries(rt: Runtime) -> list[dict[str, object]]:
    assert rt.state is not None
    return [e for e in audit.entries(rt.state, limit=200) if e["action"] == "privacy_forget"]


async def notices(rt: Runtime) -> int:
    await rt.journal.flush()
    return sum(1 for r in rt.journal.read(0, 1000) if r.get("kind") == "subject_erased")


async def test_an_api_forget_is_audited_once_by_the_erasure(tmp_path: Path, master: Path) -> None:
    async with running_site(tmp_path, site_doc(master)) as rt, signed_in_admin(rt, "boss") as admin:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
        done = await admin.json("POST", FORGET, {"subject": RESIDENT})
        assert done["had_key"] is True

        async def noticed() -> bool:
            return await notices(rt) >= 1

        await until_async(noticed, timeout=15, what="the subject_erased notice")
        [entry] = forget_entries(rt)
        assert entry["actor"] == "boss" and entry["target"] == done["subject"]
        detail = entry["detail"]
        assert isinstance(detail, dict)
        # the erasure's own entry, as `edge privacy forget` writes it, with the caller's kind
        assert detail["kind"] == "user" and "snapshots_removed" in detail
        assert await notices(rt) == 1
        assert RESIDENT not in orjson.dumps(forget_entries(rt)).decode()


async def test_an_api_forget_failing_after_the_key_went_is_still_audited(
    tmp_path: Path, master: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def snapshots_fail(*_: object) -> int:
        raise OSError(5, "Input/output error", "blobs")

    async with running_site(tmp_path, site_doc(master)) as rt, signed_in_admin(rt, "boss") as admin:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
        monkeypatch.setattr(subjects, "remove_forgotten_snapshots", snapshots_fail)
        resp = await admin.request("POST", FORGET, json={"subject": RESIDENT})
        assert resp.status == 500
        assert "data key of subject" in (await resp.json())["detail"]
        monkeypatch.undo()

        async def settled() -> bool:
            return await notices(rt) >= 1 and len(forget_entries(rt)) >= 1

        await until_async(settled, timeout=15, what="the interrupted erasure settled")
        [entry] = forget_entries(rt)
        assert entry["actor"] == "boss"
        assert await notices(rt) == 1
