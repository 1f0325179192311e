"""A reload (SIGHUP) applies what it can apply live and holds every other change to a restart,
saying which keys wait: until the restart the gateway runs on, and reports, what is in force (the
site id /healthz, the status and the sinks give, and the config hash), never the new file's."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from edge import buildinfo
from edge.config import _Envelope, load_site
from edge.model import PRIVACY_RANK, Privacy
from edge.runtime import Runtime
from edge.service import reload
from tests.support.cli import answering, edge_cli, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process, terminate
from tests.support.servers import serving
from tests.support.site import site_file
from tests.support.waiting import until, until_async

GATE = {
    "id": "gate",
    "driver": "sim",
    "points": [{"name": "occupancy", "signal": "random", "interval": "50ms", "privacy": "personal"}],
}


class Receiver:
    """A real HTTP upstream: the gateway id and last seq of every batch it accepted."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []

    async def ingest(self, request: web.Request) -> web.Response:
        body = await request.read()
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        doc = json.loads(body)
        self.batches.append((doc["gateway"], doc["last_seq"]))
        return web.Response(status=200)

    def gateways_up_to(self, seq: int) -> set[str] | None:
        """The gateway ids of the batches received, once one reaching `seq` is among them."""
        if not any(last >= seq for _, last in self.batches):
            return None
        return {gateway for gateway, _ in self.batches}


def _first_personal_seq(db: Path) -> int | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT min(seq) FROM journal WHERE point = 'gate.occupancy'").fetchone()[0]
    finally:
        conn.close()


async def _get(http: aiohttp.ClientSession, url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.get(url, headers=headers) as r:
        return await r.json()


async def test_sighup_holds_site_id_and_clock_to_a_restart_and_applies_retention_and_name(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with serving({"/ingest": receiver.ingest}) as upstream_port:
        doc: dict[str, Any] = {
            "site": {"id": "before-site", "name": "before", "timezone": "UTC"},
            "web": {"listen": f"127.0.0.1:{port}"},
            "storage": {"flush_interval": "50ms"},
            "clock": {"trust_unsynced": True},
            "privacy": {"retention": {"personal": "1h"}},
            "devices": [GATE],
            "upstream": [
                {
                    "id": "hq",
                    "type": "http",
                    "url": f"http://127.0.0.1:{upstream_port}/ingest",
                    "batch": {"max_age": "50ms"},
                }
            ],
        }
        config = site_file(tmp_path, doc)
        made = await asyncio.to_thread(edge_cli, "tokens", "create", "-c", str(config), "status")
        assert made.returncode == 0, made.stderr
        token = made.stdout.splitlines()[0].strip()
        log_path = tmp_path / "run.log"
        edge = start_edge_run(config, log_path)
        try:
            await answering(base, edge)
            async with aiohttp.ClientSession() as http:
                before = await _get(http, base + "/api/v1/status", token)
                assert before["restart_pending"] == []
                hash_in_force = before["config_hash"]
                assert hash_in_force == buildinfo.config_hash(load_site(config).raw)
                db = tmp_path / "edge.db"
                first = await until(lambda: _first_personal_seq(db), timeout=30, what="a personal reading")
                assert first is not None

                data = yaml.safe_load(config.read_text(encoding="utf-8"))
                data["site"].update({"id": "after-site", "name": "after"})
                data["clock"]["trust_unsynced"] = False
                data["privacy"]["retention"]["personal"] = "1s"
                config.write_text(yaml.safe_dump(data), encoding="utf-8")
                edge.send_signal(signal.SIGHUP)

                status: dict[str, Any] = {}

                async def reloaded() -> bool:
                    status.update(await _get(http, base + "/api/v1/status", token))
                    return bool(status["restart_pending"])

                await until_async(reloaded, timeout=30, what="the reload in the status")
                assert status["restart_pending"] == ["clock", "site.id"]
                # what runs is the file in force until the restart, and so is what is reported
                assert status["config_hash"] == hash_in_force
                assert status["site"] == {"id": "before-site", "name": "after", "timezone": "UTC"}
                health = await _get(http, base + "/healthz")
                assert health["site"] == "before-site"
                since = health["committed_seq"]
                gateways = await until(
                    lambda: receiver.gateways_up_to(since), timeout=30, what="a batch sent after the reload"
                )
                assert gateways == {"before-site"}
                # the shorter retention applies live: the first personal reading goes well within
                # the hour the retention in force before the reload would have kept it
                await until(
                    lambda: (_first_personal_seq(db) or 0) > first,
                    timeout=60,
                    what="the personal readings from before the reload deleted",
                )
                log = log_path.read_text()
                assert "take effect after a restart: clock, site.id" in log
                assert "applied=site.name,privacy.retention" in log

                out = await asyncio.to_thread(terminate, edge)
                assert edge.returncode == 0, out
                edge = start_edge_run(config, log_path)
                await answering(base, edge)
                after = await _get(http, base + "/api/v1/status", token)
                assert after["restart_pending"] == []
                assert after["config_hash"] == buildinfo.config_hash(load_site(config).raw) != hash_in_force
                assert after["site"]["id"] == "after-site"
                assert (await _get(http, base + "/healthz"))["site"] == "after-site"
                restarted = (await _get(http, base + "/healthz"))["committed_seq"]
                await until(
                    lambda: receiver.gateways_up_to(restarted), timeout=30, what="a batch after the restart"
                )
                assert {g for g, last in receiver.batches if last >= restarted} == {"after-site"}
            await asyncio.to_thread(terminate, edge)
        finally:
            stop_process(edge)


async def test_a_reload_back_to_the_file_in_force_clears_what_waited_for_a_restart(tmp_path: Path) -> None:
    doc: dict[str, Any] = {
        "site": {"id": "held-site", "name": "held", "timezone": "UTC"},
        "privacy": {"retention": {"personal": "1h"}},
        "devices": [GATE],
    }
    config = site_file(tmp_path, doc)
    rt = Runtime(load_site(config), with_web=False)
    await rt.start()
    try:
        hash_in_force = rt.build_info()["config_hash"]
        personal = PRIVACY_RANK[Privacy.PERSONAL]
        assert rt.journal.retention_s[personal] == 3600

        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["site"]["timezone"] = "Asia/Shanghai"
        data["privacy"]["master_key_file"] = str(tmp_path / "master.key")
        data["privacy"]["retention"]["personal"] = "10m"
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        assert await reload(rt, str(config)) == ["site.timezone", "privacy.master_key_file"]
        assert rt.status()["restart_pending"] == ["site.timezone", "privacy.master_key_file"]
        assert rt.site.site.timezone == "UTC" and rt.site.privacy.master_key_file is None
        assert rt.journal.retention_s[personal] == 600  # applied live beside what waits
        assert rt.site.privacy.retention.personal == 600
        assert rt.build_info()["config_hash"] == hash_in_force

        # the file back as it runs, but for the live retention: nothing waits, the hash follows
        data["site"]["timezone"] = "UTC"
        del data["privacy"]["master_key_file"]
        config.write_text(yaml.safe_dump(data), encoding="utf-8")
        assert await reload(rt, str(config)) == []
        assert rt.status()["restart_pending"] == []
        assert rt.build_info()["config_hash"] == buildinfo.config_hash(load_site(config).raw) != hash_in_force
        assert rt.journal.retention_s[personal] == 600
    finally:
        await rt.stop()


def test_every_core_section_is_either_applied_by_a_reload_or_held_to_a_restart() -> None:
    """A core section added to the site file must be placed: applied live (whole or by key), or
    named as waiting for a restart; else a reload would say the file is in force while it is not."""
    from edge.service import LIVE_KEYS, LIVE_SECTIONS, RESTART_SECTIONS

    placed = [*LIVE_SECTIONS, *LIVE_KEYS, *RESTART_SECTIONS]
    assert sorted(placed) == sorted(_Envelope.model_fields)
    for key, names in LIVE_KEYS.items():
        fields = _Envelope.model_fields[key].annotation.model_fields  # type: ignore[union-attr]
        assert set(names) < set(fields), key
