"""A pattern rule raises one alert per matching point, all with the rule as their source: the
active alerts list each of them until its own point clears (it listed the newest per rule only,
so three full bins showed as one, and one bin's clearing hid the two still full), read from the
journal and, once rolled up, from the trend index."""

from __future__ import annotations

from typing import Any

from edge.model import Event
from tests.support.waiting import until_async
from tests.web.conftest import Client


def alert(state: str, point: str) -> Event:
    payload = {"rule": "bin-full", "state": state, "message": f"{point} {state}", "point": point}
    return Event("alert", "bin-full", "warning" if state == "fired" else "info", payload)


async def active(admin: Client) -> list[str]:
    alerts = (await admin.json("GET", "/api/v1/alerts/active"))["alerts"]
    return sorted(a["payload"]["point"] for a in alerts)


async def test_each_points_alert_is_active_until_its_own_point_clears(site: Any, admin: Client) -> None:
    for point in ("bin-1.fill_pct", "bin-2.fill_pct", "bin-3.fill_pct"):
        site.hub.publish_event(alert("fired", point))
    site.hub.publish_event(alert("cleared", "bin-2.fill_pct"))
    await site.journal.flush()
    assert await active(admin) == ["bin-1.fill_pct", "bin-3.fill_pct"]

    trend = site.components.get("trend")
    assert trend is not None, "the site runs a trend index"
    last = site.journal.committed_seq

    async def rolled_up() -> bool:
        return trend.latest_events("alert")[0] >= last

    await until_async(rolled_up, 20, what="the trend index rolling up the alerts")
    assert await active(admin) == ["bin-1.fill_pct", "bin-3.fill_pct"]
    site.hub.publish_event(alert("cleared", "bin-3.fill_pct"))
    await site.journal.flush()
    assert await active(admin) == ["bin-1.fill_pct"]
