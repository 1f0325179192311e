"""`edge rules check -c` and `edge rules import -c` hold a pack's webhooks to the site's
`rules.webhook_allow`, as the API and the gateway do: a refused destination names the host and the
key to add it to, and nothing is imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.cli import edge_cli
from tests.support.site import site_file

ROOT = Path(__file__).resolve().parents[2]
PACK = """
rules:
  - id: notify-central
    when: {point: bin-1.fill_pct}
    if: value > 90
    then:
      - webhook: https://hooks.example.net/bins
"""


def _rules(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", "rules", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_and_import_refuse_a_webhook_the_site_does_not_allow(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK, encoding="utf-8")
    closed = site_file(tmp_path, {"devices": []}, name="closed.yaml")
    (tmp_path / "open").mkdir()
    allowing = site_file(
        tmp_path / "open", {"devices": [], "rules": {"webhook_allow": ["hooks.example.net"]}}
    )

    out = _rules("check", str(pack))  # no site: destinations are not checked
    assert out.returncode == 0, out.stderr

    out = _rules("check", "-c", str(closed), str(pack))
    assert out.returncode == 1
    assert "hooks.example.net" in out.stderr and "webhook_allow" in out.stderr
    assert out.stderr.startswith(f"{pack}:"), out.stderr  # located in the pack

    out = _rules("import", "-c", str(closed), str(pack))
    assert out.returncode == 1 and "nothing was imported" in out.stderr
    exported = _rules("export", "-c", str(closed))
    assert "notify-central" not in exported.stdout

    assert _rules("check", "-c", str(allowing), str(pack)).returncode == 0
    out = _rules("import", "-c", str(allowing), str(pack))
    assert out.returncode == 0, out.stderr
    assert "imported notify-central" in out.stdout


def test_edge_check_holds_the_site_packs_to_its_allow_list(tmp_path: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK, encoding="utf-8")
    site = site_file(tmp_path, {"devices": [], "rules": {"packs": [str(pack)]}})
    out = edge_cli("check", "-c", str(site))
    assert out.returncode == 1
    assert f"{pack}:" in out.stderr and "hooks.example.net" in out.stderr and "webhook_allow" in out.stderr


def test_rules_commands_refuse_an_oversized_or_binary_pack_without_a_traceback(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("rules: []\n" + "#" * (2 * 1024 * 1024) + "\n", encoding="utf-8")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"rules: [\xff\xfe]\n")
    for pack, expected in ((big, "file too large"), (binary, "not UTF-8")):
        out = _rules("check", str(pack))
        assert out.returncode == 1, out.stderr
        assert expected in out.stderr and "Traceback" not in out.stderr
