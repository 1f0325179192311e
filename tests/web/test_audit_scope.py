"""Who reads the audit log: a technician and an admin (docs/security.md's roles), so the scopes
`write` and `admin`; and the README's HTTP API table says the same as the server."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp

from edge.api.tokens import create_token
from tests.support.site import running_site
from tests.web.conftest import SITE, signed_in_roles

ROOT = Path(__file__).resolve().parents[2]
PATH = "/api/v1/audit"
ALLOWED = {"write", "admin"}  # a technician's session holds write, an admin's admin


def readme_scopes() -> set[str]:
    """The scopes the README's HTTP API table gives the audit log's row."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("|") and f"{PATH}`" in line]
    assert len(rows) == 1, rows
    scope_cell = rows[0].strip().strip("|").split("|")[-1]
    return set(re.findall(r"\b(read|write|rules|admin|pull)\b", scope_cell))


async def test_the_audit_log_is_read_by_write_or_admin_as_the_readme_says(tmp_path: Path) -> None:
    assert readme_scopes() == ALLOWED
    async with running_site(tmp_path, SITE) as rt:
        async with signed_in_roles(rt) as clients:
            by_role = {role: (await c.request("GET", PATH)).status for role, c in clients.items()}
        assert by_role == {"admin": 200, "technician": 200, "viewer": 403}
        base = f"http://127.0.0.1:{rt.web_port}"
        by_scope = {}
        for scopes in (["read"], ["rules"], ["read", "rules"], ["write"], ["read", "write"], ["admin"]):
            token = create_token(rt.state, "+".join(scopes), scopes)
            async with (
                aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http,
                http.get(base + PATH) as r,
            ):
                by_scope["+".join(scopes)] = r.status
        assert by_scope == {
            "+".join(s): (200 if ALLOWED & set(s) else 403)
            for s in (["read"], ["rules"], ["read", "rules"], ["write"], ["read", "write"], ["admin"])
        }
