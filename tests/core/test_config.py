"""Site-file validation: golden cases as data (tests/cases/config/<case>/site.yaml + expected.err).

Each expected line must appear exactly among the reported problems (`…` at the end: a prefix), and
the number of problems must match: every error at once, each naming the file, line and key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ConfigError, load_site_text
from edge.units import parse_duration, parse_size
from tests.support.golden import assert_problems

CASES = sorted(p for p in (Path(__file__).parent.parent / "cases" / "config").iterdir() if p.is_dir())
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_site_files_report_every_problem_with_its_line(case: Path) -> None:
    assert_problems(case)


def test_edge_check_exits_1_with_errors_on_stderr() -> None:
    case = next(c for c in CASES if c.name == "unknown-keys")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "-c", str(case / "site.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "unknown key 'pol'" in proc.stderr
    assert "4 problems" in proc.stderr


def test_edge_check_accepts_the_shipped_examples() -> None:
    for example in sorted((ROOT / "deploy" / "sites").glob("*.yaml")):
        proc = subprocess.run(
            [sys.executable, "-m", "edge.cli", "check", "-c", str(example)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        assert ": ok" in proc.stdout


def test_profile_defaults_and_point_overrides_merge(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "demo-meter.yaml").write_text(
        "driver: sim\ndefaults: {seed: 7}\npoints:\n"
        "  - {name: voltage, signal: constant, value: 230, unit: V}\n"
        "  - {name: current, signal: constant, value: 5, unit: A}\n"
    )
    from edge import config

    original = config.PROFILE_DIR
    config.PROFILE_DIR = profiles
    try:
        site = load_site_text(
            "site: {id: s}\n"
            "devices:\n"
            "  - id: m1\n"
            "    profile: demo-meter\n"
            "    points:\n"
            "      - {name: voltage, value: 231}\n"
            "      - {name: extra, signal: constant, value: 1}\n",
        )
    except ConfigError as exc:  # pragma: no cover - shows the problems
        pytest.fail(str(exc))
    finally:
        config.PROFILE_DIR = original
    dev = site.devices[0]
    points = {p.name: p for p in dev.points}  # type: ignore[attr-defined]
    assert dev.seed == 7  # type: ignore[attr-defined]
    assert points["voltage"].value == 231 and points["voltage"].unit == "V"
    assert points["current"].value == 5
    assert "extra" in points


def test_secrets_resolve_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.validation import resolve_secret

    monkeypatch.setenv("EDGE_TEST_TOKEN", "from-env")
    assert resolve_secret("EDGE_TEST_TOKEN", None, "t") == "from-env"
    f = tmp_path / "tok"
    f.write_text("from-file\n")
    assert resolve_secret(None, str(f), "t") == "from-file"
    monkeypatch.delenv("EDGE_TEST_TOKEN")
    with pytest.raises(ConfigError, match="EDGE_TEST_TOKEN is not set"):
        resolve_secret("EDGE_TEST_TOKEN", None, "consumer city token")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5), ("2m", 120), ("1h30m", 5400), ("7d", 604800), (3, 3.0), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5x", "soon", "", "-1s", True, "5 s s"])
def test_bad_durations_say_what_is_accepted(bad: object) -> None:
    with pytest.raises(ValueError, match=r"expected e\.g\."):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 * 1024**3), ("500MB", 500_000_000), ("64k", 65536), (1024, 1024), ("10 MiB", 10 * 1024**2)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


def test_a_site_file_whose_aliases_explode_is_refused_quickly() -> None:
    from tests.web.test_api_fuzz_regressions import BILLION_LAUGHS

    with pytest.raises(ConfigError, match="document too large"):
        load_site_text(
            "site: {id: s}\nx:\n" + "".join("  " + line + "\n" for line in BILLION_LAUGHS.splitlines())
        )


def test_edge_check_compiles_the_rule_packs_the_site_names(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.yaml").write_text("- id: bad\n  when: x.y\n  if: value >\n")
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: s}\nrules:\n  packs: [rules/bad.yaml, missing.yaml]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "check", "-c", str(site)], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 1
    assert "bad.yaml:3: rule bad:if:" in proc.stderr  # found beside the site file, located
    assert "rules.packs[1]: cannot read rule pack 'missing.yaml'" in proc.stderr


async def test_disk_reserve_reaches_the_journal(tmp_path: Path) -> None:
    from tests.support.site import running_site

    doc = "storage: {disk_reserve: 64MiB}\ndevices: []\n"
    async with running_site(tmp_path, doc, web=False) as rt:
        assert rt.journal.disk_reserve == 64 * 1024**2
    with pytest.raises(ConfigError, match="disk_reserve"):
        load_site_text("site: {id: s}\nstorage: {disk_reserve: -1}\n")
