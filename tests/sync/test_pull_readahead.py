"""Read-ahead in the pull API: while a consumer stores a page, the next one is built; it is served
only when it is exactly what a read at the time of the request gives (nothing deleted from it, no
subject forgotten, no point's class changed, nothing new behind a short page), and is audited as
a fresh read is. One page per consumer, dropped when another is asked for or nobody comes back."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from edge import audit
from edge.api import pull
from edge.api.pull import PULL_KEY, Page
from edge.model import PointInfo, PointType, Privacy, Reading
from edge.privacy import subjects
from tests.privacy.conftest import (
    RESIDENT,
    SYSTOLIC,
    master,  # noqa: F401  (the fixture)
    measurement,
    site_doc,
)
from tests.store.helpers import sql
from tests.support.site import running_site
from tests.sync.helpers import wait_for
from tests.sync.test_pull_api import CITY, call, ingest
from tests.sync.test_pull_api import site as pull_site  # noqa: F401  (the fixture)

STREAM = "{base}/api/v1/stream?after={after}&limit={limit}"


async def read_ahead(rt: Any, consumer: str = "city") -> Page:
    """The page built ahead for `consumer`, once it is built."""
    svc = rt.web_runner.app[PULL_KEY]

    def built() -> bool:
        task = svc.ahead(consumer)
        return task is not None and task.done()

    await wait_for(built, 10, "the next page to be read ahead")
    page = svc.ahead(consumer).result()
    assert page is not None
    return page


async def fresh(rt: Any, after: int, limit: int) -> Any:
    """The page a read now gives, built as a request without a read-ahead builds it."""
    svc = rt.web_runner.app[PULL_KEY]
    return orjson.loads((await asyncio.to_thread(svc.page, "city", after, limit)).body)


async def page_after(rt: Any, after: int, limit: int, token: str = CITY) -> Any:
    status, page, _ = await call("GET", STREAM.format(base=rt.base, after=after, limit=limit), token)
    assert status == 200
    return page


async def first_page(rt: Any, n: int) -> tuple[int, Any, Any]:
    """`n` public readings ingested and committed: (the seq before them, the pull service, the
    first page of 10 after it)."""
    ingest(rt, n)
    start = await rt.journal.flush() - n
    return start, rt.web_runner.app[PULL_KEY], await page_after(rt, start, 10)


def reads(rt: Any) -> list[dict[str, Any]]:
    return [e for e in audit.entries(rt.state) if e["action"] == "read"]


async def test_the_page_read_ahead_is_served_as_a_fresh_read_gives_it_and_audited(
    pull_site: Any,  # noqa: F811
) -> None:
    site = pull_site
    site.hub.register_points(
        [PointInfo("gate.last_plate", "gate", "last_plate", type=PointType.STR, privacy=Privacy.PERSONAL)]
    )
    ingest(site, 10)
    start = await site.journal.flush() - 10
    t = time.time()
    site.hub.ingest(
        [Reading(t + i * 1e-3, "gate.last_plate", f"沪A1234{i}") for i in range(4)]
        + [Reading(t + 0.01, "kiosk.systolic", 151.0)]  # above the consumer's class: withheld
        + [Reading(t + 0.02 + i * 1e-3, "meter.kw", float(i)) for i in range(10)]
    )
    await site.journal.flush()
    svc = site.web_runner.app[PULL_KEY]

    first = await page_after(site, start, 10)
    assert first["more"] and reads(site) == []  # public only
    ahead = await read_ahead(site)
    assert (ahead.after, ahead.limit) == (first["next"], 10)
    assert reads(site) == []  # built, not read: nothing is audited yet

    second = await page_after(site, first["next"], 10)
    assert svc.read_ahead_served == 1 and svc.read_ahead_stale == 0
    assert second == await fresh(site, first["next"], 10)
    plates = [i["value"] for i in second["items"] if i["point"] == "gate.last_plate"]
    assert plates == [None] * 4  # city has no pseudonym key: a personal string is withheld
    assert "kiosk.systolic" not in {i["point"] for i in second["items"]}
    [entry] = reads(site)  # served: audited as a fresh read is
    assert entry["detail"]["consumer"] == "city" and entry["detail"]["classes"] == {"personal": 4}


async def test_a_forget_between_two_pages_is_honoured(
    tmp_path: Path,
    master: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CITY_TOKEN", CITY)
    doc = yaml.safe_load(site_doc(master))
    doc["consumers"] = [{"id": "city", "token_env": "CITY_TOKEN", "max_privacy": "sensitive"}]
    async with running_site(tmp_path, doc) as rt:
        rt.base = f"http://127.0.0.1:{rt.web_port}"
        svc = rt.web_runner.app[PULL_KEY]
        ingest(rt, 10)
        start = await rt.journal.flush() - 10
        rt.hub.ingest([measurement()])
        ingest(rt, 20)
        await rt.journal.flush()

        first = await page_after(rt, start, 10)
        ahead = await read_ahead(rt)
        assert str(SYSTOLIC).encode() in ahead.body  # the measurement, opened, is in the page held

        erased = await asyncio.to_thread(subjects.forget, rt.site, rt.journal.sealer, rt.state, RESIDENT)
        assert erased.had_key
        second = await page_after(rt, first["next"], 10)
        assert svc.read_ahead_stale == 1 and svc.read_ahead_served == 0
        assert second == await fresh(rt, first["next"], 10)
        [bp] = [i for i in second["items"] if i.get("kind") == "blood_pressure"]
        assert bp["payload"] == {"erased": True} and str(SYSTOLIC) not in orjson.dumps(second).decode()


async def test_records_deleted_between_two_pages_are_not_served(
    pull_site: Any,  # noqa: F811
) -> None:
    """Retention, or room made on a full disk, deletes records a page read ahead may hold."""
    site = pull_site
    _, svc, first = await first_page(site, 30)
    ahead = orjson.loads((await read_ahead(site)).body)
    gone = ahead["items"][3]["seq"]
    sql(site.journal, "DELETE FROM journal WHERE seq = ?", (gone,))

    second = await page_after(site, first["next"], 10)
    assert svc.read_ahead_stale == 1
    assert gone not in [i["seq"] for i in second["items"]] and len(second["items"]) == 10
    assert second == await fresh(site, first["next"], 10)


async def test_records_committed_behind_a_short_page_are_served(
    pull_site: Any,  # noqa: F811
) -> None:
    """The last page read ahead had what was committed then; the consumer asks for it after
    more came: it gets them, and `more` as it is now."""
    site = pull_site
    _, svc, first = await first_page(site, 15)
    ahead = await read_ahead(site)
    assert (ahead.rows, ahead.more) == (5, False)
    ingest(site, 10)
    await site.journal.flush()

    second = await page_after(site, first["next"], 10)
    assert svc.read_ahead_stale == 1
    assert len(second["items"]) == 10 and second["more"] is True
    assert second == await fresh(site, first["next"], 10)


async def test_records_committed_while_a_short_page_is_read_are_served(
    pull_site: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A commit between the read-ahead's query and its look at the committed seq: the page
    did not see those records, so it is not the page a read now gives."""
    site = pull_site
    ingest(site, 15)
    start = await site.journal.flush() - 15
    svc = site.web_runner.app[PULL_KEY]
    queried, committed = threading.Event(), threading.Event()

    def read_then_wait(read: Any) -> Any:
        def wrapped(after: int, limit: int, *args: Any) -> Any:
            rows = read(after, limit, *args)
            if after > start:  # the page read ahead
                queried.set()
                committed.wait(10)
            return rows

        return wrapped

    # a page of plain readings is read by column, any other row by row: either way
    for method in ("read_plain", "read_stream"):
        monkeypatch.setattr(svc.reader, method, read_then_wait(getattr(svc.reader, method)))
    first = await page_after(site, start, 10)
    await wait_for(queried.is_set, 10, "the read-ahead's query")
    ingest(site, 10)
    await site.journal.flush()
    committed.set()
    assert (await read_ahead(site)).rows == 5

    second = await page_after(site, first["next"], 10)
    assert len(second["items"]) == 10 and svc.read_ahead_stale == 1
    assert second == await fresh(site, first["next"], 10)


async def test_a_point_whose_class_rises_between_two_pages_is_withheld(
    pull_site: Any,  # noqa: F811
) -> None:
    site = pull_site
    site.hub.register_points([PointInfo("health.last_bp", "health", "last_bp")])
    t = time.time()
    site.hub.ingest([Reading(t + i * 1e-3, "health.last_bp", 120.0 + i) for i in range(30)])
    start = await site.journal.flush() - 30
    svc = site.web_runner.app[PULL_KEY]
    first = await page_after(site, start, 10)
    assert len(orjson.loads((await read_ahead(site)).body)["items"]) == 10  # public when read ahead

    site.hub.register_points([PointInfo("health.last_bp", "health", "last_bp", privacy=Privacy.SENSITIVE)])
    second = await page_after(site, first["next"], 10)
    assert svc.read_ahead_stale == 1
    assert second["items"] == [] and second["next"] == first["next"] + 10


async def test_one_page_per_consumer_dropped_when_not_asked_for(
    pull_site: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site = pull_site
    start, svc, first = await first_page(site, 40)
    await read_ahead(site)
    # another page than the one read ahead: read afresh, and the next one after it is held
    again = await page_after(site, start, 10)
    assert again == first and svc.read_ahead_missed == 1 and svc.read_ahead_served == 0
    assert len(svc._ahead) == 1 and (await read_ahead(site)).after == first["next"]

    monkeypatch.setattr(pull, "READ_AHEAD_TTL", 0.2)
    await page_after(site, first["next"], 10)
    assert svc.read_ahead_served == 1
    await wait_for(lambda: svc.ahead("city") is None, 10, "the page nobody asked for to be dropped")
    assert svc.read_ahead_missed == 2


async def test_the_page_read_ahead_is_checked_while_the_ack_commits(
    pull_site: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ack=true the check that the page held is still what a read gives runs while the ack
    is committed, not after it; a refused ack still serves no page."""
    site = pull_site
    start, svc, first = await first_page(site, 40)
    await read_ahead(site)
    checking = threading.Event()
    count_range = svc.reader.count_range

    def counted(after: int, upto: int) -> int:
        checking.set()
        return count_range(after, upto)

    set_cursor = site.journal.set_cursor

    async def ack_once_checked(*args: Any, **kw: Any) -> None:
        await wait_for(checking.is_set, 10, "the page read ahead to be checked")
        await set_cursor(*args, **kw)

    monkeypatch.setattr(svc.reader, "count_range", counted)
    monkeypatch.setattr(site.journal, "set_cursor", ack_once_checked)
    url = STREAM.format(base=site.base, after=first["next"], limit=10) + "&ack=true"
    status, second, _ = await call("GET", url, CITY)
    assert status == 200 and svc.read_ahead_served == 1
    assert site.journal.get_cursor("city") == first["next"]
    assert second == await fresh(site, first["next"], 10)

    await read_ahead(site)  # the third page, held
    checking.clear()
    url = STREAM.format(base=site.base, after=start, limit=10) + "&ack=true"
    status, body, _ = await call("GET", url, CITY)
    assert status == 409 and "items" not in body
    assert site.journal.get_cursor("city") == first["next"]
    third = await page_after(site, second["next"], 10)
    assert third == await fresh(site, second["next"], 10) and len(third["items"]) == 10
