"""`edge kpi rebuild|show|export` as real processes on the files a gateway left: a past day
folded again from the journal equals what the live fold stored; a day the journal no longer
holds, a day not over and a malformed day are refused and change nothing."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

from edge.kpi.days import Days
from edge.kpi.engine import new_day
from edge.kpi.store import KpiStore
from edge.runtime import Runtime
from edge.state import StateDB
from tests.support.cli import edge_cli
from tests.support.site import load, site_file
from tests.support.waiting import until

SITE = {
    "site": {"id": "kpi-cli", "name": "KPI", "timezone": "Asia/Shanghai"},
    "kpi": {"interval": "100ms"},
    "devices": [
        {
            "id": "a",
            "driver": "sim",
            "points": [{"name": "p", "signal": "random", "interval": "50ms"}],
            "faults": [{"type": "dropout", "every": "1h", "duration": "300ms", "first_after": "300ms"}],
        }
    ],
}


def noon_days_ago(n: int) -> float:
    """The offset that puts a test clock at the site's noon `n` days ago: every scripted time of
    the test falls on one day, whenever the suite runs (a run near a Shanghai midnight split a
    test's alert and its acknowledgement across two days)."""
    days = Days("Asia/Shanghai")
    day = (dt.date.fromisoformat(days.day_of(time.time())) - dt.timedelta(days=n)).isoformat()
    start, _end = days.bounds_of(day)
    return start + 12 * 3600 - time.time()


async def test_rebuild_a_past_day_from_the_journal(tmp_path: Path) -> None:
    offset = noon_days_ago(2)  # the gateway ran two days ago

    def clock() -> float:
        return time.time() + offset

    site = load(tmp_path, SITE)
    config = site_file(tmp_path, SITE)
    days = Days("Asia/Shanghai")
    rt = Runtime(site, clock=clock, with_web=False)
    await rt.start()
    day = days.day_of(clock())
    try:
        until_ts = clock() + 1.5
        await until(lambda: clock() >= until_ts, timeout=10, interval=0.05)
    finally:
        await rt.stop()

    state = StateDB(site.storage.resolved_state_path())
    try:
        store = KpiStore(state)
        found = store.day(day)
        assert found is not None
        live = found[0]
        assert live["dev"]["a"]["down"] > 0.2  # the dropout was seen
        store.replace_day(day, new_day(), None)  # lost: the rebuild must bring it back
    finally:
        state.close()

    done = edge_cli("kpi", "rebuild", "--day", day, "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert f"{day}: rebuilt" in done.stdout
    state = StateDB(site.storage.resolved_state_path())
    try:
        found = KpiStore(state).day(day)
        assert found is not None
        rebuilt = found[0]
    finally:
        state.close()
    start, end = days.bounds_of(day)
    with sqlite3.connect(site.storage.path) as conn:
        held = conn.execute("SELECT count(*) FROM journal WHERE ts >= ? AND ts < ?", (start, end)).fetchone()[
            0
        ]
    assert rebuilt["rec"][0] == held  # every record of the day, once
    assert rebuilt["pts"]["a.p"][:2] == live["pts"]["a.p"][:2]
    assert abs(rebuilt["dev"]["a"]["up"] - live["dev"]["a"]["up"]) < 0.5
    # what was down stays down, and the gateway's stop counts as down until the day's end
    assert rebuilt["dev"]["a"]["down"] >= live["dev"]["a"]["down"] - 0.5
    assert rebuilt["gw"]["stops"] == 1 and rebuilt["gw"]["down"] > 0

    before = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    refused = edge_cli("kpi", "rebuild", "--day", before, "-c", str(config))
    assert refused.returncode == 1 and f"holds no record of {before}" in refused.stderr
    today = days.day_of(time.time())
    refused = edge_cli("kpi", "rebuild", "--day", today, "-c", str(config))
    assert refused.returncode == 1 and "not over yet" in refused.stderr
    refused = edge_cli("kpi", "rebuild", "--day", "2026-02-30", "-c", str(config))
    assert refused.returncode == 2 and "YYYY-MM-DD" in refused.stderr
    state = StateDB(site.storage.resolved_state_path())
    try:
        assert KpiStore(state).day(before) is None and KpiStore(state).day(today) is None
    finally:
        state.close()

    shown = edge_cli("kpi", "show", "-c", str(config), "--from", day, "--to", day)
    assert shown.returncode == 0, shown.stderr
    assert day in shown.stdout and "a:availability" in shown.stdout
    exported = edge_cli("kpi", "export", "-c", str(config), "--from", day, "--to", day)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert lines[0].startswith("day,device,availability") and lines[1].startswith(f"{day},a,")
    bad = edge_cli("kpi", "show", "-c", str(config), "--device", "nope")
    assert bad.returncode == 2 and "'nope'" in bad.stderr


async def test_turning_the_kpis_off_removes_their_journal_cursor(tmp_path: Path) -> None:
    """A cursor nobody moves would keep every public record from retention."""
    rt = Runtime(load(tmp_path, SITE), with_web=False)
    await rt.start()
    try:
        assert rt.journal.cursors()["kpi"][0] == "kpi"
    finally:
        await rt.stop()
    rt = Runtime(load(tmp_path, {**SITE, "kpi": {"enabled": False}}), with_web=False)
    await rt.start()
    try:
        await until(lambda: "kpi" not in rt.journal.cursors(), timeout=10)
    finally:
        await rt.stop()


def daily_days(path: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT payload FROM journal WHERE kind='kpi_daily' ORDER BY seq").fetchall()
    return [json.loads(r[0])["day"] for r in rows]


async def test_a_day_that_ended_while_the_gateway_was_off_is_sent_at_the_next_start(tmp_path: Path) -> None:
    def two_days_ago() -> float:
        return time.time() - 2 * 86400.0

    site = load(tmp_path, SITE)
    day = Days("Asia/Shanghai").day_of(two_days_ago())
    rt = Runtime(site, clock=two_days_ago, with_web=False)
    await rt.start()
    await rt.stop()
    assert daily_days(site.storage.path) == []
    rt = Runtime(site, with_web=False)  # today: the day of the first run is over
    await rt.start()
    try:
        await until(lambda: day in daily_days(site.storage.path), timeout=10)
    finally:
        await rt.stop()
    # a crash after the day was marked closed but before its kpi_daily was journaled: the
    # next start sends it (once more here: upstream tells a repeat by site and day)
    state = StateDB(site.storage.resolved_state_path())
    try:
        KpiStore(state).set_meta("announce", [day])
    finally:
        state.close()
    rt = Runtime(site, with_web=False)
    await rt.start()
    try:
        await until(lambda: daily_days(site.storage.path).count(day) == 2, timeout=10)
    finally:
        await rt.stop()
    state = StateDB(site.storage.resolved_state_path())
    try:
        assert KpiStore(state).meta("announce") == []
    finally:
        state.close()


async def test_rebuild_opens_what_the_site_sealed(tmp_path: Path) -> None:
    """On a site that seals personal records, the rebuild reads an alert's acknowledgement (a
    personal record, sealed in the journal) as the live fold did; a wrong master key is refused
    and changes nothing."""
    from edge.kpi.api import report
    from edge.kpi.offline import OfflineKpi
    from edge.model import Event, Severity
    from edge.privacy.keyfile import create_master_key
    from tests.kpi.test_alerts import alert

    master = tmp_path / "master.key"
    create_master_key(master)
    doc = {
        **SITE,
        "devices": [],
        "privacy": {"master_key_file": str(master)},
        "kpi": {"interval": "1h", "ack_within": {"warning": "4h"}},
    }
    offset = noon_days_ago(2)

    def clock() -> float:
        return time.time() + offset

    site = load(tmp_path, doc)
    config = site_file(tmp_path, doc)
    day = Days("Asia/Shanghai").day_of(clock())
    rt = Runtime(site, clock=clock, with_web=False)
    await rt.start()
    try:
        now = clock()
        rt.hub.publish_event(alert("door", "warning", now - 100))
        await rt.journal.flush()
        seq = next(r["seq"] for r in rt.journal.tail(20) if r.get("kind") == "alert")
        ack = {"seq": seq, "user": "wang", "comment": "", "privacy": "personal"}
        rt.hub.publish_event(Event("alert_ack", "kpi-cli", Severity.INFO, ack, now - 40))
        await rt.journal.flush()
    finally:
        await rt.stop()
    with sqlite3.connect(site.storage.path) as conn:
        payloads = [r[0] for r in conn.execute("SELECT payload FROM journal WHERE kind = 'alert_ack'")]
    assert len(payloads) == 1 and b"wang" not in bytes(payloads[0])  # sealed on disk

    def acknowledged() -> int:
        kpi = OfflineKpi(load(tmp_path, doc))
        try:
            return int(report(kpi, day, day, None)["days"][0]["alerts"]["acknowledged"])  # type: ignore[arg-type]
        finally:
            kpi.close()

    assert acknowledged() == 1  # the live fold's figure
    wrong = tmp_path / "wrong.key"
    create_master_key(wrong)
    bad = site_file(tmp_path, {**doc, "privacy": {"master_key_file": str(wrong)}}, name="wrong.yaml")
    refused = edge_cli("kpi", "rebuild", "--day", day, "-c", str(bad))
    assert refused.returncode == 1 and "master_key_file" in refused.stderr, refused.stderr
    assert acknowledged() == 1
    done = edge_cli("kpi", "rebuild", "--day", day, "-c", str(config))
    assert done.returncode == 0, done.stderr
    assert acknowledged() == 1  # read through the seal, not as {"sealed": true}
