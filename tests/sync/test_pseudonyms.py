"""Pseudonyms upstream: a plate leaves the site as each recipient's own keyed pseudonym (HTTP sinks,
the pull API), stays the same across a gateway restart, is sent in clear only where `clear:` says
so (and `edge check` warns), and is withheld from a recipient without a key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson

from edge.privacy.pseudonym import WITHHELD, pseudonym
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.tools import require_tool
from tests.sync.helpers import LAST_PLATE, PLATE, Collector, key_file, passage, sink, wait_for
from tests.sync.test_influx import Influx

RAW_PLATE = PLATE.encode()


def batches(c: Collector, path: str) -> list[dict[str, Any]]:
    return [orjson.loads(b) for b in c.bodies.get(path, [])]


def passages(c: Collector, path: str) -> list[dict[str, Any]]:
    return [e["payload"] for b in batches(c, path) for e in b["events"] if e["kind"] == "vehicle_passage"]


def plate_readings(c: Collector, path: str) -> list[Any]:
    return [r["value"] for b in batches(c, path) for r in b["readings"] if r["point"] == LAST_PLATE.id]


async def test_each_sink_gets_its_own_stable_pseudonym_the_clear_value_only_where_allowed(
    tmp_path: Path,
) -> None:
    key_a, secret_a = key_file(tmp_path, "a")
    key_b, secret_b = key_file(tmp_path, "b")
    key_c, _ = key_file(tmp_path, "c")
    collector = Collector()
    async with collector.serving("/a", "/b", "/c", "/none") as c:
        doc = {
            "upstream": [
                sink(c.url("/a"), id="a", pseudonymise={"key_file": str(key_a)}),
                sink(c.url("/b"), id="b", pseudonymise={"key_file": str(key_b)}),
                sink(c.url("/c"), id="c", pseudonymise={"key_file": str(key_c), "clear": ["plate"]}),
                sink(c.url("/none"), id="none"),
            ]
        }

        async def run(n: int) -> None:
            async with running_site(tmp_path, doc) as rt:
                rt.hub.register_points([LAST_PLATE])
                rt.hub.ingest(passage(n))
                committed = await rt.journal.flush()
                sinks = rt.components["sync"].sinks
                await wait_for(
                    lambda: all(s.cursor >= committed for s in sinks.values()), 20, "every sink to deliver"
                )

        await run(1)
        await run(2)  # a second gateway run on the same files: the keys are read again

    seen_a = passages(c, "/a")
    assert [p["n"] for p in seen_a] == [1, 2]
    mine = pseudonym(secret_a, PLATE)
    assert mine.startswith("ps_") and [p["plate"] for p in seen_a] == [mine, mine]
    assert plate_readings(c, "/a") == [mine, mine]
    alerts = [e["payload"] for b in batches(c, "/a") for e in b["events"] if e["kind"] == "alert"]
    assert [a["value"] for a in alerts] == [mine, mine]
    theirs = pseudonym(secret_b, PLATE)
    assert theirs != mine
    assert [p["plate"] for p in passages(c, "/b")] == [theirs, theirs]
    assert plate_readings(c, "/b") == [theirs, theirs]
    # clear: [plate] lets this sink see the passage's plate as it is
    assert [p["plate"] for p in passages(c, "/c")] == [PLATE, PLATE]
    # no key: the plate is withheld, never sent in clear
    for p in passages(c, "/none"):
        assert p["plate"] is None and p["plate_withheld"] == WITHHELD and p["direction"] == "in"
    assert plate_readings(c, "/none") == [None, None]
    alerts = [e["payload"] for b in batches(c, "/none") for e in b["events"] if e["kind"] == "alert"]
    assert [(a["value"], a["value_withheld"]) for a in alerts] == [(None, WITHHELD)] * 2
    for path in ("/a", "/b", "/none"):
        assert c.raw(path) and RAW_PLATE not in c.raw(path), path
    assert RAW_PLATE in c.raw("/c")


async def test_pull_consumers_get_their_own_pseudonym_or_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("CITY_TOKEN", "city-token-0123456789")
    monkeypatch.setenv("BMS_TOKEN", "bms-token-0123456789")
    city_key, city_secret = key_file(tmp_path, "city")
    sink_key, sink_secret = key_file(tmp_path, "sink")
    collector = Collector()
    async with collector.serving("/ingest") as c:
        doc = {
            "upstream": [sink(c.url("/ingest"), pseudonymise={"key_file": str(sink_key)})],
            "consumers": [
                {"id": "city", "token_env": "CITY_TOKEN", "pseudonymise": {"key_file": str(city_key)}},
                {"id": "bms", "token_env": "BMS_TOKEN"},
            ],
        }
        async with running_site(tmp_path, doc) as rt:
            rt.hub.register_points([LAST_PLATE])
            rt.hub.ingest(passage(1))
            await rt.journal.flush()
            base = f"http://127.0.0.1:{rt.web_port}/api/v1"
            got: dict[str, tuple[bytes, bytes]] = {}
            for who in ("city", "bms"):
                headers = {"Authorization": f"Bearer {who}-token-0123456789"}
                async with aiohttp.ClientSession(headers=headers) as http:
                    async with http.get(f"{base}/stream?after=0&limit=100") as r:
                        assert r.status == 200
                        page = await r.read()
                    async with http.get(f"{base}/latest?device=gate-south") as r:
                        assert r.status == 200
                        latest = await r.read()
                got[who] = (page, latest)

    mine = pseudonym(city_secret, PLATE)
    assert mine != pseudonym(sink_secret, PLATE)
    for who, (page, latest) in got.items():
        assert RAW_PLATE not in page and RAW_PLATE not in latest, who
        items = orjson.loads(page)["items"]
        event = next(i for i in items if i.get("kind") == "vehicle_passage")
        reading = next(i for i in items if i.get("point") == LAST_PLATE.id)
        value = next(x["value"] for x in orjson.loads(latest)["latest"] if x["point"] == LAST_PLATE.id)
        if who == "city":
            assert event["payload"]["plate"] == mine and reading["value"] == mine and value == mine
        else:  # a consumer without a key of its own gets no plate at all
            assert event["payload"]["plate"] is None and event["payload"]["plate_withheld"] == WITHHELD
            assert reading["value"] is None and value is None


def test_edge_check_warns_of_clear_fields_and_refuses_a_shared_key(tmp_path: Path) -> None:
    key, _ = key_file(tmp_path, "shared")
    other, _ = key_file(tmp_path, "other")
    doc: dict[str, Any] = {
        "upstream": [
            sink("http://127.0.0.1:9/a", id="a", pseudonymise={"key_file": str(key)}),
            sink("http://127.0.0.1:9/b", id="b", pseudonymise={"key_file": str(other), "clear": ["plate"]}),
        ]
    }
    config = site_file(tmp_path, doc)
    done = edge_cli("check", "-c", str(config))
    assert done.returncode == 0, done.stderr
    lines = config.read_text(encoding="utf-8").splitlines()
    line = next(i for i, text in enumerate(lines, 1) if text.strip() == "- plate")
    assert f"{config}:{line}: upstream[1].pseudonymise.clear[0]: warning: b receives 'plate' in clear" in (
        done.stderr
    )

    other.chmod(0o644)  # a key others on the box may read protects nothing
    done = edge_cli("check", "-c", str(config))
    assert done.returncode == 1
    assert f"{other}: upstream b pseudonymise: key file has mode 0644" in done.stderr
    other.chmod(0o600)

    doc["consumers"] = [{"id": "city", "token_env": "T", "pseudonymise": {"key_file": str(key)}}]
    done = edge_cli("check", "-c", str(site_file(tmp_path, doc)))
    assert done.returncode == 1
    assert "consumers[0].pseudonymise.key_file: city uses the same pseudonym key as a (upstream[0])" in (
        done.stderr
    )

    doc["consumers"] = [
        {"id": "city", "token_env": "T", "pseudonymise": {"key": "a literal key in the file"}}
    ]
    done = edge_cli("check", "-c", str(site_file(tmp_path, doc)))
    assert done.returncode == 1
    assert "consumers[0].pseudonymise.key: secrets are never written in the site file" in done.stderr


async def test_influxdb_line_protocol_carries_the_pseudonym(tmp_path: Path) -> None:
    influx = Influx(require_tool("influxd", "Debian package influxdb"), tmp_path / "influx")
    influx.start()
    try:
        await wait_for(influx.ping, 30, "influxd to answer /ping")
        await influx.query("CREATE DATABASE community")
        key, secret = key_file(tmp_path, "tsdb")
        collector = Collector()
        async with collector.serving("/write") as c:
            common = {"database": "community", "pseudonymise": {"key_file": str(key)}}
            doc = {
                "upstream": [
                    sink(influx.url, id="tsdb", type="influxdb", **common),
                    # the same line protocol to a receiver that keeps the bytes; its own key
                    sink(
                        c.url("/write"),
                        id="copy",
                        type="influxdb",
                        **{**common, "pseudonymise": {"key_file": str(key_file(tmp_path, "copy")[0])}},
                    ),
                ]
            }
            async with running_site(tmp_path, doc) as rt:
                rt.hub.register_points([LAST_PLATE])
                rt.hub.ingest(passage(1))
                committed = await rt.journal.flush()
                sinks = rt.components["sync"].sinks
                await wait_for(lambda: all(s.cursor >= committed for s in sinks.values()), 20, "both sinks")
        mine = pseudonym(secret, PLATE)
        events = await influx.query("SELECT payload FROM events WHERE kind = 'vehicle_passage'", "community")
        payloads = [orjson.loads(v[1]) for v in events["results"][0]["series"][0]["values"]]
        assert [p["plate"] for p in payloads] == [mine]
        plates = await influx.query('SELECT last_plate FROM "gate-south"', "community")
        assert [v[1] for v in plates["results"][0]["series"][0]["values"]] == [mine]
        everything = await influx.query("SELECT * FROM /.*/", "community")
        assert PLATE not in orjson.dumps(everything).decode()
        raw = c.raw("/write")
        assert b"vehicle_passage" in raw and b"last_plate=" in raw and RAW_PLATE not in raw
    finally:
        influx.stop()


def test_the_privacy_report_says_what_each_recipient_gets_of_a_plate(tmp_path: Path) -> None:
    key, _ = key_file(tmp_path, "a")
    gate = {
        "id": "gate-south",
        "driver": "sim",
        "points": [{"name": "last_plate", "type": "str", "value": PLATE, "privacy": "personal"}],
        "events": [{"kind": "vehicle_passage", "generator": "vehicle", "every": "1s", "privacy": "personal"}],
    }
    doc = {
        "devices": [gate],
        "upstream": [
            sink("http://127.0.0.1:9/a", id="a", pseudonymise={"key_file": str(key)}),
            sink("http://127.0.0.1:9/b", id="b"),
        ],
    }
    done = edge_cli("privacy", "report", "-c", str(site_file(tmp_path, doc)), "--json")
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)
    passage_to = next(e for e in data["events"] if e["kind"] == "vehicle_passage")["recipients"]
    point_to = next(p for p in data["points"] if p["point"] == "gate-south.last_plate")["recipients"]
    assert passage_to["a"] == {"receives": "pseudonymised", "fields": "plate"}
    assert point_to["a"] == {"receives": "pseudonymised", "fields": "value"}
    for got in (passage_to["b"], point_to["b"]):
        assert got["receives"] == "fields_withheld" and got["withheld_fields"] in ("plate", "value"), got


async def test_every_health_measurement_kind_sends_the_resident_as_a_pseudonym(tmp_path: Path) -> None:
    """The kiosk's five instruments (cuff, scale, thermometer, glucose meter, oximeter) name the
    resident in the same field: a sink allowed the measurements receives its own pseudonym of
    it, never the reference itself."""
    from edge.model import Event, Severity

    key, secret = key_file(tmp_path, "health")
    kinds = ("blood_pressure", "weight", "body_temperature", "glucose", "spo2")
    collector = Collector()
    async with collector.serving("/health") as c:
        cfg = sink(c.url("/health"), max_privacy="sensitive", pseudonymise={"key_file": str(key)})
        async with running_site(tmp_path, {"upstream": [cfg]}) as rt:
            rt.hub.ingest(
                [
                    Event(kind, "kiosk-1", Severity.INFO, {"resident": "r-0340"}, 1.0 + i)
                    for i, kind in enumerate(kinds)
                ]
            )
            committed = await rt.journal.flush()
            s = rt.components["sync"].sinks["central"]
            await wait_for(lambda: s.cursor >= committed, 20, "the sink to deliver")
    sent = {e["kind"]: e["payload"] for b in batches(c, "/health") for e in b["events"]}
    assert set(sent) >= set(kinds)
    for kind in kinds:
        assert sent[kind]["resident"] == pseudonym(secret, "r-0340"), kind
    assert not any(b"r-0340" in body for body in c.bodies["/health"])
