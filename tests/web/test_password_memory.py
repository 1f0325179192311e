"""What password hashing costs the gateway in memory: nothing at import, one argon2 hash's worth
however many logins arrive at once, and hashes made with the old 64 MiB parameters are redone."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from argon2 import PasswordHasher, extract_parameters

from edge.api import accounts
from edge.state import StateDB
from tests.support.cli import answering, start_edge_run
from tests.support.ports import free_port
from tests.support.procs import stop_process
from tests.support.site import site_file
from tests.web.conftest import PASSWORD, Client

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
HASH_BYTES = accounts.HASH_MEMORY_KIB * 1024
# What else a burst of logins may touch besides the hash: request buffers, sessions, thread stacks.
LOGIN_MARGIN = 10 * MIB
USERS = 6
UNKNOWN = 2


def _memory(status: str) -> tuple[int, int]:
    """(VmHWM, VmRSS) in bytes from a /proc/<pid>/status text."""
    peak = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    now = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    assert peak and now, status
    return int(peak.group(1)) * 1024, int(now.group(1)) * 1024


def test_importing_accounts_computes_no_hash() -> None:
    # A hash at import shows as a peak well above what the process holds afterwards (64 MiB with
    # the old parameters, 19 MiB with the current ones); imports alone stay close to it.
    code = "import sys, edge.api.accounts; print('argon2' in sys.modules); print(open('/proc/self/status').read())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    argon2_loaded, status = out.stdout.split("\n", 1)
    peak, now = _memory(status)
    assert peak - now < HASH_BYTES // 2, f"import peak {peak / MIB:.1f} MiB, then {now / MIB:.1f} MiB"
    assert argon2_loaded == "False"  # imported at the first hash (about 1 MB)


async def _login_burst(base: str) -> list[int]:
    attempts = [(f"user{i}", PASSWORD) for i in range(USERS)]
    attempts += [(f"nobody{i}", PASSWORD) for i in range(UNKNOWN)]
    async with aiohttp.ClientSession() as http:

        async def login(name: str, password: str) -> int:
            body = {"name": name, "password": password}
            async with http.post(base + "/api/v1/auth/login", json=body) as r:
                return r.status

        return list(await asyncio.gather(*(login(n, p) for n, p in attempts)))


def test_concurrent_logins_hold_one_hash_in_memory_at_a_time(tmp_path: Path) -> None:
    port = free_port()
    config = site_file(tmp_path, {"devices": [], "web": {"listen": f"127.0.0.1:{port}"}})
    state = StateDB(str(tmp_path / "state.db"))
    try:
        for i in range(USERS):
            accounts.add_user(state, f"user{i}", "viewer", PASSWORD)
    finally:
        state.close()
    log_path = tmp_path / "edge.log"
    base = f"http://127.0.0.1:{port}"
    edge = start_edge_run(config, log_path)
    try:
        asyncio.run(answering(base, edge))
        assert edge.poll() is None, log_path.read_text()[-3000:]
        status = Path(f"/proc/{edge.pid}/status")
        _, before = _memory(status.read_text())
        statuses = asyncio.run(_login_burst(base))
        peak, after = _memory(status.read_text())
    finally:
        stop_process(edge)
    assert statuses == [200] * USERS + [401] * UNKNOWN
    rise = peak - before
    assert rise <= HASH_BYTES + LOGIN_MARGIN, (
        f"{USERS + UNKNOWN} concurrent logins raised the peak by {rise / MIB:.1f} MiB "
        f"(one hash: {HASH_BYTES / MIB:.0f} MiB; RSS {before / MIB:.1f} -> {after / MIB:.1f} MiB)"
    )


async def test_a_hash_with_the_old_parameters_verifies_and_is_redone_at_login(
    site: Any, admin: Client
) -> None:
    await admin.json(
        "POST", "/api/v1/users", {"name": "li", "role": "viewer", "password": PASSWORD}, expect=201
    )
    old = PasswordHasher().hash(PASSWORD)  # argon2-cffi's defaults: 64 MiB, t=3, p=4
    with site.state.lock:
        site.state.conn.execute("UPDATE users SET pw_hash=? WHERE name='li'", (old,))
    li = Client(admin.base)
    try:
        await li.login("li", "not the password", expect=401)
        with site.state.lock:
            kept = site.state.conn.execute("SELECT pw_hash FROM users WHERE name='li'").fetchone()[0]
        assert kept == old  # a wrong password changes nothing
        await li.login("li")
        with site.state.lock:
            new = site.state.conn.execute("SELECT pw_hash FROM users WHERE name='li'").fetchone()[0]
        params = extract_parameters(new)
        assert (params.memory_cost, params.time_cost, params.parallelism) == (19 * 1024, 2, 1)
        await li.request("POST", "/api/v1/auth/logout")
        await li.login("li")  # the new hash verifies the same password
        await li.login("nobody", expect=401)
        # a name without an account is verified against a hash that costs the same
        assert accounts._dummy_hash is not None
        assert extract_parameters(accounts._dummy_hash) == extract_parameters(new)
    finally:
        await li.close()
