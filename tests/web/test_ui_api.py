"""The UI's JSON endpoints against a real runtime: history, live stream, commissioning, events and
acknowledgements, the YAML helper; and the static files: translations complete, nothing external."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp

from edge.api.tokens import create_token
from edge.model import Event, Reading
from tests.support.site import running_site
from tests.support.waiting import until, until_async
from tests.web.conftest import Client, make_user, signed_in_admin

STATIC = Path(__file__).resolve().parents[2] / "edge" / "web" / "static"


async def wait_for(hub: Any, predicate: Any, timeout: float = 5.0) -> None:
    """Wait until predicate() holds, re-checking on every batch the hub journals."""
    changed = asyncio.Event()
    unsubscribe = hub.subscribe(lambda _batch: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                changed.clear()
                await changed.wait()
    finally:
        unsubscribe()


async def test_history_returns_journaled_readings_of_one_point(site: Any, admin: Client) -> None:
    now = time.time()
    site.hub.ingest(
        [Reading(now - 30, "gate-north.power_kw", 4.25), Reading(now - 20, "gate-north.power_kw", 4.5)]
    )
    await site.journal.flush()
    body = await admin.json("GET", f"/api/v1/history?point=gate-north.power_kw&since={now - 60}&limit=5000")
    values = [r[1] for r in body["readings"]]
    assert 4.25 in values and 4.5 in values
    assert [r[0] for r in body["readings"]] == sorted(r[0] for r in body["readings"])
    bools = await admin.json("GET", "/api/v1/history?point=gate-north.loop_occupied")
    assert all(isinstance(r[1], bool) for r in bools["readings"])
    resp = await admin.request("GET", "/api/v1/history?point=nope.x")
    assert resp.status == 404 and "devices" in await resp.text()


async def test_live_stream_delivers_journaled_readings_of_the_device(site: Any, admin: Client) -> None:
    async with admin.http.get(admin.base + "/api/v1/live?device=gate-north&events=0") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        site.hub.ingest([Reading(time.time(), "gate-north.power_kw", 123.5)])
        async with asyncio.timeout(5):
            async for line in resp.content:
                if line.startswith(b"data: [") and b"123.5" in line:
                    rec = next(r for r in json.loads(line[6:]) if r["value"] == 123.5)
                    assert rec == {
                        **rec,
                        "type": "reading",
                        "point": "gate-north.power_kw",
                        "quality": "good",
                    }
                    break


async def test_device_points_and_commissioning_read_the_simulated_value(site: Any, admin: Client) -> None:
    await wait_for(site.hub, lambda: "gate-north.power_kw" in site.hub.latest)
    body = await admin.json("GET", "/api/v1/devices/gate-north/points")
    by_id = {p["id"]: p for p in body["points"]}
    assert by_id["gate-north.power_kw"]["unit"] == "kW" and by_id["gate-north.barrier_open"]["writable"]
    read = await admin.json("POST", "/api/v1/commission/read", {"point": "gate-north.power_kw"})
    assert 2 <= read["value"] <= 9 and read["quality"] == "good" and read["age_s"] < 5
    resp = await admin.request("POST", "/api/v1/commission/read", json={"device": "gate-north", "address": 0})
    assert resp.status == 422 and "sim driver" in await resp.text()


async def test_write_goes_through_the_hub_and_is_audited(site: Any, admin: Client) -> None:
    body = await admin.json("POST", "/api/v1/points/gate-north.barrier_open/write", {"value": True})
    assert body["status"] == "ok"
    await wait_for(
        site.hub, lambda: site.hub.latest.get("gate-north.barrier_open", Reading(0, "", None)).value is True
    )
    resp = await admin.request("POST", "/api/v1/points/gate-north.power_kw/write", json={"value": 1})
    assert resp.status == 422 and "not writable" in await resp.text()
    entries = (await admin.json("GET", "/api/v1/audit?action=point_write"))["entries"]
    assert [(e["target"], e["detail"]["status"]) for e in entries] == [
        ("gate-north.power_kw", "rejected"),
        ("gate-north.barrier_open", "ok"),
    ]


PRIVATE_WRITE_SITE = """
site: {id: web-private-write}
devices:
  - id: gate-north
    driver: sim
    points:
      - {name: allow_plate, type: str, signal: constant, value: "", writable: true, privacy: personal}
      - {name: barrier_open, type: bool, signal: constant, value: false, writable: true}
      - {name: visitor_slots, signal: constant, value: 2, writable: true, privacy: personal}
"""


async def test_a_personal_value_written_is_audited_by_its_class_not_its_value(tmp_path: Path) -> None:
    """The audit log is kept for good and not sealed: a plate written to a personal point leaves
    its class there, not the plate; a public point's value stays."""
    async with running_site(tmp_path, PRIVATE_WRITE_SITE) as rt, signed_in_admin(rt) as admin:
        for point, value in (("allow_plate", "沪A23522"), ("barrier_open", True)):
            body = await admin.json("POST", f"/api/v1/points/gate-north.{point}/write", {"value": value})
            assert body["status"] == "ok"
        entries = (await admin.json("GET", "/api/v1/audit?action=point_write"))["entries"]
        assert [(e["target"], e["detail"]) for e in entries] == [
            ("gate-north.barrier_open", {"value": True, "status": "ok", "reason": ""}),
            ("gate-north.allow_plate", {"value_class": "personal", "status": "ok", "reason": ""}),
        ]
        # a write's outcome may quote the value ("'沪A77531' is not a valid float", a device's
        # read-back): of a personal point, neither the log nor a caller below its class gets it
        token = create_token(rt.state, "bms", ["read", "write"])  # a token sees public data only
        async with aiohttp.ClientSession() as http:
            for who in ({"Authorization": f"Bearer {token}"}, None):
                if who is None:
                    resp = await admin.request(
                        "POST", "/api/v1/points/gate-north.visitor_slots/write", json={"value": "沪A77531"}
                    )
                else:
                    resp = await http.post(
                        f"http://127.0.0.1:{rt.web_port}/api/v1/points/gate-north.visitor_slots/write",
                        json={"value": "沪A77531"},
                        headers=who,
                    )
                assert resp.status == 422
                said = (await resp.json())["reason"]
                assert ("沪A77531" in said) == (who is None), said  # the admin may read personal data
        entries = (await admin.json("GET", "/api/v1/audit?action=point_write"))["entries"]
        slots = [e["detail"] for e in entries if e["target"] == "gate-north.visitor_slots"]
        assert len(slots) == 2 and all(d["reason"].startswith("withheld") for d in slots)
    state = [tmp_path / name for name in ("state.db", "state.db-wal") if (tmp_path / name).exists()]
    assert state and all("沪A23522".encode() not in f.read_bytes() for f in state)
    assert all("沪A77531".encode() not in f.read_bytes() for f in state)


ACK_RETENTION_SITE = """
site: {id: web-acks}
privacy: {retention: {sensitive: 30d, personal: 90d}}
devices:
  - id: gate-north
    driver: sim
    points:
      - {name: barrier_open, type: bool, signal: constant, value: false, writable: true}
"""


async def test_an_acknowledgement_takes_its_alerts_class_and_expires_at_its_retention(tmp_path: Path) -> None:
    """An acknowledgement names its user and its comment may quote the alert: of a health alert
    it is sensitive (upstream and at rest), it leaves the state DB at that class's retention, and
    the audit log, kept for good, says who acknowledged, not what they wrote."""
    async with running_site(tmp_path, ACK_RETENTION_SITE) as rt, signed_in_admin(rt) as admin:
        rt.hub.publish_event(Event("alert", "bp-high", "warning", {"state": "fired", "privacy": "sensitive"}))
        rt.hub.publish_event(Event("alert", "bin-full", "warning", {"state": "fired", "message": "92%"}))
        await rt.journal.flush()
        seqs = {
            e["source"]: e["seq"] for e in (await admin.json("GET", "/api/v1/events?kind=alert"))["events"]
        }
        await admin.json("POST", f"/api/v1/alerts/{seqs['bp-high']}/ack", {"comment": "王 3-201: 186/124"})
        await admin.json("POST", f"/api/v1/alerts/{seqs['bin-full']}/ack", {"comment": "emptied"})
        await rt.journal.flush()
        acks = {
            e["payload"]["seq"]: e["payload"]["privacy"]
            for e in (await admin.json("GET", "/api/v1/events?kind=alert_ack"))["events"]
        }
        assert acks == {seqs["bp-high"]: "sensitive", seqs["bin-full"]: "personal"}
        entries = (await admin.json("GET", "/api/v1/audit?action=alert_ack"))["entries"]
        assert sorted(e["detail"]["commented"] for e in entries) == [True, True]
        assert all("comment" not in e["detail"] for e in entries)

        def stored() -> dict[int, int]:
            with rt.state.lock:
                return dict(rt.state.conn.execute("SELECT seq, privacy FROM ui_acks").fetchall())

        assert stored() == {seqs["bp-high"]: 2, seqs["bin-full"]: 1}
        # each role sees an acknowledgement up to its class: that it was acknowledged, and when
        technician = await make_user(admin, rt, "technician", "technician")
        viewer = await make_user(admin, rt, "viewer", "viewer")
        try:
            for who, shown in (
                (admin, {"bp-high": "王 3-201: 186/124", "bin-full": "emptied"}),
                # the health alert's rule is hidden from those below its class (`redacted`)
                (technician, {"redacted": None, "bin-full": "emptied"}),
                (viewer, {"redacted": None, "bin-full": None}),
            ):
                listed = (await who.json("GET", "/api/v1/events?kind=alert"))["events"]
                assert {e["source"]: e["ack"].get("comment") for e in listed} == shown
                assert all(("user" in e["ack"]) == ("comment" in e["ack"]) for e in listed)
                assert all(e["ack"]["ts"] > 0 for e in listed)
                active = (await who.json("GET", "/api/v1/alerts/active"))["alerts"]
                assert {e["source"]: e["ack"].get("comment") for e in active} == shown
            reads = (await admin.json("GET", "/api/v1/audit?action=read&actor=technician"))["entries"]
            assert reads and all(e["detail"]["classes"] == {"personal": 1} for e in reads)
            # acknowledged by those who may read it, as the UI offers it
            resp = await technician.request(
                "POST", f"/api/v1/alerts/{seqs['bp-high']}/ack", json={"comment": ""}
            )
            assert resp.status == 403 and "sensitive" in (await resp.json())["detail"]
            assert stored() == {seqs["bp-high"]: 2, seqs["bin-full"]: 1}
        finally:
            await technician.close()
            await viewer.close()
        with rt.state.lock:  # both acknowledged 31 days ago: past the sensitive retention only
            rt.state.conn.execute("UPDATE ui_acks SET ts = ts - 31 * 86400")
        rt.journal.expirer_interval = 0.0
        await until(
            lambda: seqs["bp-high"] not in stored(), 20, what="the sensitive acknowledgement expiring"
        )
        assert stored() == {seqs["bin-full"]: 1}
        await until_async(lambda: _expired_acks(admin), 10, what="the alert_acks_expired event")


async def _expired_acks(admin: Client) -> bool:
    events = (await admin.json("GET", "/api/v1/events?kind=alert_acks_expired"))["events"]
    return [e["payload"] for e in events] == [{"count": 1, "by_class": {"sensitive": 1}}]


async def test_events_filter_and_acknowledge_with_comment(site: Any, admin: Client) -> None:
    site.hub.publish_event(
        Event("alert", "bin-full", "warning", {"state": "fired", "name": "Bin full", "message": "92%"})
    )
    site.hub.publish_event(Event("vehicle_passage", "gate-north", "info", {"plate": "京A·12345"}))
    await site.journal.flush()
    alerts = (await admin.json("GET", "/api/v1/events?kind=alert"))["events"]
    assert [e["source"] for e in alerts] == ["bin-full"] and alerts[0]["ack"] is None
    active = (await admin.json("GET", "/api/v1/alerts/active"))["alerts"]
    assert [a["source"] for a in active] == ["bin-full"]
    seq = seq_fired = alerts[0]["seq"]
    await admin.json("POST", f"/api/v1/alerts/{seq}/ack", {"comment": "已清运 emptied"})
    acked = (await admin.json("GET", "/api/v1/events?kind=alert"))["events"][0]
    assert acked["ack"]["user"] == "admin" and acked["ack"]["comment"] == "已清运 emptied"
    assert (await admin.json("GET", "/api/v1/events?kind=alert&unacked=1"))["events"] == []
    resp = await admin.request("POST", "/api/v1/alerts/999999/ack", json={"comment": ""})
    assert resp.status == 404
    site.hub.publish_event(Event("alert", "bin-full", "warning", {"state": "cleared"}))
    await site.journal.flush()
    assert (await admin.json("GET", "/api/v1/alerts/active"))["alerts"] == []
    # only an alert that fired is acknowledged: not another kind of event, not a cleared alert
    events = (await admin.json("GET", "/api/v1/events"))["events"]
    passage = next(e["seq"] for e in events if e["kind"] == "vehicle_passage")
    cleared = next(
        e["seq"] for e in events if e["kind"] == "alert" and e["payload"].get("state") == "cleared"
    )
    for seq, what in ((passage, "a vehicle_passage event"), (cleared, "a cleared alert")):
        resp = await admin.request("POST", f"/api/v1/alerts/{seq}/ack", json={"comment": "x"})
        assert resp.status == 409 and what in (await resp.json())["detail"], seq
    with site.state.lock:
        assert [r[0] for r in site.state.conn.execute("SELECT seq FROM ui_acks")] == [seq_fired]


async def test_events_page_back_by_seq(site: Any, admin: Client) -> None:
    for i in range(5):
        site.hub.publish_event(Event("gate_opened", "gate-north", "info", {"message": f"open {i}"}))
    await site.journal.flush()
    first = (await admin.json("GET", "/api/v1/events?kind=gate_opened&limit=2"))["events"]
    assert [e["payload"]["message"] for e in first] == ["open 4", "open 3"]
    seen = [e["payload"]["message"] for e in first]
    before = first[-1]["seq"]
    while True:  # the next page starts below the last seq listed, none twice, none left out
        page = (await admin.json("GET", f"/api/v1/events?kind=gate_opened&limit=2&before={before}"))["events"]
        if not page:
            break
        assert all(e["seq"] < before for e in page)
        seen += [e["payload"]["message"] for e in page]
        before = page[-1]["seq"]
    assert seen == [f"open {i}" for i in range(4, -1, -1)]
    resp = await admin.request("GET", "/api/v1/events?before=x")
    assert resp.status == 400 and "before" in await resp.text()


async def test_yaml_helper_locates_syntax_errors(site: Any, admin: Client) -> None:
    ok = await admin.json("POST", "/api/v1/ui/yaml", {"text": "id: a\nif: value > 1\n"})
    assert ok["data"] == {"id": "a", "if": "value > 1"}
    bad = await admin.json("POST", "/api/v1/ui/yaml", {"text": "id: a\nwhen: [x\nif: 1\n"}, expect=422)
    assert bad["error"]["line"] >= 2 and bad["error"]["message"]
    dumped = await admin.json("POST", "/api/v1/ui/yaml", {"data": {"name": "垃圾桶"}})
    assert dumped["text"] == "name: 垃圾桶\n"


async def test_sse_stream_ends_when_the_runtime_stops(tmp_path: Path) -> None:
    from tests.support.site import running_site
    from tests.web.conftest import PASSWORD, SITE, setup_code

    async with running_site(tmp_path, SITE) as rt:
        jar = aiohttp.CookieJar(unsafe=True)
        http = aiohttp.ClientSession(cookie_jar=jar)
        base = f"http://127.0.0.1:{rt.web_port}"
        async with http.post(
            base + "/api/v1/auth/setup", json={"code": setup_code(rt), "name": "a", "password": PASSWORD}
        ):
            pass
        resp = await http.get(base + "/api/v1/live")
        await resp.content.readline()
    # the runtime stopped with a client still attached; the stream ended instead of hanging
    async with asyncio.timeout(5):
        while await resp.content.readline():
            pass
    resp.release()
    await http.close()


def test_catalogues_translate_every_string_in_both_languages() -> None:
    en = json.loads((STATIC / "i18n/en.json").read_text("utf-8"))
    zh = json.loads((STATIC / "i18n/zh-CN.json").read_text("utf-8"))
    assert set(en) == set(zh)
    assert all(v.strip() for v in [*en.values(), *zh.values()])
    used = set()
    for js in STATIC.rglob("*.js"):
        used |= set(re.findall(r"\bt\('([A-Za-z0-9_.]+)'", js.read_text("utf-8")))
    for page in STATIC.glob("*.html"):
        used |= set(re.findall(r'data-i18n(?:-placeholder|-title)?="([^"]+)"', page.read_text("utf-8")))
    missing = sorted(k for k in used if k not in en and not k.endswith("."))
    assert missing == []
    # zh-CN really is Chinese, not copied English
    untranslated = [
        k for k in en if en[k] == zh[k] and re.search(r"[a-z]{4,}", en[k]) and not k.startswith("editor.help")
    ]
    assert len(untranslated) < 5, untranslated


def test_static_files_load_nothing_from_outside() -> None:
    for f in STATIC.rglob("*"):
        if f.suffix in (".js", ".css", ".html"):
            text = f.read_text("utf-8")
            assert not re.search(r"(src|href)=\"https?://|url\(https?:|@import|fetch\('https?:", text), f
            assert "fonts.googleapis" not in text and "cdn" not in text.lower(), f
