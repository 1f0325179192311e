"""An alert's acknowledgement (who, and a comment that may quote the alert) is sealed in the state
DB when the site has a master key, under the data key of the user who acknowledged, as the
journal's `alert_ack` event is: `edge privacy forget --subject <user>` shreds it, and the events
then say it was acknowledged, when, and that it is erased. Acknowledgements stored in clear before
the key was set are sealed at the next start."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edge.model import Event, Severity
from edge.privacy.keyfile import create_master_key
from tests.support.cli import edge_cli
from tests.support.site import running_site, site_file
from tests.web.conftest import Client, set_up_admin

SITE = """
site: {id: sealed-acks}
PRIVACY
devices:
  - id: kiosk-1
    driver: sim
    points:
      - {name: in_use, type: bool, signal: constant, value: false, interval: 1h}
"""
COMMENT = "called R-90417 about car 沪A23522, BP 187/71"
SECRETS = (b"R-90417", "沪A23522".encode(), b"187/71")
ALERT = {"rule": "bp-very-high", "state": "fired", "privacy": "sensitive"}


def site_doc(master: Path | None) -> str:
    return SITE.replace("PRIVACY", f"privacy: {{master_key_file: {master}}}" if master else "")


def state_bytes(rt: Any) -> bytes:
    """The state DB as it is on disk: the file and its WAL."""
    path = Path(rt.site.storage.resolved_state_path())
    return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def acknowledged(rt: Any) -> int:
    """A sensitive alert, fired and acknowledged with COMMENT by the site's admin (set up here as
    boss); its seq."""
    rt.hub.ingest([Event("alert", "bp-very-high", Severity.CRITICAL, ALERT, time.time())])
    await rt.journal.flush()
    admin = await set_up_admin(Client(f"http://127.0.0.1:{rt.web_port}"), rt, "boss")
    try:
        seq = int((await admin.json("GET", "/api/v1/events?kind=alert"))["events"][0]["seq"])
        await admin.json("POST", f"/api/v1/alerts/{seq}/ack", {"comment": COMMENT})
    finally:
        await admin.close()
    return seq


async def acks_shown(rt: Any, name: str = "boss") -> tuple[dict[str, Any], dict[str, Any]]:
    """The acknowledgement as `name` (signed in again) sees it in the events and the active alerts."""
    c = Client(f"http://127.0.0.1:{rt.web_port}")
    try:
        await c.login(name)
        listed = (await c.json("GET", "/api/v1/events?kind=alert"))["events"][0]["ack"]
        active = (await c.json("GET", "/api/v1/alerts/active"))["alerts"][0]["ack"]
        return listed, active
    finally:
        await c.close()


def stored_rows(rt: Any) -> list[tuple[Any, ...]]:
    """(user, comment, sealed) of each stored acknowledgement."""
    with rt.state.lock:
        rows = [dict(r) for r in rt.state.conn.execute("SELECT * FROM ui_acks")]
    return [(r["user"], r["comment"], r.get("sealed")) for r in rows]


async def test_an_acknowledgement_is_sealed_under_its_user_and_forgetting_them_erases_it(
    tmp_path: Path,
) -> None:
    master = tmp_path / "master.key"
    create_master_key(master)
    config = site_file(tmp_path, site_doc(master))
    doc = config.read_text(encoding="utf-8")
    async with running_site(tmp_path, doc) as rt:
        await acknowledged(rt)
        on_disk = state_bytes(rt)
        assert not [s for s in SECRETS if s in on_disk]
        [(user, comment, sealed)] = stored_rows(rt)
        assert (user, comment) == ("", "") and isinstance(sealed, bytes)
        listed, active = await acks_shown(rt)
        assert {k: listed[k] for k in ("user", "comment")} == {"user": "boss", "comment": COMMENT}
        assert active == listed

    done = edge_cli("privacy", "forget", "-c", str(config), "--subject", "boss")
    assert done.returncode == 0, done.stderr

    async with running_site(tmp_path, doc) as rt:
        listed, active = await acks_shown(rt)
        assert listed == {"ts": listed["ts"], "erased": True}
        assert active == listed
        # the journal's copy says the same
        acks = [r["payload"] for r in rt.journal.read(0, 1000) if r.get("kind") == "alert_ack"]
        assert acks == [{"erased": True}]


async def test_acknowledgements_kept_in_clear_are_sealed_once_the_site_has_a_key(tmp_path: Path) -> None:
    async with running_site(tmp_path, site_doc(None)) as rt:
        await acknowledged(rt)
        assert stored_rows(rt) == [("boss", COMMENT, None)]
        on_disk = state_bytes(rt)
        assert all(s in on_disk for s in SECRETS)  # the search finds the text where it is in clear

    master = tmp_path / "master.key"
    create_master_key(master)
    async with running_site(tmp_path, site_doc(master)) as rt:
        on_disk = state_bytes(rt)
        assert not [s for s in SECRETS if s in on_disk]
        [(user, comment, sealed)] = stored_rows(rt)
        assert (user, comment) == ("", "") and isinstance(sealed, bytes)
        listed, _active = await acks_shown(rt)
        assert {k: listed[k] for k in ("user", "comment")} == {"user": "boss", "comment": COMMENT}
