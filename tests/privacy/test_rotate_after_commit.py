"""A rotation whose WAL checkpoint fails after its commit (an I/O error at the fsync of keys.db,
injected with strace) is done: keys.db opens with the new master key only. The command says it
was done, and warns about the WAL, instead of saying "nothing was changed"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge.privacy.keyfile import load_master_key
from edge.privacy.keys import opens_with
from tests.privacy.conftest import private_records, site_doc
from tests.support.cli import ROOT
from tests.support.site import running_site, site_file
from tests.support.tools import require_tool


async def test_a_checkpoint_failing_after_the_rotation_committed_is_a_warning(
    tmp_path: Path, master: Path
) -> None:
    strace = require_tool("strace", "apt-get install strace")
    async with running_site(tmp_path, site_doc(master), web=False) as rt:
        rt.hub.ingest(private_records())
        await rt.journal.flush()
    config = site_file(tmp_path, site_doc(master))
    keys, new = tmp_path / "keys.db", tmp_path / "master-2.key"

    # the commit fsyncs keys.db-wal; the first fsync of keys.db itself is the checkpoint's
    done = subprocess.run(  # noqa: ASYNC221 - the command under test, run to its end
        [
            strace,
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fsync,fdatasync",
            "-e",
            "inject=fsync,fdatasync:error=EIO:when=1",
            "-P",
            str(keys),
            sys.executable,
            "-m",
            "edge.cli",
            "privacy",
            "rotate-key",
            "-c",
            str(config),
            "--new-key",
            str(new),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout + done.stderr
    assert opens_with(keys, load_master_key(new)) and not opens_with(keys, load_master_key(master))
    assert done.returncode == 0, out
    assert "nothing was changed" not in out and "rewrapped" in done.stdout, out
    assert "WAL was not checkpointed" in done.stderr, out
