"""A restore onto a replacement box (no journal to replace) cannot know how far the lost box went
on after the backup: it is refused unless the operator names the highest seq the receivers hold
(`--continue-after`), and then new records continue above it and the next start journals a
`journal_restored` event naming the seqs skipped."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.fleet.test_restore_seq import Upstream, delivered, max_row, readings
from tests.support.cli import edge_cli
from tests.support.servers import serving
from tests.support.site import running_site, site_file


def box_doc(port: int) -> dict[str, Any]:
    return {
        "site": {"id": "newbox-site", "name": "n"},
        "upstream": [
            {
                "id": "central",
                "type": "http",
                "url": f"http://127.0.0.1:{port}/ingest",
                "batch": {"max_items": 200, "max_age": "50ms"},
                "retry": {"initial": "50ms", "max": "500ms"},
            }
        ],
    }


async def test_a_replacement_box_is_restored_only_above_the_seq_the_receiver_holds(tmp_path: Path) -> None:
    up = Upstream()
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    archive = tmp_path / "nightly.tar.gz"
    async with serving({"/ingest": up.ingest}) as port:
        doc = box_doc(port)
        old_config, new_config = site_file(old, doc), site_file(new, doc)
        async with running_site(old, doc) as rt:
            rt.hub.ingest(readings(1_000.0, 300))
            await delivered(rt)
            done = await asyncio.to_thread(edge_cli, "backup", "-c", str(old_config), "--out", str(archive))
            assert done.returncode == 0, done.stderr
            # the old box goes on after the backup, then is lost
            rt.hub.ingest(readings(2_000.0, 500, "meter.p1"))
            await delivered(rt)
        held = max(up.got)  # what the operator reads off the receiver, the old box's stop included
        at_backup = max_row(archive_journal(archive, tmp_path))

        done = await asyncio.to_thread(edge_cli, "restore", "-c", str(new_config), str(archive))
        assert done.returncode == 1
        assert "there is no journal to replace" in done.stderr
        assert f"edge restore -c {new_config} {archive} --continue-after SEQ" in done.stderr
        assert "Nothing was replaced" in done.stderr and not (new / "edge.db").exists()

        done = await asyncio.to_thread(
            edge_cli, "restore", "-c", str(new_config), str(archive), "--continue-after", str(held)
        )
        assert done.returncode == 0, done.stderr
        assert f"new records continue from seq {held + 1} (--continue-after {held})" in done.stdout
        async with running_site(new, doc) as rt:
            rt.hub.ingest(readings(3_000.0, 400, "meter.p2"))
            await delivered(rt)

    twice = {s: recs for s, recs in up.got.items() if len(set(recs)) > 1}
    assert not twice, f"seqs delivered with two contents: {sorted(twice)[:5]}"
    fresh = [s for s, recs in up.got.items() for r in recs if r[0] == "reading" and r[2] == "meter.p2"]
    assert len(fresh) == 400 and min(fresh) > held
    notes = up.events("journal_restored")
    assert len(notes) == 1, notes
    seq, payload = notes[0]
    assert seq == held + 1
    assert payload["first_seq"] == at_backup + 1 and payload["last_seq"] == held
    assert payload["continue_after"] == held and payload["kept_in"] is None


def archive_journal(archive: Path, tmp_path: Path) -> Path:
    """The journal inside a backup archive, extracted beside it."""
    import tarfile

    out = tmp_path / "archived"
    with tarfile.open(archive) as tar:
        tar.extract("journal.db", out, filter="data")
    return out / "journal.db"


def test_seq_must_be_a_whole_number(tmp_path: Path) -> None:
    config = site_file(tmp_path, {"site": {"id": "newbox-site", "name": "n"}})
    done = edge_cli("restore", "-c", str(config), str(tmp_path / "x.tar.gz"), "--continue-after", "-3")
    assert done.returncode == 2 and "'-3' is not a seq" in done.stderr
