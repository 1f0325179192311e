"""Rule timers that fall due while the gateway is stopped, seen through real `edge run` processes.

A `for:` or `no_data` deadline that passed during a restart fires at the start, when the rules
start, before the drivers do: its `write:` waits for the device's first start instead of failing
as "device is not running" (and the rule, active by then, never sending it again).

The time the gateway is stopped is made with libfaketime: the second run's wall clock is two
hours ahead, past a one-hour deadline, and the test waits for nothing but the records.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.rules.test_restart import ROOT, _query, _stop
from tests.support.site import site_file
from tests.support.waiting import until_sync

FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
needs_faketime = pytest.mark.skipif(not FAKETIME.exists(), reason="libfaketime is not installed")

DEVICES = [
    {
        "id": "tank",
        "driver": "sim",
        "points": [{"name": "level", "signal": "constant", "value": 80, "interval": "200ms"}],
    },
    {
        "id": "pump",
        "driver": "sim",
        "points": [{"name": "speed", "type": "int", "writable": True, "value": 0, "interval": "3600s"}],
    },
]
# pending for an hour in the first run; due when the second run starts two hours later
HIGH_FOR_AN_HOUR = {
    "id": "high",
    "when": "tank.level",
    "if": "value > 50",
    "for": "1h",
    "then": [{"alert": "tank high {value}"}, {"write": {"point": "pump.speed", "expr": "int(value)"}}],
}
SILENT_FOR_AN_HOUR = {
    "id": "silent",
    "when": [{"no_data": "tank.level", "for": "1h"}],
    "then": [{"alert": "tank silent"}, {"write": {"point": "pump.speed", "value": 7}}],
}


def _start(config: Path, ahead: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if ahead is not None:  # the wall clock only: intervals and timeouts keep the real monotonic clock
        env.update(LD_PRELOAD=str(FAKETIME), FAKETIME=ahead, FAKETIME_DONT_FAKE_MONOTONIC="1")
    return subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "-c", str(config)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _commands(journal: Path) -> list[dict[str, Any]]:
    rows = _query(journal, "SELECT payload FROM journal WHERE kind='command' ORDER BY seq")
    return [json.loads(r[0]) for r in rows]


@needs_faketime
@pytest.mark.parametrize(
    ("rule", "written"), [(HIGH_FOR_AN_HOUR, 80), (SILENT_FOR_AN_HOUR, 7)], ids=["for", "no_data"]
)
def test_a_deadline_passed_during_a_restart_writes_once_the_device_runs(
    tmp_path: Path, rule: dict[str, Any], written: int
) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(yaml.safe_dump({"rules": [rule]}))
    config = site_file(tmp_path, {"devices": DEVICES, "rules": {"packs": [str(pack)]}})
    journal, state = tmp_path / "edge.db", tmp_path / "state.db"

    proc = _start(config)
    try:
        if rule is HIGH_FOR_AN_HOUR:
            until_sync(
                lambda: _query(state, "SELECT 1 FROM rule_state WHERE rule_id='high' AND phase='pending'"),
                timeout=30,
                what="the `for:` pending, persisted",
            )
        else:
            until_sync(
                lambda: _query(journal, "SELECT 1 FROM journal WHERE point='tank.level' AND kind IS NULL"),
                timeout=30,
                what="a reading of tank.level journaled",
            )
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    assert _query(journal, "SELECT 1 FROM journal WHERE kind='alert'") == []
    assert _commands(journal) == []

    proc = _start(config, ahead="+2h")
    try:
        commands = until_sync(lambda: _commands(journal), timeout=30, what="the rule's write journaled")
        assert [(c["point"], c["value"], c["status"], c["reason"]) for c in commands] == [
            ("pump.speed", written, "ok", "")
        ]
        until_sync(
            lambda: _query(journal, f"SELECT 1 FROM journal WHERE point='pump.speed' AND value={written}"),
            timeout=30,
            what="the written value read back from the device",
        )
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)

    assert len(_commands(journal)) == 1
    assert _query(journal, "SELECT 1 FROM journal WHERE kind='rule_action_failed'") == []
    assert len(_query(journal, "SELECT 1 FROM journal WHERE kind='alert'")) == 1


@needs_faketime
def test_repeats_missed_while_stopped_run_once(tmp_path: Path) -> None:
    """`notify: repeat` every 10 min, stopped for two hours with the value high: one repeat at
    the start, not the twelve the stop went over."""
    rule = {
        "id": "rep",
        "when": "tank.level",
        "if": "value > 50",
        "notify": "repeat",
        "every": "10m",
        "then": [{"alert": "tank still high {value}"}],
    }
    pack = tmp_path / "pack.yaml"
    pack.write_text(yaml.safe_dump({"rules": [rule]}))
    config = site_file(tmp_path, {"devices": DEVICES, "rules": {"packs": [str(pack)]}})
    journal, state = tmp_path / "edge.db", tmp_path / "state.db"

    def alerts() -> list[tuple[int]]:
        return _query(journal, "SELECT seq FROM journal WHERE kind='alert' ORDER BY seq")

    proc = _start(config)
    try:
        until_sync(
            lambda: _query(state, "SELECT 1 FROM rule_state WHERE rule_id='rep' AND phase='active'"),
            timeout=30,
            what="the rule active, persisted",
        )
        until_sync(alerts, timeout=30, what="its alert journaled")
        _stop(proc, signal.SIGTERM)
    finally:
        _stop(proc, signal.SIGKILL)
    assert len(alerts()) == 1

    proc = _start(config, ahead="+2h")
    try:
        until_sync(lambda: len(alerts()) > 1, timeout=30, what="the repeat at the start")
        # the drivers start after the rules' start-up run: their readings come after its alerts
        after = alerts()[1][0]
        until_sync(
            lambda: _query(journal, f"SELECT 1 FROM journal WHERE point='tank.level' AND seq > {after}"),
            timeout=30,
            what="a reading after the start",
        )
        _stop(proc, signal.SIGTERM)  # actions under way finish before it exits
    finally:
        _stop(proc, signal.SIGKILL)
    assert len(alerts()) == 2


async def test_a_write_to_a_device_that_never_starts_fails_within_its_timeout() -> None:
    from edge.hub import Hub
    from edge.model import PointInfo, PointType

    hub = Hub()
    hub.register_points([PointInfo("pump.speed", "pump", "speed", type=PointType.INT, writable=True)])
    hub.expect_writer("pump")
    result = await hub.write("pump.speed", 3, source="test", timeout=0.2)
    assert (result.status, result.reason) == ("failed", "device did not start within 0.2s")
    # a bad value is refused at once, waiting for nothing
    refused = await hub.write("pump.speed", "x", source="test", timeout=60)
    assert refused.status == "rejected" and "not a valid int" in refused.reason
