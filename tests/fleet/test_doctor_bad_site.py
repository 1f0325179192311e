"""`edge doctor` on a site file whose sections are of the wrong kind (`devices: 5`) names the
located problem, as `edge check` does, and exits 2: it printed a traceback and exited 1."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import edge_cli

SITE = "site: {id: s, name: n, timezone: UTC}\n"


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("devices: 5", "2: devices: Input should be a valid list"),
        ("devices: [5, true]", "2: devices[0]"),
        ("storage: 7", "2: storage"),
        ("storage: {path: 5}", "2: storage.path"),
        ("web: [1]", "2: web"),
        ("clock: 3", "2: clock"),
        ("privacy: {master_key_file: 5}", "2: privacy.master_key_file"),
        ("upstream: {a: 1}", "2: upstream"),
    ],
)
def test_a_section_of_the_wrong_kind_is_a_located_problem_not_a_traceback(
    tmp_path: Path, section: str, problem: str
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE + section + "\n", encoding="utf-8")
    done = edge_cli("doctor", "-c", str(site))
    out = done.stdout + done.stderr
    assert "Traceback" not in out, out
    assert done.returncode == 2, out
    assert f"FAIL site    {site}:{problem}" in out, out
