"""A login leaves no password hash's memory behind in `edge run`: the 19 MiB an argon2id hash takes
are given back once it is done, at the first login and at every later one (glibc would otherwise
serve the later ones from its heap and keep them resident for as long as the gateway runs)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp

from edge.api import accounts
from edge.state import StateDB
from tests.support.cli import answering, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import site_file
from tests.web.conftest import PASSWORD

MIB = 1024 * 1024
HASH_BYTES = accounts.HASH_MEMORY_KIB * 1024
LOGINS = 3


def rss(pid: int) -> int:
    found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert found
    return int(found.group(1)) * 1024


async def log_in(base: str, times: int) -> list[int]:
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(times):  # one after the other: each hash is freed before the next
            body = {"name": "admin", "password": PASSWORD}
            async with http.post(base + "/api/v1/auth/login", json=body) as r:
                statuses.append(r.status)
        return statuses


def test_logins_give_the_hash_memory_back(tmp_path: Path) -> None:
    port = free_port()
    config = site_file(tmp_path, {"devices": [], "web": {"listen": f"127.0.0.1:{port}"}})
    state = StateDB(str(tmp_path / "state.db"))
    try:
        accounts.add_user(state, "admin", "admin", PASSWORD)
    finally:
        state.close()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "edge.log"
    edge = start_edge_run(config, log_path)
    try:
        asyncio.run(answering(base, edge))
        assert edge.poll() is None, log_path.read_text()[-3000:]
        before = rss(edge.pid)
        # the first also imports argon2 (about 2.5 MB) and makes the hash unknown names are
        # checked against: two hashes, the first one freed before the second is made
        assert asyncio.run(log_in(base, LOGINS)) == [200] * LOGINS
        after = rss(edge.pid)
    finally:
        stop_process(edge)
    assert after - before < HASH_BYTES // 2, (
        f"{LOGINS} logins left RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB "
        f"(one hash: {HASH_BYTES / MIB:.0f} MiB)"
    )
