"""Separate incidents of one rule and point are separate alerts in the KPIs; only the repeats of a
`notify: repeat` rule join the alert they repeat. The rules engine marks each alert it journals
(`repeat`, `first_fired`) and the KPIs read the marks; a journal of the previous release has none,
and its alerts join an open alert of the same day only."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.kpi.component import KpiComponent
from edge.kpi.days import Days
from edge.model import Event, Reading, Severity
from edge.runtime import Runtime
from edge.store.journal import Journal
from tests.support.site import load
from tests.support.waiting import until

TZ = "Asia/Shanghai"


def noon_clock() -> Any:
    """The site's clock at today's local noon (running), so every scripted time is today."""
    days = Days(TZ)
    start, _end = days.bounds_of(days.day_of(time.time()))
    offset = start + 12 * 3600 - time.time()
    return lambda: time.time() + offset


def rule_site(tmp_path: Path, site_id: str, rule: dict[str, Any], ack_within: str) -> dict[str, Any]:
    pack = tmp_path / "pack.yaml"
    base = {"id": "high", "name": "v high", "when": "ctl.v", "if": "value > 50", "severity": "warning"}
    pack.write_text(yaml.safe_dump({"rules": [{**base, **rule, "then": [{"alert": "v high {value}"}]}]}))
    return {
        "site": {"id": site_id, "name": "KPI", "timezone": TZ},
        "kpi": {"interval": "1h", "ack_within": {"warning": ack_within}},
        "rules": {"packs": [str(pack)]},
        "devices": [],
    }


def alerts_in(rt: Runtime) -> list[dict[str, Any]]:
    return [r for r in rt.journal.tail(200) if r["type"] == "event" and r["kind"] == "alert"]


async def journaled_alerts(rt: Runtime, n: int, what: str) -> list[dict[str, Any]]:
    """The journal's `alert` records once there are `n` of them."""
    try:
        await until(lambda: len(alerts_in(rt)) == n, what=what)
    except AssertionError as exc:
        seen = [(a["seq"], a["ts"], a["payload"].get("repeat")) for a in alerts_in(rt)]
        raise AssertionError(f"{exc}; journaled: {seen}") from None
    return alerts_in(rt)


def ack(site_id: str, seq: int, ts: float) -> Event:
    payload = {"seq": seq, "user": "wang", "comment": "on it", "privacy": "personal"}
    return Event("alert_ack", site_id, Severity.INFO, payload, ts)


async def test_two_incidents_of_a_notify_once_rule_are_two_alerts(tmp_path: Path) -> None:
    clock = noon_clock()
    rt = Runtime(load(tmp_path, rule_site(tmp_path, "kpi-once", {}, "20s")), clock=clock, with_web=False)
    await rt.start()
    try:
        now = clock()
        t1, t2 = now - 40.0, now - 10.0
        # incident 1 high for 3 s, never acknowledged; incident 2 30 s later
        rt.hub.ingest(
            [Reading(t1, "ctl.v", 80.0), Reading(t1 + 3, "ctl.v", 10.0), Reading(t2, "ctl.v", 80.0)]
        )
        fired = await journaled_alerts(rt, 2, "two alerts journaled")
        assert [a["payload"]["repeat"] for a in fired] == [False, False]
        assert [a["payload"]["first_fired"] for a in fired] == [t1, t2]
        rt.hub.publish_event(ack("kpi-once", fired[1]["seq"], t2 + 4.2))
        await rt.journal.flush()
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        figures = comp.today()
        rows = {r["alert"]: r for r in comp.store.alerts_of(figures["day"])}
    finally:
        await rt.stop()
    a = figures["alerts"]
    assert a["count"] == 2 and a["by_severity"] == {"warning": 2}
    assert a["acknowledged"] == 1 and a["ack_mean_s"] == pytest.approx(4.2, abs=1e-3)
    assert rows[fired[0]["seq"]]["ack_ts"] is None  # the first incident stays unacknowledged
    assert a["not_acked_within_target"] == {"warning": 1}  # the first: 40 s old, target 20 s


async def test_the_repeats_of_a_notify_repeat_rule_are_one_alert(tmp_path: Path) -> None:
    clock = noon_clock()
    doc = rule_site(tmp_path, "kpi-repeat", {"notify": "repeat", "every": "10s"}, "2m")
    rt = Runtime(load(tmp_path, doc), clock=clock, with_web=False)
    await rt.start()
    try:
        now = clock()
        t1 = now - 100.0
        # high from t1 to t1 + 35, a reading every 10 s: repeated at +10, +20 and +30 (each
        # repeat due by the time of a reading), then back to normal (no clear is journaled)
        high = [Reading(t1 + i, "ctl.v", 80.0) for i in (0, 10, 20, 30)]
        rt.hub.ingest([*high, Reading(t1 + 35, "ctl.v", 10.0)])
        fired = await journaled_alerts(rt, 4, "the alert and 3 repeats")
        assert [a["payload"]["repeat"] for a in fired] == [False, True, True, True]
        assert {a["payload"]["first_fired"] for a in fired} == {t1}
        # a second incident later (over before its first repeat): an alert of its own
        rt.hub.ingest([Reading(now - 20, "ctl.v", 90.0), Reading(now - 15, "ctl.v", 10.0)])
        await journaled_alerts(rt, 5, "the second incident's alert")
        rt.hub.publish_event(ack("kpi-repeat", fired[2]["seq"], t1 + 70))  # acknowledging a repeat
        await rt.journal.flush()
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        figures = comp.today()
    finally:
        await rt.stop()
    a = figures["alerts"]
    assert a["count"] == 2
    assert a["acknowledged"] == 1 and a["ack_mean_s"] == pytest.approx(70.0, abs=1e-3)
    assert a["not_acked_within_target"] == {} and a["awaiting_ack"] == 1  # the second, 20 s old


async def test_a_repeat_after_a_restart_names_the_first_firing_of_before(tmp_path: Path) -> None:
    clock = noon_clock()
    doc = rule_site(tmp_path, "kpi-restart", {"notify": "repeat", "every": "1h"}, "4h")
    site = load(tmp_path, doc)
    rt = Runtime(site, clock=clock, with_web=False)
    await rt.start()
    try:
        t1 = clock() - 100.0
        rt.hub.ingest([Reading(t1, "ctl.v", 80.0)])
        await journaled_alerts(rt, 1, "the first firing")
    finally:
        await rt.stop()

    def an_hour_on() -> float:  # the gateway comes back after the repeat was due
        return clock() + 3600.0

    rt = Runtime(load(tmp_path, doc), clock=an_hour_on, with_web=False)
    await rt.start()
    try:
        fired = await journaled_alerts(rt, 2, "the repeat")
        assert fired[1]["payload"]["repeat"] is True and fired[1]["payload"]["first_fired"] == t1
        assert fired[1]["ts"] == t1 + 3600
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        day = Days(TZ).day_of(t1)
        rows = comp.store.alerts_of(day)
    finally:
        await rt.stop()
    assert [r["alert"] for r in rows] == [fired[0]["seq"]]


async def test_the_repeats_of_a_first_firing_never_journaled_are_one_alert(tmp_path: Path) -> None:
    """The rate limit can drop an incident's first firing and let its repeats through: each names
    a first firing the KPIs do not hold. The first repeat counts as the incident's alert instead
    of joining the incident before it, and every later repeat, naming the same first firing as the
    rules engine sends it, joins that alert: one incident, one alert, however often it repeats. A
    repeat that names no first firing joins the newest alert."""
    clock = noon_clock()
    doc = {"site": {"id": "kpi-dropped", "name": "KPI", "timezone": TZ}, "kpi": {"interval": "1h"}}
    rt = Runtime(load(tmp_path, {**doc, "devices": []}), clock=clock, with_web=False)
    await rt.start()
    try:
        now = clock()
        t1, t2 = now - 100.0, now - 50.0

        def fired(ts: float, repeat: bool, first: float | None) -> Event:
            payload: dict[str, Any] = {"rule": "high", "name": "v high", "state": "fired", "message": "high"}
            payload |= {"point": "ctl.v", "value": 80.0, "repeat": repeat}
            if first is not None:
                payload["first_fired"] = first
            return Event("alert", "high", Severity.WARNING, payload, ts)

        # incident 1 and its repeat; incident 2's first firing (t2) dropped, its 4 repeats journaled
        rt.hub.publish_event(fired(t1, False, t1))
        rt.hub.publish_event(fired(t1 + 10, True, t1))
        for i in range(1, 5):
            rt.hub.publish_event(fired(t2 + 10 * i, True, t2))
        rt.hub.publish_event(fired(t2 + 45, True, None))
        seqs = [a["seq"] for a in await journaled_alerts(rt, 7, "seven alert records")]
        rt.hub.publish_event(ack("kpi-dropped", seqs[5], t2 + 42))  # acknowledging the last repeat
        await rt.journal.flush()
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        figures = comp.today()
        rows = {r["alert"]: r for r in comp.store.alerts_of(figures["day"])}
    finally:
        await rt.stop()
    assert sorted(rows) == [seqs[0], seqs[2]]
    assert rows[seqs[2]]["fired_ts"] == t2 + 10 and rows[seqs[2]]["ack_ts"] == t2 + 42
    assert rows[seqs[0]]["ack_ts"] is None
    a = figures["alerts"]
    assert a["count"] == 2 and a["acknowledged"] == 1 and a["ack_mean_s"] == pytest.approx(32.0, abs=1e-3)


def sent(rt: Runtime) -> dict[str, dict[str, Any]]:
    """The alert figures of each `kpi_daily` journaled, by day."""
    daily = (r for r in rt.journal.tail(500) if r["type"] == "event" and r["kind"] == "kpi_daily")
    return {r["payload"]["day"]: r["payload"]["alerts"] for r in daily}


def shown(comp: KpiComponent, day: str) -> dict[str, Any]:
    """A day's alert figures as `edge kpi show` and the API read them from the store."""
    found = comp.store.day(day)
    assert found is not None
    return dict(comp.figures(day, found[0], closed=True, now=time.time())["alerts"])


def local(day: dt.date, hour: int) -> float:
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=Days(TZ).tz).timestamp()


@pytest.mark.parametrize("marked", [True, False], ids=["this-release", "previous-release"])
async def test_an_incident_two_days_later_is_that_days_alert(tmp_path: Path, marked: bool) -> None:
    """One rule fires on day 1 and on day 3; day 3's alert is acknowledged after 60 s. Marked as
    the rules engine journals them now, or unmarked as the previous release did, day 3 counts its
    own alert and day 1's stays unacknowledged, in the stored figures and in each `kpi_daily`."""
    site_id = "kpi-days"
    doc = {
        "site": {"id": site_id, "name": "KPI", "timezone": TZ},
        "kpi": {"ack_within": {"warning": "4h"}},
        "devices": [],
    }
    site = load(tmp_path, doc)
    today = dt.date.fromisoformat(Days(TZ).day_of(time.time()))
    day1, day3 = today - dt.timedelta(days=6), today - dt.timedelta(days=4)
    a1, a3 = local(day1, 10), local(day3, 10)

    def alert(ts: float) -> Event:
        payload: dict[str, Any] = {"rule": "high", "name": "v high", "state": "fired", "message": "v high"}
        payload |= {"point": "ctl.v", "value": 80.0}
        if marked:
            payload |= {"repeat": False, "first_fired": ts}
        return Event("alert", "high", Severity.WARNING, payload, ts)

    journal = Journal(site.storage.path, keep_history=None, max_bytes=None, disk_reserve=None).open()
    journal.append([Event("gateway_started", site_id, "info", {}, a1 - 3600), alert(a1), alert(a3)])
    await journal.flush()
    third = journal.committed_seq
    journal.append([ack(site_id, third, a3 + 60), Event("gateway_stopped", site_id, "info", {}, a3 + 3600)])
    await journal.flush()
    await journal.close()

    rt = Runtime(site, with_web=False)
    await rt.start()
    try:
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()
        await until(lambda: day3.isoformat() in sent(rt), what="day 3's kpi_daily")
        daily = sent(rt)
        stored = {day: shown(comp, day) for day in (day1.isoformat(), day3.isoformat())}
    finally:
        await rt.stop()
    for figures in (daily, stored):
        first, last = figures[day1.isoformat()], figures[day3.isoformat()]
        assert first["count"] == 1 and first["acknowledged"] == 0 and first["ack_mean_s"] is None
        assert first["not_acked_within_target"] == {"warning": 1}
        assert last["count"] == 1 and last["acknowledged"] == 1
        assert last["ack_mean_s"] == pytest.approx(60.0, abs=1e-3)
        assert last["not_acked_within_target"] == {}
