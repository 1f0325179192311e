"""A closed day's `kpi_daily` and an acknowledgement's `alert_ack` leave the gateway: through an
HTTP sink to a real receiver and through the pull API; the KPI API answers the same day, as JSON
and CSV, with the acknowledgement's time in its alert figures."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api.tokens import create_token
from edge.kpi.days import Days
from edge.privacy.pseudonym import WITHHELD
from edge.runtime import Runtime
from tests.support.site import load
from tests.support.waiting import until, until_async
from tests.sync.helpers import Collector, sink

CITY = "city-token-0123456789"


def shipped(col: Collector, kind: str) -> list[dict[str, Any]]:
    out = []
    for body in col.bodies.get("/ingest", []):
        out += [e for e in json.loads(body)["events"] if e["kind"] == kind]
    return out


async def call(method: str, url: str, token: str, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as s, s.request(method, url, headers=headers, **kw) as r:
        text = await r.text()
        return r.status, json.loads(text) if r.content_type.endswith("json") else text


async def pulled(base: str, kinds: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    after, more = 0, True
    while more:
        status, page = await call("GET", f"{base}/api/v1/stream?after={after}&limit=1000", CITY)
        assert status == 200, page
        for item in page["items"]:
            if item.get("kind") in kinds:
                found[item["kind"]] = item
        after, more = page["next"], page["more"]
    return found


async def test_kpi_daily_and_alert_ack_reach_a_receiver_and_the_pull_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CITY_TOKEN", CITY)
    days = Days("Asia/Shanghai")
    day, _start, midnight = days.at(time.time())
    offset = midnight - 3.0 - time.time()  # the site's clock: 3 s before a Shanghai midnight

    def clock() -> float:
        return time.time() + offset

    async with Collector().serving("/ingest") as col:
        doc = {
            "site": {"id": "kpi-up", "name": "KPI", "timezone": "Asia/Shanghai"},
            "kpi": {"interval": "100ms", "close_after": "1s", "ack_within": {"warning": "1h"}},
            "upstream": [sink(col.url("/ingest"))],
            "consumers": [{"id": "city", "token_env": "CITY_TOKEN"}],
            "devices": [
                {
                    "id": "flaky",
                    "driver": "sim",
                    "points": [{"name": "power", "signal": "random", "interval": "50ms"}],
                    "faults": [{"type": "dropout", "every": "1h", "duration": "1s", "first_after": "500ms"}],
                }
            ],
        }
        rt = Runtime(load(tmp_path, doc), clock=clock)
        await rt.start()
        try:
            base = f"http://127.0.0.1:{rt.web_port}"
            await until(lambda: shipped(col, "kpi_daily"), timeout=20, what="kpi_daily at the receiver")
            (daily,) = shipped(col, "kpi_daily")
            assert daily["payload"]["day"] == day and daily["source"] == "kpi-up"
            flaky = daily["payload"]["devices"]["flaky"]
            assert 0 < flaky["availability"] < 0.99 and flaky["below_target"] == [
                "availability",
                "completeness",
            ]

            # the day below target raised an alert; an operator acknowledges it
            await until(lambda: shipped(col, "alert"), timeout=10, what="the KPI alert at the receiver")
            (alert,) = shipped(col, "alert")
            assert alert["payload"]["day"] == day and alert["severity"] == "warning"
            operator = create_token(rt.state, "operator", ["read", "write"])  # type: ignore[arg-type]
            status, body = await call(
                "POST", f"{base}/api/v1/alerts/{alert['seq']}/ack", operator, json={"comment": "技术员已到场"}
            )
            assert status == 200, body
            await until(lambda: shipped(col, "alert_ack"), timeout=10, what="alert_ack at the receiver")
            (ack,) = shipped(col, "alert_ack")
            assert ack["payload"]["seq"] == alert["seq"]
            assert ack["payload"]["rule"] == "kpi" and ack["payload"]["severity"] == "warning"
            assert ack["payload"]["comment"] == "技术员已到场" and ack["payload"]["privacy"] == "personal"
            # who acknowledged is personal: a recipient without a pseudonym key does not get the name
            assert ack["payload"]["user"] is None and ack["payload"]["user_withheld"] == WITHHELD
            waited = ack["payload"]["acked_at"] - alert["ts"]

            # the pull API carries both
            both = await pulled(base, {"kpi_daily", "alert_ack"})
            assert both["kpi_daily"]["payload"]["day"] == day
            assert both["alert_ack"]["payload"]["seq"] == alert["seq"]

            # the KPI API: the closed day with the acknowledgement's time, as JSON and as CSV
            reader = create_token(rt.state, "viewer", ["read"])  # type: ignore[arg-type]

            # the alert was raised after midnight: it counts on the next day, today
            today = days.day_of(clock())
            url = f"{base}/api/v1/kpi?from={day}&to={today}"

            async def acked() -> bool:
                status, report = await call("GET", url, reader)
                assert status == 200, report
                return bool(report["days"][-1]["alerts"]["acknowledged"] == 1)

            await until_async(acked, timeout=10, what="the acknowledgement in the KPI figures")
            status, report = await call("GET", url, reader)
            closed, current = report["days"]
            assert closed["day"] == day and closed["closed"] and not current["closed"]
            assert closed["alerts"]["count"] == 0 and current["alerts"]["by_severity"] == {"warning": 1}
            assert current["alerts"]["ack_mean_s"] == pytest.approx(waited, abs=0.01)
            assert current["alerts"]["not_acked_within_target"] == {}
            assert report["availability_matrix"]["devices"]["flaky"][0] == flaky["availability"]
            # the sink has acknowledged every record of the closed day, each within seconds
            central = closed["delivery"]["central"]
            assert central["kind"] == "sink" and central["delivered_share"] == 1.0
            assert 0 <= central["delay_p50_s"] <= central["delay_p95_s"] < 10
            status, text = await call("GET", f"{url}&format=csv", reader)
            assert status == 200
            table = [r for r in csv.DictReader(io.StringIO(text)) if r["day"] == day]
            assert [r["device"] for r in table] == ["flaky", "*"]
            assert float(table[0]["availability"]) == pytest.approx(flaky["availability"], abs=1e-6)
            assert table[0]["below_target"] == "availability completeness"
        finally:
            await rt.stop()


async def test_the_kpi_api_refuses_bad_input_and_is_in_the_openapi_document(tmp_path: Path) -> None:
    doc = {
        "kpi": {},
        "devices": [{"id": "m", "driver": "sim", "points": [{"name": "p", "interval": "1s"}]}],
    }
    rt = Runtime(load(tmp_path, doc))
    await rt.start()
    try:
        base = f"http://127.0.0.1:{rt.web_port}"
        reader = create_token(rt.state, "viewer", ["read"])  # type: ignore[arg-type]
        for query, says in (
            ("from=2026-13-01", "YYYY-MM-DD"),
            ("from=2026-03-02&to=2026-03-01", "after"),
            ("from=2024-01-01&to=2026-01-01", "at most 400"),
            ("device=nope", "known: m"),
            ("format=xml", "json or csv"),
        ):
            status, body = await call("GET", f"{base}/api/v1/kpi?{query}", reader)
            assert status == 400 and says in body["detail"], (query, body)
        status, body = await call("GET", f"{base}/api/v1/kpi", "not-a-token")
        assert status == 401
        status, report = await call("GET", f"{base}/api/v1/kpi?device=m", reader)
        assert status == 200 and report["timezone"] == "Asia/Shanghai"
        assert report["days"][-1]["day"] == report["today"] and not report["days"][-1]["closed"]
        status, spec = await call("GET", f"{base}/api/v1/openapi.json", reader)
        params = {p["name"] for p in spec["paths"]["/api/v1/kpi"]["get"]["parameters"]}
        assert params == {"from", "to", "device", "format"}
    finally:
        await rt.stop()


async def test_a_site_without_a_kpi_section_answers_404(tmp_path: Path) -> None:
    rt = Runtime(load(tmp_path, {"devices": []}))
    await rt.start()
    try:
        reader = create_token(rt.state, "viewer", ["read"])  # type: ignore[arg-type]
        status, body = await call("GET", f"http://127.0.0.1:{rt.web_port}/api/v1/kpi", reader)
        assert status == 404 and "kpi:" in body["detail"]
    finally:
        await rt.stop()
