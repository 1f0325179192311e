"""`edge privacy export --out FILE` never writes over one of the site's own files (the keys, the
journal, the site file, the master key, a link to one of them), refuses an existing file unless
--force, and always leaves a file readable by its owner only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.privacy.conftest import RESIDENT, measurement, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file


@pytest.fixture
async def ran(tmp_path: Path, master: Path) -> Path:
    """The site file of a site that journaled one sealed measurement of RESIDENT."""
    config = site_file(tmp_path, site_doc(master))
    async with running_site(tmp_path, config.read_text(encoding="utf-8"), web=False) as rt:
        rt.hub.ingest([measurement()])
        await rt.journal.flush()
    return config


def export(config: Path, out: Path, *more: str) -> tuple[int, str]:
    done = edge_cli("privacy", "export", "-c", str(config), "--subject", RESIDENT, "--out", str(out), *more)
    return done.returncode, done.stderr


def contents(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def parts_left(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def kinds(path: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(
    "target", ["keys.db", "keys.db-wal", "edge.db", "state.db", "site.yaml", "master.key", "link"]
)
async def test_the_sites_own_files_are_refused_even_with_force(
    ran: Path, tmp_path: Path, target: str
) -> None:
    if target == "link":
        (tmp_path / "link").symlink_to(tmp_path / "keys.db")
    path = tmp_path / target
    before = contents(path)
    for more in ((), ("--force",)):
        rc, err = export(ran, path, *more)
        assert rc == 1
        assert "that is" in err and "nothing was written" in err, err
        assert contents(path) == before
    # the keys still open the sealed record
    out = tmp_path / "copy.jsonl"
    rc, err = export(ran, out)
    assert rc == 0, err
    assert kinds(out) == ["blood_pressure"]


async def test_an_existing_file_is_refused_unless_force_and_then_replaced_0600(
    ran: Path, tmp_path: Path
) -> None:
    out = tmp_path / "copy.jsonl"
    out.write_text("kept\n", encoding="utf-8")
    out.chmod(0o644)
    rc, err = export(ran, out)
    assert rc == 1
    assert "exists" in err and "--force" in err, err
    assert out.read_text(encoding="utf-8") == "kept\n"

    rc, err = export(ran, out, "--force")
    assert rc == 0, err
    assert kinds(out) == ["blood_pressure"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert parts_left(tmp_path) == []


async def test_a_new_file_is_created_0600(ran: Path, tmp_path: Path) -> None:
    out = tmp_path / "new.jsonl"
    rc, err = export(ran, out)
    assert rc == 0, err
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert kinds(out) == ["blood_pressure"]
