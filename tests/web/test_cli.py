"""`edge users`, `edge tokens` and `edge tls` against a site's state DB."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge.cli import main
from edge.state import StateDB
from tests.support.site import site_file
from tests.web.conftest import PASSWORD


@pytest.fixture
def site_path(tmp_path: Path) -> Path:
    return site_file(tmp_path, {"devices": []})


def run(monkeypatch: Any, capsys: Any, *argv: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_users_add_list_passwd(site_path: Path, monkeypatch: Any, capsys: Any) -> None:
    c = str(site_path)
    assert (
        run(monkeypatch, capsys, "users", "add", "-c", c, "wang", "--role", "admin", stdin=PASSWORD + "\n")[0]
        == 0
    )
    # Chinese characters are letters too: the refusal says which letters a name may hold
    code, _, err = run(monkeypatch, capsys, "users", "add", "-c", c, "王师傅", stdin=PASSWORD + "\n")
    assert code == 1 and "ASCII letters" in err, err
    code, _, err = run(monkeypatch, capsys, "users", "add", "-c", c, "li", stdin="short\n")
    assert code == 1 and "10 characters" in err
    code, _, err = run(monkeypatch, capsys, "users", "add", "-c", c, "wang", stdin=PASSWORD + "\n")
    assert code == 1 and "already exists" in err
    code, out, _ = run(monkeypatch, capsys, "users", "list", "-c", c, "--json")
    assert [(u["name"], u["role"]) for u in json.loads(out)] == [("wang", "admin")]
    state = StateDB(str(site_path.parent / "state.db"))
    try:
        old = state.conn.execute("SELECT pw_hash FROM users").fetchone()[0]
        state.conn.execute(
            "INSERT INTO login_throttle(name, source, failures, last_failure) VALUES ('wang', '', 9, ?)",
            (time.time(),),
        )
        code, out, _ = run(monkeypatch, capsys, "users", "list", "-c", c)
        assert "slowed (9 failed logins)" in out and "last login never" in out
        state.conn.execute("UPDATE users SET last_login=? WHERE name='wang'", (1796601600.0,))
        code, out, _ = run(monkeypatch, capsys, "users", "list", "-c", c)
        assert "last login 2026-12-07 08:00:00 +08:00" in out, out  # in the site's zone
        assert (
            run(monkeypatch, capsys, "users", "passwd", "-c", c, "wang", stdin="another long one\n")[0] == 0
        )
        new = state.conn.execute("SELECT pw_hash FROM users").fetchone()[0]
        assert new != old and new.startswith("$argon2id$")
        # passwd also clears the login throttle
        assert state.conn.execute("SELECT count(*) FROM login_throttle").fetchone()[0] == 0
    finally:
        state.close()


def test_tokens_create_list_revoke(site_path: Path, monkeypatch: Any, capsys: Any) -> None:
    c = str(site_path)
    code, out, err = run(
        monkeypatch,
        capsys,
        "tokens",
        "create",
        "-c",
        c,
        "city",
        "--scope",
        "pull",
        "--consumer",
        "city-platform",
    )
    assert code == 0 and out.strip().startswith("ce_") and "shown once" in err
    token = out.strip()
    code, out, _ = run(monkeypatch, capsys, "tokens", "list", "-c", c, "--json")
    listed = json.loads(out)
    assert listed[0]["scopes"] == ["pull"] and token not in out
    code, out, _ = run(monkeypatch, capsys, "tokens", "list", "-c", c)
    assert "active" in out and "created 20" in out and "last used never" in out, out
    assert run(monkeypatch, capsys, "tokens", "revoke", "-c", c, str(listed[0]["id"]))[0] == 0
    code, _, err = run(monkeypatch, capsys, "tokens", "revoke", "-c", c, str(listed[0]["id"]))
    assert code == 1 and "no active token" in err
    code, _, err = run(monkeypatch, capsys, "tokens", "create", "-c", c, "x", "--scope", "pull")
    assert code == 1 and "consumer" in err


def test_tls_selfsigned_writes_a_usable_pair(tmp_path: Path, monkeypatch: Any, capsys: Any) -> None:
    code, out, _ = run(
        monkeypatch, capsys, "tls", "selfsigned", "--out", str(tmp_path / "tls"), "--name", "gw.local"
    )
    assert code == 0 and "web.tls_cert" in out
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "tls/edge.crt", tmp_path / "tls/edge.key")  # raises if not a pair
    assert (tmp_path / "tls/edge.key").stat().st_mode & 0o077 == 0
    # run again over the old pair: a new key replaces it, still private
    old_key = (tmp_path / "tls/edge.key").read_bytes()
    assert run(monkeypatch, capsys, "tls", "selfsigned", "--out", str(tmp_path / "tls"))[0] == 0
    assert (tmp_path / "tls/edge.key").read_bytes() != old_key
    assert (tmp_path / "tls/edge.key").stat().st_mode & 0o077 == 0


def test_every_subcommand_has_help(capsys: Any) -> None:
    for argv in (["users", "--help"], ["tokens", "create", "--help"], ["tls", "selfsigned", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "usage: edge" in capsys.readouterr().out


def test_users_unlock_help_states_the_throttle_as_the_code_has_it(capsys: Any) -> None:
    from edge.api import accounts

    with pytest.raises(SystemExit) as exc:
        main(["users", "unlock", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "usage: edge users unlock" in text and "--all" in text and "NAME" in text
    assert f"up to {accounts.PAIR_MAX_DELAY / 60:g} minutes" in text
    assert f"(up to {accounts.ACCOUNT_MAX_DELAY:g} s)" in text
    assert f"{accounts.IP_MAX_ATTEMPTS} attempts per minute" in text and accounts.IP_WINDOW == 60
