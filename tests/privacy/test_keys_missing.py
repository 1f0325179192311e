"""keys.db missing, empty or removed from under a running gateway, while the journal holds records
sealed under its keys: nothing creates a new key store in its place (a forget on it would delete
nothing, and everything sealed from then on would go under keys that open none of the old
records), and a running gateway stops sealing under a file that is gone, holding its records
and saying so in /healthz."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiohttp
import pytest

from edge.privacy.component import PrivacyStartError
from edge.runtime import Runtime
from tests.privacy.conftest import RESIDENT, SYSTOLIC, measurement, private_records, site_doc
from tests.support.cli import edge_cli
from tests.support.site import load, running_site, site_file
from tests.support.waiting import until


async def sealed_site(tmp_path: Path, master: Path) -> Path:
    """A site that ran and sealed a resident's measurement; returns its site file."""
    async with running_site(tmp_path, site_doc(master), web=False) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    return site_file(tmp_path, site_doc(master))


async def test_export_and_forget_refuse_while_keys_db_is_missing_and_create_nothing(
    tmp_path: Path, master: Path
) -> None:
    config = await sealed_site(tmp_path, master)
    keys = tmp_path / "keys.db"
    aside = tmp_path / "keys.db.aside"
    keys.rename(aside)

    for command in (["export", "--out", str(tmp_path / "x.jsonl")], ["forget"]):
        done = edge_cli("privacy", *command, "-c", str(config), "--subject", RESIDENT)
        out = done.stdout + done.stderr
        assert done.returncode == 1, out
        assert str(keys) in out and "missing or empty" in out and "Traceback" not in out, out
        assert not keys.exists()  # no new key store in its place

    aside.rename(keys)  # put back: the resident was never forgotten, and opens
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    assert str(SYSTOLIC) in done.stdout


async def test_a_start_on_an_empty_keys_db_is_refused_naming_it(tmp_path: Path, master: Path) -> None:
    from edge.privacy.atrest import check_key_store
    from edge.privacy.keys import KeyStoreUnusable

    await sealed_site(tmp_path, master)
    keys = tmp_path / "keys.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{keys}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240 - the site is stopped
    keys.touch(mode=0o600)  # 0 bytes: SQLite would take it for a new database

    rt = Runtime(load(tmp_path, site_doc(master)), with_web=False)
    try:
        with pytest.raises(PrivacyStartError) as err:
            await rt.start()
    finally:
        await rt.stop()
    assert str(keys) in str(err.value) and "edge.db holds sealed records" in str(err.value)
    assert keys.stat().st_size == 0
    with pytest.raises(KeyStoreUnusable):
        check_key_store(tmp_path / "edge.db")


async def test_a_first_start_creates_the_key_store(tmp_path: Path, master: Path) -> None:
    """Nothing sealed yet (a site that never ran, or ran without a master key): the key store is
    created, as before."""
    from edge.privacy.atrest import check_key_store, sealed_data

    async with running_site(tmp_path, {"site": {"id": "plain"}}, web=False) as rt:
        rt.hub.ingest([measurement()])  # stored in clear: no master key
        await rt.journal.flush()
    assert sealed_data(tmp_path / "edge.db") is None
    check_key_store(tmp_path / "edge.db")
    async with running_site(tmp_path, site_doc(master), web=False):
        pass
    assert (tmp_path / "keys.db").stat().st_size > 0
    assert sealed_data(tmp_path / "edge.db") is not None  # sealed at that start


async def test_keys_db_removed_under_a_running_gateway_stops_sealing_and_fails_healthz(
    tmp_path: Path, master: Path
) -> None:
    async with running_site(tmp_path, site_doc(master)) as rt:
        rt.hub.ingest(private_records())
        committed = await rt.journal.flush()
        keys = tmp_path / "keys.db"
        kept = tmp_path / "kept"
        kept.mkdir()
        for suffix in ("", "-wal", "-shm"):  # removed as a careless clean-up would
            if Path(f"{keys}{suffix}").exists():  # noqa: ASYNC240 - three stats, in a test
                shutil.move(f"{keys}{suffix}", kept)

        rt.hub.ingest([measurement(resident="R-new-after-removal")])
        await until(lambda: rt.journal.writer_problem, timeout=10, what="the journal to stop committing")
        assert str(keys) in str(rt.journal.writer_problem)
        assert rt.journal.committed_seq == committed  # nothing went in under the vanished keys
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{rt.web_port}/healthz") as r:
            body = await r.json()
        assert r.status == 503 and body["status"] == "failing" and "keys.db" in body["reason"]

        for name in kept.iterdir():  # put back in place: sealing goes on
            shutil.move(name, tmp_path)
        await until(lambda: rt.journal.committed_seq > committed, timeout=10, what="commits again")
        assert rt.journal.writer_problem is None
