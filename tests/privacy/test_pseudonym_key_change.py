"""A recipient's pseudonym key file replaced between two starts changes every pseudonym it
receives: the start that finds it changed journals one `pseudonym_key_changed` event for that
recipient (its key's fingerprints before and now, never the key) and logs a warning; the first
start that sees a recipient records its key without an event, and an unchanged key says nothing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from edge.privacy.pseudonym import key_fingerprint
from tests.privacy.test_subject_rights import with_consumers
from tests.support.site import running_site


def changes(rt: Any) -> list[dict[str, Any]]:
    return [r["payload"] for r in rt.journal.read(0, 10_000) if r.get("kind") == "pseudonym_key_changed"]


@pytest.mark.parametrize("sealed", [True, False], ids=["master-key", "no-master-key"])
async def test_a_replaced_pseudonym_key_is_journaled_and_logged(
    tmp_path: Path, master: Path, caplog: pytest.LogCaptureFixture, sealed: bool
) -> None:
    config, keys = with_consumers(tmp_path, master)
    doc = config.read_text(encoding="utf-8")
    if not sealed:  # pseudonyms upstream without sealing at rest: the key's change is said too
        doc = doc.replace(f"privacy:\n  master_key_file: {master}\n", "")
        assert str(master) not in doc
    caplog.set_level(logging.WARNING, logger="edge.privacy")
    async with running_site(tmp_path, doc) as rt:  # the first start records the keys
        assert changes(rt) == []
    assert not [r for r in caplog.records if "pseudonym key changed" in r.getMessage()]

    new_key = b"n" * 48
    (tmp_path / "city.pskey").write_bytes(new_key)
    async with running_site(tmp_path, doc) as rt:
        await rt.journal.flush()
        (change,) = changes(rt)
        assert change == {
            "recipient": "consumer city",
            "previous_fingerprint": key_fingerprint(keys["city"]),
            "fingerprint": key_fingerprint(new_key),
        }
        assert new_key.decode() not in str(change) and keys["city"].decode() not in str(change)
    warned = [r.getMessage() for r in caplog.records if "pseudonym key changed" in r.getMessage()]
    assert len(warned) == 1 and "consumer city" in warned[0]

    async with running_site(tmp_path, doc) as rt:  # the same keys again: nothing more
        await rt.journal.flush()
        assert len(changes(rt)) == 1
