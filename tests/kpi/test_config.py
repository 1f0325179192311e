"""The `kpi:` section: targets as percentages or fractions, per-device overrides, and clear
errors that name the file, the line and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import load_site_text
from edge.kpi.config import KpiConfig
from edge.validation import ConfigError
from tests.support.cli import edge_cli

SITE = """\
site: {id: kpi-config, name: KPI}
devices:
  - {id: meter, driver: sim, points: [{name: p}]}
kpi:
"""


def test_targets_as_percentages_fractions_and_per_device() -> None:
    site = load_site_text(
        SITE + "  availability: 99.5%\n  completeness: 0.9\n  ack_within: {critical: 15m}\n"
        "  devices: {meter: {availability: 95%}}\n",
        "site.yaml",
    )
    kpi = site.sections["kpi"]
    assert isinstance(kpi, KpiConfig)
    assert kpi.availability == pytest.approx(0.995) and kpi.completeness == pytest.approx(0.9)
    assert kpi.ack_within == {"critical": 900.0}
    assert kpi.targets_for("meter") == (pytest.approx(0.95), pytest.approx(0.9))
    assert kpi.targets_for("other") == (pytest.approx(0.995), pytest.approx(0.9))


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("  availability: 99\n", "a plain number is a fraction"),
        ("  completeness: lots\n", "a percentage such as 99%"),
        ("  ack_within: {urgent: 5m}\n", "unknown severity 'urgent'"),
        ("  keep: 0\n", "keep"),
        ("  devices: {meter: {uptime: 90%}}\n", "uptime"),
    ],
)
def test_a_bad_entry_is_refused_naming_file_line_and_key(entry: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_site_text(SITE + entry, "site.yaml")
    text = "\n".join(str(p) for p in err.value.problems)
    assert "site.yaml:5" in text and "kpi." in text and says in text, text


def test_edge_check_names_a_target_for_a_device_the_site_has_not(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(SITE + "  devices: {meterr: {availability: 95%}}\n", encoding="utf-8")
    done = edge_cli("check", "-c", str(path))
    assert done.returncode == 1
    assert f"{path}:5: kpi.devices.meterr: no device 'meterr' in this site; known: meter" in done.stderr
    # an id with a hyphen is located too
    path.write_text(SITE + "  devices: {gate-camera: {availability: 95%}}\n", encoding="utf-8")
    done = edge_cli("check", "-c", str(path))
    assert done.returncode == 1
    assert f"{path}:5: kpi.devices.gate-camera: no device 'gate-camera'" in done.stderr, done.stderr
    path.write_text(SITE + "  devices: {meter: {availability: 95%}}\n", encoding="utf-8")
    assert edge_cli("check", "-c", str(path)).returncode == 0
