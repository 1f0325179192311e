"""A rule's alert whose resident was forgotten reads as erased (`{"erased": true}`): its kind, rule
and time stay in clear on its journal row, its state and point do not. On a real sealed gateway,
forgotten while it runs: the active-alerts list does not show it as active (which it did for
good, having no `state`), and the KPI fold of a day not yet folded still counts it among the
rules' actions, as it did before the forget."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edge.kpi.component import KpiComponent
from tests.privacy.conftest import BP_HIGH_RULE, RESIDENT, SYSTOLIC, measurement, site_doc
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.support.waiting import until_async
from tests.web.conftest import Client, signed_in_roles

ACTIVE = "/api/v1/alerts/active"
KPI = """
kpi: {interval: 1h}
"""


@contextlib.asynccontextmanager
async def forgotten_alert(tmp_path: Path, master: Path) -> AsyncIterator[tuple[Any, Client]]:
    """A running sealed gateway (with the KPI fold) that journaled one alert on the resident's
    measurement, shown active, then forgot the resident (`edge privacy forget`) and reads that
    alert as erased; with an admin's client."""
    config = site_file(tmp_path, site_doc(master) + KPI)
    async with running_site(tmp_path, config.read_text(encoding="utf-8")) as rt:
        rt.components["rules"].put(BP_HIGH_RULE, "test", "create")
        rt.hub.ingest([measurement(time.time(), RESIDENT, SYSTOLIC)])

        async def alerts() -> list[dict[str, Any]]:
            await rt.journal.flush()
            return [r for r in rt.journal.tail(100) if r.get("kind") == "alert"]

        async def alerted() -> bool:
            return len(await alerts()) == 1

        await until_async(alerted, what="the resident's alert journaled")
        async with signed_in_roles(rt) as clients:
            admin = clients["admin"]
            before = (await admin.json("GET", ACTIVE))["alerts"]
            assert [(a["source"], f"{SYSTOLIC}/71" in a["payload"]["message"]) for a in before] == [
                ("bp-high", True)
            ]
            done = await asyncio.to_thread(
                edge_cli, "privacy", "forget", "-c", str(config), "--subject", RESIDENT
            )
            assert done.returncode == 0, done.stderr

            async def erased() -> bool:
                return [a["payload"] for a in await alerts()] == [{"erased": True}]

            await until_async(erased, what="the running gateway reading the alert as erased")
            yield rt, admin


async def test_an_erased_alert_is_not_listed_as_active(tmp_path: Path, master: Path) -> None:
    async with forgotten_alert(tmp_path, master) as (_rt, admin):
        assert (await admin.json("GET", ACTIVE))["alerts"] == []


async def test_an_erased_alert_still_counts_as_a_rule_action_in_a_day_not_yet_folded(
    tmp_path: Path, master: Path
) -> None:
    async with forgotten_alert(tmp_path, master) as (rt, _admin):
        comp = rt.component(KpiComponent)
        assert comp is not None
        await comp.step()  # the first fold of the alert: after the forget
        assert comp.today()["rule_actions"] == {"executed": 1, "failed": 0}
