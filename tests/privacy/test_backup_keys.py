"""`edge backup` leaves the subject keys out, so `edge privacy forget` reaches backups taken
before it: restoring such a backup on the gateway brings the records back, the forgotten
resident's still erased and everyone else's readable."""

from __future__ import annotations

import tarfile
from pathlib import Path

from tests.privacy.conftest import RESIDENT, SYSTOLIC, measurement, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file

OTHER = "R-55120"  # a resident who is not forgotten


async def test_a_backup_taken_before_forget_restores_the_resident_erased(
    tmp_path: Path, master: Path
) -> None:
    config = site_file(tmp_path, site_doc(master))
    doc = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, doc) as rt:
        rt.hub.ingest([measurement(), measurement(resident=OTHER, systolic=128)])
        await rt.journal.flush()
    archive = tmp_path / "backup.tar.gz"
    done = edge_cli("backup", "-c", str(config), "--out", str(archive))
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert not [n for n in names if "keys" in n or n.endswith(".key")], names

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", RESIDENT)
    assert done.returncode == 0, done.stderr
    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr

    async with running_site(tmp_path, doc) as rt:
        bps = [r["payload"] for r in rt.journal.read(0, 1000) if r.get("kind") == "blood_pressure"]
    assert {"erased": True} in bps
    assert {"resident": OTHER, "systolic_mmhg": 128, "diastolic_mmhg": 71} in bps
    assert all(p.get("systolic_mmhg") != SYSTOLIC for p in bps)
