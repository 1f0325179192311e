"""The rule editor's YAML conversions run in a child process of the gateway: it comes back after it
dies, and it does not outlive the runtime."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from tests.support.site import running_site
from tests.support.waiting import until
from tests.web.conftest import SITE, Client, setup_code


def yaml_workers() -> list[int]:
    """PIDs of this process's live children running the YAML worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"edge.web.rule_yaml" in cmdline:
            found.append(int(entry.name))
    return found


async def convert(client: Client, text: str) -> tuple[int, Any]:
    resp = await client.request("POST", "/api/v1/ui/yaml", json={"text": text})
    return resp.status, await resp.json(content_type=None)


async def test_a_dead_worker_is_replaced_and_none_outlives_the_runtime(tmp_path: Path) -> None:
    async with running_site(tmp_path, SITE) as rt:
        client = Client(f"http://127.0.0.1:{rt.web_port}")
        try:
            body = {"code": setup_code(rt), "name": "admin", "password": "correct horse battery"}
            client.csrf = (await client.json("POST", "/api/v1/auth/setup", body, expect=201))["csrf"]
            assert await convert(client, "id: a\n") == (200, {"data": {"id": "a"}})
            (pid,) = yaml_workers()
            os.kill(pid, signal.SIGKILL)
            await until(lambda: pid not in yaml_workers(), what="the worker gone")
            status, answer = await convert(client, "id: b\n")
            if status == 503:  # the death was noticed on this request: said so, and the next one works
                assert answer["error"]["message"] == "its worker process stopped; retry"
                status, answer = await convert(client, "id: b\n")
            assert (status, answer) == (200, {"data": {"id": "b"}})
            assert len(yaml_workers()) == 1
        finally:
            await client.close()
    assert yaml_workers() == []
