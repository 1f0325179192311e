"""Manufacturer-data layouts as profile files: the shipped ones load and are each checked against
public test vectors (tests/cases/ble/adverts/<vendor>-*), and a wrong layout is refused with every
problem located by file, line and key (tests/cases/ble/adverts/err-*/: profile.yaml + expected.err).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drivers.ble import mfr
from edge.config import PROFILE_DIR, load_profile, merge_profile
from edge.model import PointType
from edge.validation import ConfigError

CASES = Path(__file__).resolve().parents[1] / "cases" / "ble" / "adverts"
SHIPPED = sorted(p.stem for p in PROFILE_DIR.glob("ble-*.yaml"))
ERROR_CASES = sorted(p.name for p in CASES.iterdir() if (p / "expected.err").exists())
DECODE_CASES = sorted(p for p in CASES.iterdir() if (p / "input.yaml").exists())


def test_at_least_two_vendor_layouts_ship() -> None:
    assert {"ble-ruuvi-rawv2", "ble-pvvx-thermometer"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_layout_loads_names_its_source_and_has_golden_cases(name: str) -> None:
    layout = mfr.load_layout(name)
    profile, _ = load_profile(name)
    assert "https://" in profile["description"], "a shipped layout names the public document it follows"
    assert profile["defaults"]["mode"] == "advert" and profile["driver"] == "ble"
    decoders = [
        yaml.safe_load((c / "input.yaml").read_text(encoding="utf-8"))["decoder"] for c in DECODE_CASES
    ]
    assert decoders.count(f"profile {name}") >= 2, f"{name} needs golden cases in {CASES}"
    assert layout.fields and all(f.name not in mfr.RESERVED for f in layout.fields)


def test_a_profile_is_also_a_device_profile() -> None:
    """`profile: ble-ruuvi-rawv2` in a site file gives the device its driver and mode like any
    profile; the layout stays in the profile file (merge_profile takes defaults and points only)."""
    profile, _ = load_profile("ble-ruuvi-rawv2")
    merged = merge_profile(
        profile, {"id": "hall-climate", "profile": "ble-ruuvi-rawv2", "address": "CB:B8:33:4C:88:4F"}
    )
    assert merged["driver"] == "ble" and merged["mode"] == "advert" and "advert" not in merged


def test_ruuvi_field_types_follow_scale_and_add() -> None:
    types = {f.name: f.point_type() for f in mfr.load_layout("ble-ruuvi-rawv2").fields}
    assert types["temperature"] == PointType.FLOAT  # scale 0.005
    assert types["tx_power"] == PointType.INT  # scale 2, add -40: whole numbers stay whole
    assert types["mac"] == PointType.STR
    bits = {f.name: f.point_type() for f in mfr.load_layout("ble-pvvx-thermometer").fields}
    assert bits["reed_switch"] == PointType.BOOL


def _problems(case: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        mfr.load_layout("profile", case)
    return [str(p).replace(str(case / "profile.yaml"), "profile.yaml") for p in info.value.problems]


def _same(want: str, got: str) -> bool:
    return got.startswith(want[:-1]) if want.endswith("…") else got == want


@pytest.mark.parametrize("case", ERROR_CASES)
def test_wrong_layout_is_refused_with_located_problems(case: str) -> None:
    folder = CASES / case
    expected = [line for line in (folder / "expected.err").read_text(encoding="utf-8").splitlines() if line]
    actual = _problems(folder)
    unmatched = [w for w in expected if not any(_same(w, a) for a in actual)]
    assert not unmatched and len(actual) == len(expected), "\n".join(actual)


def test_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    (tmp_path / "ble-one.yaml").write_text("driver: ble\n")
    with pytest.raises(LookupError, match="unknown profile 'ble-two'; known profiles: ble-one"):
        mfr.load_layout("ble-two", tmp_path)


def test_service_uuid_forms() -> None:
    assert mfr.full_uuid("181A") == mfr.full_uuid("0x181a") == "0000181a-0000-1000-8000-00805f9b34fb"
    assert mfr.full_uuid("0000FEAA-0000-1000-8000-00805F9B34FB") == "0000feaa-0000-1000-8000-00805f9b34fb"
    with pytest.raises(ValueError, match="expected 4 hex digits"):
        mfr.full_uuid("18 1a")
