"""Audit of reads: a response that returns personal or sensitive data to its caller writes one
`read` entry (who, the route, records per class); redacted records and public-only responses
write nothing, and the chain still verifies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from edge import audit
from edge.api.blobs import BLOBS_KEY
from edge.model import Event, PointInfo, PointType, Privacy, Reading
from tests.support.site import running_site
from tests.sync.test_pull_api import CITY, call
from tests.sync.test_pull_api import site as pull_site  # noqa: F401  (the fixture)
from tests.web.conftest import signed_in_roles
from tests.web.test_privacy import SITE, _blood_pressure


def reads(rt: Any) -> list[dict[str, Any]]:
    assert rt.state is not None
    return [e for e in reversed(audit.entries(rt.state)) if e["action"] == "read"]


def verified(rt: Any) -> bool:
    result = audit.verify(rt.state)
    return result.ok and result.checked > 0


async def test_event_reads_are_audited_per_class_and_redacted_ones_are_not(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        now = time.time()
        rt.hub.ingest(
            [
                _blood_pressure(151, now),
                _blood_pressure(128, now + 0.001),
                Event(
                    "vehicle_passage", "kiosk-1", payload={"plate": "沪A12345", "privacy": "personal"}, ts=now
                ),
                Event("bin_full", "kiosk-1", payload={"fill_pct": 91}, ts=now),
            ]
        )
        await rt.journal.flush()
        async with signed_in_roles(rt) as clients:
            before = len(reads(rt))
            t0 = time.time()
            await clients["admin"].json("GET", "/api/v1/events?source=kiosk-1")
            entries = reads(rt)[before:]
            assert len(entries) == 1  # one entry per response, not per record
            entry = entries[0]
            assert entry["actor"] == "boss" and entry["target"] == "GET /api/v1/events"
            assert entry["detail"]["classes"] == {"personal": 1, "sensitive": 2}
            assert entry["detail"]["kind"] == "user" and entry["ts"] >= t0

            # the technician's sensitive payloads are redacted: only the plate was read
            await clients["technician"].json("GET", "/api/v1/events?source=kiosk-1")
            entry = reads(rt)[-1]
            assert entry["actor"] == "technician" and entry["detail"]["classes"] == {"personal": 1}

            # a viewer sees only public data: nothing is written, however often it refreshes
            count = len(reads(rt))
            for _ in range(3):
                await clients["viewer"].json("GET", "/api/v1/events?source=kiosk-1")
            await clients["admin"].json("GET", "/api/v1/events?kind=bin_full")
            assert len(reads(rt)) == count
        assert verified(rt)


async def test_a_pull_page_with_personal_records_is_audited_with_its_consumer(
    pull_site: Any,  # noqa: F811
) -> None:
    """The pull API's site (consumer `city`, a sensitive kiosk point, a public meter) and a
    personal string point."""
    rt, base = pull_site, pull_site.base
    rt.hub.register_points(
        [PointInfo("gate.last_plate", "gate", "last_plate", type=PointType.STR, privacy=Privacy.PERSONAL)]
    )
    t = time.time()
    rt.hub.ingest([Reading(t + i * 1e-3, "meter.kw", float(i)) for i in range(20)])
    public_end = await rt.journal.flush()
    status, page, _ = await call("GET", f"{base}/api/v1/stream?after=0&limit=100", CITY)
    assert status == 200 and len(page["items"]) == public_end
    assert reads(rt) == []  # a public-only page writes nothing

    rt.hub.ingest(
        [Reading(t + 1 + i * 1e-3, "gate.last_plate", f"沪A1234{i}") for i in range(3)]
        + [Reading(t + 2, "kiosk.systolic", 151.0)]  # above the consumer's class: withheld
        + [Reading(t + 3, "meter.kw", 1.0)]
    )
    await rt.journal.flush()
    url = f"{base}/api/v1/stream?after={public_end}&limit=100"
    status, page, _ = await call("GET", url, CITY)
    assert status == 200 and {i["point"] for i in page["items"]} == {"gate.last_plate", "meter.kw"}
    [entry] = reads(rt)
    assert entry["target"] == "GET /api/v1/stream"
    assert entry["detail"]["consumer"] == "city" and entry["detail"]["kind"] == "consumer"
    assert entry["detail"]["classes"] == {"personal": 3}

    status, latest, _ = await call("GET", f"{base}/api/v1/latest", CITY)
    assert status == 200 and "gate.last_plate" in {r["point"] for r in latest["latest"]}
    entry = reads(rt)[-1]
    assert entry["target"] == "GET /api/v1/latest" and entry["detail"]["classes"] == {"personal": 1}
    assert verified(rt)


async def test_a_blob_download_is_audited_as_a_read_of_personal_data(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        blob = rt.web_runner.app[BLOBS_KEY].put("cam", b"\xff\xd8 a picture of the gate \xff\xd9")
        async with signed_in_roles(rt) as clients:
            resp = await clients["technician"].request("GET", f"/api/v1/blobs/{blob.id}")
            assert resp.status == 200
        assert rt.state is not None
        [entry] = [e for e in audit.entries(rt.state) if e["target"] == blob.id]
        assert entry["actor"] == "technician"
        assert entry["detail"]["classes"] == {"personal": 1}
        assert entry["detail"]["route"] == f"GET /api/v1/blobs/{blob.id}"
        assert verified(rt)


async def test_a_live_stream_is_audited_once_per_connection_when_it_ends(tmp_path: Path) -> None:
    from edge.state import StateDB

    async with running_site(tmp_path, SITE) as rt:
        state_path = rt.site.storage.resolved_state_path()
        async with signed_in_roles(rt) as clients:
            admin = clients["admin"]
            # readings of no point: only events, so the kiosk's own sensitive readings stay out
            async with admin.http.get(admin.base + "/api/v1/live?points=none.x") as resp:
                assert resp.status == 200
                for systolic in (151, 152):
                    rt.hub.ingest([_blood_pressure(systolic, time.time())])
                seen = 0
                async with asyncio.timeout(10):
                    async for line in resp.content:
                        seen += line.count(b"systolic_mmhg")
                        if seen == 2:
                            break
                assert reads(rt) == []  # not per batch: the connection is summarised when it ends
                await rt.stop()  # ends the stream from the gateway's side
    state = StateDB(state_path)
    try:
        [entry] = [e for e in audit.entries(state) if e["action"] == "read"]
        assert entry["actor"] == "boss" and entry["target"] == "GET /api/v1/live"
        assert entry["detail"]["classes"] == {"sensitive": 2} and entry["detail"]["connection_end"] is True
        assert audit.verify(state).ok
    finally:
        state.close()


async def test_history_and_device_points_of_a_sensitive_point_are_audited(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        now = time.time()
        rt.hub.ingest([Reading(now + i * 1e-3, "kiosk-1.last_systolic", 150.0 + i) for i in range(3)])
        await rt.journal.flush()
        async with signed_in_roles(rt) as clients:
            count = len(reads(rt))
            for _ in range(2):  # the viewer sees the point redacted: nothing read
                await clients["viewer"].json("GET", "/api/v1/devices/kiosk-1/points")
            assert len(reads(rt)) == count

            history = await clients["admin"].json(
                "GET", f"/api/v1/history?point=kiosk-1.last_systolic&since={now - 1}&resolution=raw"
            )
            entry = reads(rt)[-1]
            assert entry["target"] == "GET /api/v1/history"
            assert (
                entry["detail"]["classes"] == {"sensitive": len(history["readings"])} and history["readings"]
            )

            await clients["admin"].json("GET", "/api/v1/devices/kiosk-1/points")
            entry = reads(rt)[-1]
            assert entry["target"] == "GET /api/v1/devices/kiosk-1/points"
            assert entry["detail"]["classes"] == {"sensitive": 1}
        assert verified(rt)
