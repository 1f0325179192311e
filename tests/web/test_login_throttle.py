"""The login throttle against a real gateway: a guessing address is slowed exponentially, an
attacker elsewhere cannot keep the admin out, `edge users unlock` (a separate process) clears a
running gateway's counters, names that are not accounts answer exactly like accounts, and every
429 says when to come back.

Time is the guard's injected clock, advanced by the tests, never slept. Other source addresses
are other loopback addresses (127.0.0.2, ...) reaching the server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edge.api.accounts import (
    ACCOUNT_FREE_FAILURES,
    ACCOUNT_MAX_DELAY,
    IP_MAX_ATTEMPTS,
    PAIR_FREE_FAILURES,
    PAIR_MAX_DELAY,
    account_delay,
    pair_delay,
)
from tests.support.procs import stop_process
from tests.web.conftest import PASSWORD, Client, setup_code

ROOT = Path(__file__).resolve().parents[2]
WRONG = "wrong password!"
From = Callable[[str], Awaitable[Client]]


class Clock:
    """The login guard's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(site: Any) -> Clock:
    from edge.api.account_routes import ACCOUNTS_KEY

    c = Clock()
    site.web_runner.app[ACCOUNTS_KEY].guard.clock = c
    return c


@pytest.fixture
async def client_from(site: Any) -> AsyncIterator[From]:
    """Makes clients whose requests leave from another loopback address."""
    made: list[Client] = []

    async def make(address: str) -> Client:
        c = Client(f"http://127.0.0.1:{site.web_port}")
        await c.http.close()
        c.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            connector=aiohttp.TCPConnector(local_addr=(address, 0)),
        )
        made.append(c)
        return c

    yield make
    for c in made:
        await c.close()


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def retry_after(self) -> int:
        return int(self.headers["Retry-After"])


async def attempt(c: Client, name: str, password: str) -> Answer:
    resp = await c.request("POST", "/api/v1/auth/login", json={"name": name, "password": password})
    answer = Answer(resp.status, await resp.read(), {k: v for k, v in resp.headers.items() if k != "Date"})
    assert answer.status in (200, 401, 429), answer
    if answer.status == 429:  # whole seconds, at least 1
        assert answer.headers["Retry-After"].isdigit() and answer.retry_after >= 1, answer
    return answer


async def guess(c: Client, clock: Clock, name: str = "admin") -> int:
    """One wrong password at `name`, waiting (on the clock) as long as the answers say; returns
    the seconds waited."""
    waited = 0
    for _ in range(20):
        answer = await attempt(c, name, WRONG)
        if answer.status == 401:
            return waited
        clock.advance(answer.retry_after)
        waited += answer.retry_after
    raise AssertionError("a guess was never let through")


async def test_guessing_address_backs_off_exponentially_up_to_the_cap(
    admin: Client, clock: Clock, client_from: From
) -> None:
    attacker = await client_from("127.0.0.2")
    waits = []
    for failures in range(1, 14):
        await guess(attacker, clock)
        if failures <= PAIR_FREE_FAILURES:
            continue  # a few typos cost nothing (and a right password now would reset the count)
        # straight after a failure even the right password is refused, without being checked
        answer = await attempt(attacker, "admin", PASSWORD)
        assert answer.status == 429 and b"too many failed logins" in answer.body, answer
        waits.append(answer.retry_after)
        clock.advance(answer.retry_after)
    assert waits == [1, 2, 4, 8, 16, 32, 64, 128, 256, PAIR_MAX_DELAY]
    assert waits == [max(pair_delay(n), account_delay(n)) for n in range(PAIR_FREE_FAILURES + 1, 14)]
    # only that address waits that long: the admin's own address is let in after the name's
    # capped wait at most
    answer = await attempt(admin, "admin", PASSWORD)
    if answer.status == 429:
        assert answer.retry_after <= ACCOUNT_MAX_DELAY
        clock.advance(answer.retry_after)
        answer = await attempt(admin, "admin", PASSWORD)
    assert answer.status == 200


async def test_attackers_elsewhere_cannot_keep_the_admin_out(
    admin: Client, clock: Clock, client_from: From
) -> None:
    attackers = [await client_from(f"127.0.0.{i}") for i in range(2, 6)]
    owner = await client_from("127.0.0.9")  # the admin, at an address with no failures
    failures = 0
    while account_delay(failures) < ACCOUNT_MAX_DELAY:  # guess until the name is slowed to the cap
        for a in attackers:
            await guess(a, clock)
            failures += 1
    first = await attempt(owner, "admin", PASSWORD)
    assert first.status == 429 and 1 <= first.retry_after <= ACCOUNT_MAX_DELAY, first
    # the attackers keep guessing while the admin waits; none of it moves the admin's turn
    started = clock.now
    while clock.now < started + first.retry_after:
        for a in attackers:
            await attempt(a, "admin", WRONG)
        clock.advance(1)
    assert (await attempt(owner, "admin", PASSWORD)).status == 200
    assert clock.now - started <= ACCOUNT_MAX_DELAY
    # and the guesses did count: the name is still slowed for every new address
    newcomer = await attempt(await client_from("127.0.0.10"), "admin", WRONG)
    assert newcomer.status == 429


async def test_known_and_unknown_names_answer_byte_for_byte_alike(
    admin: Client, clock: Clock, client_from: From
) -> None:
    known, unknown = await client_from("127.0.0.2"), await client_from("127.0.0.3")
    statuses = []
    for _ in range(16):
        a = await attempt(known, "admin", WRONG)
        b = await attempt(unknown, "nobody-here", WRONG)
        assert (a.status, a.body, a.headers) == (b.status, b.body, b.headers)
        statuses.append(a.status)
        if a.status == 429:
            clock.advance(a.retry_after)
    # the run went through every kind of answer: plain failures and waits
    assert statuses.count(401) > ACCOUNT_FREE_FAILURES and 429 in statuses


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        stop_process(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


async def test_edge_users_unlock_clears_a_running_gateway(
    tmp_path: Path, admin: Client, clock: Clock, client_from: From
) -> None:
    site_yaml = str(tmp_path / "site.yaml")
    attacker, stranger = await client_from("127.0.0.2"), await client_from("127.0.0.3")
    for _ in range(ACCOUNT_FREE_FAILURES + 2):
        await guess(attacker, clock)
        await guess(stranger, clock, "ghost")
    assert (await attempt(attacker, "admin", PASSWORD)).status == 429
    assert (await attempt(stranger, "ghost", WRONG)).status == 429

    done = await asyncio.to_thread(run_cli, "users", "unlock", "-c", site_yaml, "nobody")
    assert done.returncode == 1 and "no user 'nobody'" in done.stderr
    done = await asyncio.to_thread(run_cli, "users", "unlock", "-c", site_yaml)
    assert done.returncode == 2 and "NAME or --all" in done.stderr
    done = await asyncio.to_thread(run_cli, "users", "unlock", "-c", site_yaml, "admin")
    assert done.returncode == 0, done.stderr
    # no time has passed on the gateway's clock: the counters are gone from the shared state DB
    assert (await attempt(attacker, "admin", PASSWORD)).status == 200
    assert (await attempt(stranger, "ghost", WRONG)).status == 429  # another name: untouched
    done = await asyncio.to_thread(run_cli, "users", "unlock", "-c", site_yaml, "--all")
    assert done.returncode == 0, done.stderr
    assert (await attempt(stranger, "ghost", WRONG)).status == 401
    entries = (await admin.json("GET", "/api/v1/audit?action=user_unlock"))["entries"]
    assert [e["target"] for e in entries] == ["*", "admin"]


async def test_setup_429_says_when_to_come_back(site: Any, client: Client, clock: Clock) -> None:
    body = {"code": "0000-0000-0000", "name": "eve", "password": PASSWORD}
    for _ in range(IP_MAX_ATTEMPTS):
        assert (await client.request("POST", "/api/v1/auth/setup", json=body)).status == 403
    resp = await client.request("POST", "/api/v1/auth/setup", json=body)
    assert resp.status == 429
    wait = resp.headers["Retry-After"]
    assert wait.isdigit() and 1 <= int(wait) <= 60
    assert (await resp.json(content_type=None))["retry_after"] == int(wait)
    clock.advance(int(wait))
    body = {"code": setup_code(site), "name": "root", "password": PASSWORD, "next": "//evil.example"}
    created = await client.json("POST", "/api/v1/auth/setup", body, expect=201)
    assert created["next"] == "/"


async def test_parallel_guesses_are_each_counted(admin: Client, clock: Clock, client_from: From) -> None:
    attackers = [await client_from(f"127.0.0.{i}") for i in range(2, 6)]
    answers = await asyncio.gather(*(attempt(a, "admin", WRONG) for a in attackers for _ in range(2)))
    failed = sum(a.status == 401 for a in answers)
    assert failed >= len(attackers)  # each address had at least one guess checked
    # guesses checked side by side from several addresses all count for the name
    users = (await admin.json("GET", "/api/v1/users"))["users"]
    assert users[0]["failures"] == failed
