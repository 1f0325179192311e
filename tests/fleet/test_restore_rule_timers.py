"""A restore does not resume the rule timers of its archive as if no time had passed: a pending
`for:` and a `notify: repeat` alert's next repeat held on readings taken before the backup, and
their deadlines passed between the backup and the restore. They are dropped (the condition must
hold again on fresh readings), counted, and said by the restore and its `journal_restored` event.

Real `edge run`, `edge backup` and `edge restore` processes; the time between the backup and the
start after the restore is made with libfaketime (the second run's wall clock two hours ahead).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import yaml

from tests.rules.test_restart import _query, _stop
from tests.rules.test_timers_restart import (
    DEVICES,
    HIGH_FOR_AN_HOUR,
    SILENT_FOR_AN_HOUR,
    _commands,
    _start,
    needs_faketime,
)
from tests.support.cli import edge_cli
from tests.support.site import site_file
from tests.support.waiting import until_sync

STILL_HIGH = {
    "id": "still-high",
    "when": "tank.level",
    "if": "value > 50",
    "notify": "repeat",
    "every": "10m",
    "then": [{"alert": "tank still high {value}"}],
}


@needs_faketime
def test_a_pending_for_from_the_archive_does_not_fire_after_a_restore(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(yaml.safe_dump({"rules": [HIGH_FOR_AN_HOUR, STILL_HIGH, SILENT_FOR_AN_HOUR]}))
    config = site_file(tmp_path, {"devices": DEVICES, "rules": {"packs": [str(pack)]}})
    journal, state = tmp_path / "edge.db", tmp_path / "state.db"
    archive = tmp_path / "nightly.tar.gz"

    proc = _start(config)
    try:
        until_sync(
            lambda: (
                _query(state, "SELECT 1 FROM rule_state WHERE rule_id='high' AND phase='pending'")
                and _query(state, "SELECT 1 FROM rule_state WHERE rule_id='still-high' AND phase='active'")
            ),
            timeout=30,
            what="the `for:` pending and the repeating alert active, persisted",
        )
        done = edge_cli("backup", "-c", str(config), "--out", str(archive))  # beside the running gateway
        assert done.returncode == 0, done.stderr
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    fired = len(_query(journal, "SELECT 1 FROM journal WHERE kind='alert'"))
    assert fired == 1 and _commands(journal) == []  # the repeating rule's first firing only

    done = edge_cli("restore", "-c", str(config), str(archive))
    assert done.returncode == 0, done.stderr
    assert "2 rule timers of the backup were dropped" in done.stdout, done.stdout
    assert "high, still-high" in done.stdout
    assert "must hold again on fresh readings" in done.stdout
    assert "the `no_data` watches of 1 rule (silent) count from the next start" in done.stdout
    restored_top = int(_query(journal, "SELECT max(seq) FROM journal")[0][0])

    proc = _start(config, ahead="+2h")  # both deadlines passed long ago
    try:
        # the condition holds on the restarted device's readings: `high` pending again, from them
        until_sync(
            lambda: _pending_again(journal, state, restored_top),
            timeout=30,
            what="`high` pending again on a fresh reading, or a firing",
        )
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)

    # the repeating rule fired anew on a fresh reading (its condition held again); `high` did not
    after = _query(journal, f"SELECT payload FROM journal WHERE kind='alert' AND seq > {restored_top}")
    assert [json.loads(p)["rule"] for (p,) in after] in ([], ["still-high"]), after
    assert all(not json.loads(p).get("repeat") for (p,) in after)
    assert _commands(journal) == []
    (event,) = _query(
        journal, f"SELECT payload FROM journal WHERE kind='journal_restored' AND seq > {restored_top}"
    )
    said = json.loads(event[0])
    assert said["rule_timers_dropped"] == 2 and said["rule_no_data_restarted"] == 1


def _pending_again(journal: Path, state: Path, after: int) -> bool:
    """`high` pending since a reading of this run, or any alert of this run (the failure)."""
    if _query(
        journal, f"SELECT 1 FROM journal WHERE kind='alert' AND seq > {after} AND payload LIKE '%\"high\"%'"
    ):
        return True
    started = _query(journal, f"SELECT min(ts) FROM journal WHERE kind='gateway_started' AND seq > {after}")
    if not started or started[0][0] is None:
        return False
    return bool(
        _query(
            state,
            f"SELECT 1 FROM rule_state WHERE rule_id='high' AND phase='pending' AND since >= {started[0][0]}",
        )
    )
