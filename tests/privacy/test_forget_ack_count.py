"""An alert acknowledgement stored in clear (the site had no master key yet) names its user in the
state DB until a start with the key seals it. A forget run before that start does not reach it:
it is counted with the records kept in clear (`kept_in_clear`), not passed over."""

from __future__ import annotations

import re
from pathlib import Path

from edge.privacy.keyfile import create_master_key
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.web.test_ack_sealed import acknowledged, site_doc, stored_rows


async def test_a_forget_before_the_key_seals_the_acks_counts_them_as_kept_in_clear(tmp_path: Path) -> None:
    async with running_site(tmp_path, site_doc(None)) as rt:
        await acknowledged(rt)
        assert stored_rows(rt) == [("boss", stored_rows(rt)[0][1], None)]
        # what the journal holds in clear about boss: the alert_ack event
        await rt.journal.flush()
        in_journal = [
            r
            for r in rt.journal.read(0, 10_000)
            if r.get("type") == "event" and (r.get("payload") or {}).get("user") == "boss"
        ]
    assert [r["kind"] for r in in_journal] == ["alert_ack"]

    master = tmp_path / "master.key"
    create_master_key(master)
    config = site_file(tmp_path, site_doc(master))
    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", "boss")
    assert done.returncode == 0, done.stderr
    kept = re.search(r"; (\d+) records? names? it outside its key", done.stdout)
    assert kept is not None, done.stdout
    assert int(kept.group(1)) == len(in_journal) + 1  # the journal's alert_ack and the clear ack row
