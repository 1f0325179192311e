"""A relative file path in a site file names a file beside the site file, whichever folder the
command runs in: `edge run` under systemd runs in /, a technician's `edge users add` in their home,
and each used to open a journal and state DB of its own (a user added that way could not log in;
`edge buffer stats` found "no journal" beside a running gateway)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.config import load_site
from tests.support.cli import ROOT
from tests.web.conftest import PASSWORD

SITE: dict[str, Any] = {
    "site": {"id": "rel-site"},
    "storage": {"path": "data/edge.db"},
    "web": {"listen": "127.0.0.1:0", "tls_cert": "tls/edge.crt", "tls_key": "tls/edge.key"},
    "upstream": [
        {
            "id": "central",
            "type": "http",
            "url": "http://127.0.0.1:9/ingest",
            "token_file": "secrets/central.token",
        }
    ],
    "privacy": {"master_key_file": "keys/master.key"},
    "devices": [{"id": "m", "driver": "sim", "points": [{"name": "v", "interval": "1h"}]}],
}


def write_site(folder: Path, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "site.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_relative_paths_are_read_beside_the_site_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc"
    config = write_site(etc, SITE)
    monkeypatch.chdir(tmp_path)  # another folder than the site file's
    site = load_site("etc/site.yaml")  # the site file named relatively too
    assert site.storage.path == str(etc / "data/edge.db")
    assert site.storage.resolved_state_path() == str(etc / "data/state.db")
    assert (site.web.tls_cert, site.web.tls_key) == (str(etc / "tls/edge.crt"), str(etc / "tls/edge.key"))
    assert site.upstream[0].token_file == str(etc / "secrets/central.token")  # type: ignore[attr-defined]
    assert site.privacy.master_key_file == str(etc / "keys/master.key")
    absolute = {**SITE, "storage": {"path": str(tmp_path / "elsewhere/edge.db")}}
    assert load_site(write_site(tmp_path / "other", absolute)).storage.path == str(
        tmp_path / "elsewhere/edge.db"
    )
    assert config.exists()


def test_a_user_added_from_another_folder_lands_in_the_sites_state_db(tmp_path: Path) -> None:
    doc = {k: v for k, v in SITE.items() if k not in ("web", "upstream", "privacy")}
    config = write_site(tmp_path / "etc", doc)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()

    def edge(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge.cli", *args],
            cwd=elsewhere,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )

    added = edge("users", "add", "-c", str(config), "wang", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "etc/data/state.db").exists()
    assert not any(elsewhere.iterdir()), list(elsewhere.iterdir())  # nothing of the site here
    listed = edge("users", "list", "-c", "../etc/site.yaml")
    assert listed.returncode == 0 and listed.stdout.startswith("wang"), listed.stdout + listed.stderr
