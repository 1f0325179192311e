"""A page with a few rows that are not plain readings (events, flagged or missing qualities, sealed
values, readings of a point the consumer could be denied) is read mixed: the plain readings by
column, the others row by row, filtered, shaped and counted as the row read does, and put back in
their places. What is served must be byte for byte what the row-by-row read gives, for every
consumer, with the same audit counts and the same freshness checks for a page read ahead."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from edge.api.pull import PULL_KEY
from edge.model import Event, PointInfo, PointType, Privacy, Reading
from edge.privacy.pseudonym import pseudonym
from tests.privacy.conftest import (
    master,  # noqa: F401  (the fixture)
    measurement,
    site_doc,
)
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.sync.helpers import key_file, record_plain_reads
from tests.sync.test_pull_api import call

PLATES = ["沪A23522", "沪B61804", "京C00417"]
POINTS = [
    PointInfo("gate.last_plate", "gate", "last_plate", type=PointType.STR, privacy=Privacy.PERSONAL),
    PointInfo("kiosk.systolic", "kiosk", "systolic", privacy=Privacy.SENSITIVE),
    PointInfo("meter.kw", "meter", "kw", unit="kW"),
]
CONSUMERS = ("city", "bms", "public")  # pseudonyms; personal without a key; public only


def site_for(
    master_key: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], bytes]:
    """A site that seals at rest, with three consumers; (its document, city's pseudonym key)."""
    city_key, city_secret = key_file(tmp_path, "city")
    doc = yaml.safe_load(site_doc(master_key))
    doc["consumers"] = [
        {"id": "city", "token_env": "CITY_TOKEN", "pseudonymise": {"key_file": str(city_key)}},
        {"id": "bms", "token_env": "BMS_TOKEN"},
        {"id": "public", "token_env": "PUBLIC_TOKEN", "max_privacy": "public"},
    ]
    for who in CONSUMERS:
        monkeypatch.setenv(f"{who.upper()}_TOKEN", f"{who}-token-0123456789")
    return doc, city_secret


def records(rng: random.Random, n: int, t: float) -> list[Any]:
    """Mostly plain readings, with every kind of row the plain read leaves to the row read."""
    out: list[Any] = []
    for i in range(n):
        ts = t + i * 1e-3
        roll = rng.random()
        if roll < 0.80:
            quality = 0 if rng.random() < 0.9 else rng.choice((1, 2))
            out.append(
                Reading(ts, f"meter.p{i % 7}" if i % 3 else "meter.kw", rng.uniform(-1e3, 1e3), quality)
            )
        elif roll < 0.83:
            out.append(Reading(ts, "gate.open", rng.random() < 0.5))  # a bool: a flagged quality
        elif roll < 0.86:
            out.append(Reading(ts, "gate.last_plate", rng.choice(PLATES)))  # personal, sealed
        elif roll < 0.88:
            out.append(Reading(ts, "kiosk.systolic", float(rng.randint(100, 180))))  # sensitive, sealed
        elif roll < 0.92:
            payload = {"plate": rng.choice(PLATES), "direction": "in", "privacy": "personal"}
            out.append(Event("vehicle_passage", "gate", "info", payload, ts))
        elif roll < 0.94:
            out.append(measurement(ts, resident=f"R-{rng.randint(1, 9)}"))  # sensitive, sealed
        elif roll < 0.96:
            payload = {"point": "gate.last_plate", "value": rng.choice(PLATES), "rule": "plate_seen"}
            out.append(Event("alert", "rules.plate_seen", "warning", payload, ts))
        else:
            out.append(Event("device_online", "meter", "info", {"n": i}, ts))
    return out


def both_ways(
    svc: Any, monkeypatch: pytest.MonkeyPatch, consumer: str, after: int, limit: int
) -> tuple[Any, Any]:
    """(the page as served with the mixed read, the page the row-by-row read gives), each with
    how many records the consumer's filter withheld while building it."""
    f = svc.filter_for(consumer)
    before = (f.withheld_privacy, f.withheld_filter)
    monkeypatch.setattr(svc, "row_reads_after_miss", 0)
    fast = svc.page(consumer, after, limit)
    fast_withheld = (f.withheld_privacy - before[0], f.withheld_filter - before[1])
    with monkeypatch.context() as m:
        m.setattr(svc.reader, "read_plain", lambda *a: None)
        slow = svc.page(consumer, after, limit)
    slow_withheld = (
        f.withheld_privacy - before[0] - fast_withheld[0],
        f.withheld_filter - before[1] - fast_withheld[1],
    )
    return (fast, fast_withheld), (slow, slow_withheld)


async def test_mixed_pages_are_byte_for_byte_the_row_by_row_pages(
    tmp_path: Path,
    master: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc, city_secret = site_for(master, tmp_path, monkeypatch)
    async with running_site(tmp_path, doc) as rt:
        rt.hub.register_points(POINTS)
        rng = random.Random(7)
        n = 1500
        rt.journal.append(records(rng, n, time.time()))
        end = await rt.journal.flush()
        start = end - n
        # gaps (retention) and readings journaled while the clock was untrusted (a flagged quality)
        for seq in rng.sample(range(start + 1, end), 40):
            sql(rt.journal, "DELETE FROM journal WHERE seq = ?", (seq,))
        held = [
            s for (s,) in sql(rt.journal, "SELECT seq FROM journal WHERE seq > ? AND kind IS NULL", (start,))
        ]
        for seq in rng.sample(held, 10):
            sql(rt.journal, "UPDATE journal SET quality = quality + 8 WHERE seq = ?", (seq,))
        [(blobs,)] = sql(
            rt.journal,
            "SELECT count(*) FROM journal WHERE seq > ? AND (typeof(value) = 'blob' OR typeof(payload) = 'blob')",
            (start,),
        )
        assert blobs > 50  # sealed at rest: opened by the read

        svc: Any = rt.web_runner.app[PULL_KEY]
        monkeypatch.setattr(svc, "mixed_share", 1.0)  # every page that is not plain is read mixed
        stream_reads: list[int] = []
        read_stream = svc.reader.read_stream

        def counted(after: int, limit: int) -> Any:
            stream_reads.append(after)
            return read_stream(after, limit)

        monkeypatch.setattr(svc.reader, "read_stream", counted)
        windows = [(start, n), (start, 10_000), (end - 1, 1), (end + 100, 10)]
        windows += [(rng.randint(start - 5, end), rng.choice((1, 2, 3, 7, 10, 64, 500))) for _ in range(60)]
        mixed = expected = 0
        for consumer in CONSUMERS:
            private = svc.shaper_for(consumer).personal_points()
            for after, limit in windows:
                expected += svc.reader.read_plain(after, limit, private) is None  # not plain alone
                stream_reads.clear()
                mixed_before = svc.mixed_pages
                (fast, fast_withheld), (slow, slow_withheld) = both_ways(
                    svc, monkeypatch, consumer, after, limit
                )
                where = (consumer, after, limit)
                assert len(stream_reads) == 1, where  # the row read's, not the mixed one's
                assert fast.body == slow.body, where
                assert fast == slow, where  # counts, rows, next, more, sealed rows as stored and opened
                assert fast_withheld == slow_withheld, where
                mixed += svc.mixed_pages - mixed_before
        assert mixed == expected > len(windows) * len(CONSUMERS) // 2  # every page not plain alone

        whole = {who: svc.page(who, start, n) for who in CONSUMERS}
        assert whole["public"].counts == {}
        assert set(whole["bms"].counts) == {"personal"}
        for who in CONSUMERS:
            assert all(p.encode() not in whole[who].body for p in PLATES), who
        mine = pseudonym(city_secret, PLATES[0]).encode()
        assert mine in whole["city"].body and mine not in whole["bms"].body
        assert whole["city"].sealed and len(whole["city"].sealed) == len(whole["city"].opened)
        assert b"clock_untrusted" in whole["city"].body and b'"quality":"stale"' in whole["city"].body


async def test_one_event_among_ten_thousand_readings_is_served_by_the_mixed_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page of a stream with events: before, any event sent the page to the row read."""
    monkeypatch.setenv("CITY_TOKEN", "city-token-0123456789")
    doc = {"consumers": [{"id": "city", "token_env": "CITY_TOKEN"}]}
    async with running_site(tmp_path, doc) as rt:
        rt.hub.register_points(POINTS)
        t = time.time()
        rows: list[Any] = [Reading(t + i * 1e-4, f"dev{i % 50}.p{i % 500}", i * 0.5) for i in range(9_998)]
        rows[4_000:4_000] = [Event("vehicle_passage", "gate", "info", {"plate": PLATES[0]}, t + 0.4)]
        rows[7_000:7_000] = [Reading(t + 0.7, "gate.last_plate", PLATES[1])]
        rt.journal.append(rows)
        end = await rt.journal.flush()
        start = end - 10_000
        svc: Any = rt.web_runner.app[PULL_KEY]
        stream_reads: list[int] = []
        read_stream = svc.reader.read_stream
        monkeypatch.setattr(svc.reader, "read_stream", lambda *a: stream_reads.append(1) or read_stream(*a))

        url = f"http://127.0.0.1:{rt.web_port}/api/v1/stream?after={start}&limit=10000"
        status, page, _ = await call("GET", url, "city-token-0123456789")
        assert status == 200 and len(page["items"]) == 10_000 and page["next"] == end
        assert svc.mixed_pages == 1 and stream_reads == []
        event = page["items"][4_000]
        assert event["kind"] == "vehicle_passage" and event["payload"]["plate"] is None  # no key: withheld
        assert page["items"][7_000]["value"] is None
        monkeypatch.setattr(svc, "mixed_share", 0.0)
        assert orjson.loads(svc.page("city", start, 10_000).body) == page  # the row read's page
        assert stream_reads == [1]


async def test_pages_with_many_rows_that_are_not_plain_are_read_row_by_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above MIXED_SHARE of a page the mixed read is refused after its check alone, and the
    consumer's next pages skip it; a page whose only difference from a plain one is a gap in its
    seqs is read by column."""
    async with running_site(tmp_path, {"devices": []}) as rt:
        svc: Any = rt.web_runner.app[PULL_KEY]
        t = 1.7e9
        events = [Event("device_online", "meter", "info", {"i": i}, t) for i in range(6)]
        rt.journal.append(
            [Reading(t, "meter.kw", 1.0), *events, *(Reading(t, "meter.kw", float(i)) for i in range(20))]
        )
        end = await rt.journal.flush()
        start = end - 27
        assert svc.reader.read_plain(start, 10, frozenset(), 5) is None  # 6 of 10
        assert svc.reader.read_plain(start, 10, frozenset(), 6) is not None
        sql(rt.journal, "DELETE FROM journal WHERE seq = ?", (end - 5,))
        gap = svc.reader.read_plain(end - 12, 10, frozenset(), 5)
        assert gap is not None and gap.others is not None and gap.others.rows == []
        assert list(gap.seqs) == [s for s in range(end - 11, end + 1) if s != end - 5][:10]

        tried = record_plain_reads(svc, monkeypatch)
        monkeypatch.setattr(svc, "row_reads_after_miss", 2)
        bodies = [svc.page("city", start, 10).body, *(svc.page("city", end - 12, 10).body for _ in range(3))]
        assert [p is None for p in tried] == [True, False]  # a miss, two row reads, then mixed again
        assert svc.mixed_pages == 1
        monkeypatch.setattr(svc, "mixed_share", 0.0)
        monkeypatch.setattr(svc, "row_reads_after_miss", 0)
        assert [svc.page("city", a, 10).body for a in (start, end - 12, end - 12, end - 12)] == bodies
