"""Advertisement decoders as data: tests/cases/ble/adverts/<case>/input.yaml (the bytes, the decoder,
the public source of the example) and expected.json (the decoded frame). Then what the golden
cases cannot show: the decoders never raise on any bytes (hypothesis), encoders round-trip, and
an AdvertWatch turns advertisements into point values as the driver will use them.

`UPDATE_GOLDEN=1 pytest tests/ble/test_adverts.py` rewrites expected.json from the current code;
review the diff against the case's source before committing it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.ble import adverts, mfr
from drivers.ble.adverts import (
    EDDYSTONE_UUID,
    AdvertWatch,
    EddystoneTLM,
    EddystoneUID,
    IBeacon,
    NotDecoded,
    decode_eddystone,
    decode_ibeacon,
)
from tests.support.golden import assert_json

CASES = Path(__file__).resolve().parents[1] / "cases" / "ble" / "adverts"
DECODE_CASES = sorted(p.name for p in CASES.iterdir() if (p / "input.yaml").exists())
RUUVI = mfr.load_layout("ble-ruuvi-rawv2")
PVVX = mfr.load_layout("ble-pvvx-thermometer")
RUUVI_VALID = bytes.fromhex("0512FC5394C37C0004FFFC040CAC364200CDCBB8334C884F")
IBEACON = {0x004C: bytes.fromhex("0215414243444546474849404142434445460001 0002f8".replace(" ", ""))}
ADDR = "CB:B8:33:4C:88:4F"


def _as_json(result: object) -> Any:
    if result is None:
        return None
    fields = dataclasses.asdict(result)  # type: ignore[call-overload]
    return {
        "frame": type(result).__name__,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
    }


def run_case(case: dict[str, Any]) -> object:
    """The decoder a case names applied to its advertisement data."""
    manufacturer = {int(k): bytes.fromhex(v) for k, v in (case.get("manufacturer_data") or {}).items()}
    service = {mfr.full_uuid(str(k)): bytes.fromhex(v) for k, v in (case.get("service_data") or {}).items()}
    decoder, _, profile = case["decoder"].partition(" ")
    if decoder == "ibeacon":
        return decode_ibeacon(manufacturer)
    if decoder == "eddystone":
        return decode_eddystone(service)
    layout = mfr.load_layout(profile)
    data = mfr.payload_of(layout, manufacturer, service)
    return None if data is None else mfr.decode(layout, data)


@pytest.mark.parametrize("name", DECODE_CASES)
def test_golden_case(name: str) -> None:
    case = yaml.safe_load((CASES / name / "input.yaml").read_text(encoding="utf-8"))
    assert case["source"].strip(), "every case names where its bytes come from"
    assert_json(CASES / name / "expected.json", _as_json(run_case(case)))


def test_every_decoder_and_outcome_has_golden_cases() -> None:
    outcomes = set()
    for name in DECODE_CASES:
        case = yaml.safe_load((CASES / name / "input.yaml").read_text(encoding="utf-8"))
        result = run_case(case)
        outcomes.add((case["decoder"].split()[0], type(result).__name__))
    assert {
        ("ibeacon", "IBeacon"),
        ("ibeacon", "NotDecoded"),
        ("ibeacon", "NoneType"),
        ("eddystone", "EddystoneUID"),
        ("eddystone", "EddystoneURL"),
        ("eddystone", "EddystoneTLM"),
        ("eddystone", "NotDecoded"),
        ("profile", "FieldValues"),
        ("profile", "NotDecoded"),
        ("profile", "NoneType"),
    } <= outcomes


def _read_by_layouts() -> list[str]:
    """The golden cases whose payload a layout reads."""
    out = []
    for name in DECODE_CASES:
        case = yaml.safe_load((CASES / name / "input.yaml").read_text(encoding="utf-8"))
        if case["decoder"].startswith("profile ") and isinstance(run_case(case), mfr.FieldValues):
            out.append(name)
    return out


@pytest.mark.parametrize("name", _read_by_layouts())
def test_layout_encoder_gives_back_the_golden_bytes(name: str) -> None:
    """mfr.encode (the demo's simulated sensors) inverts the decoder: a golden payload decoded
    and encoded again is the same bytes, invalid fields included."""
    case = yaml.safe_load((CASES / name / "input.yaml").read_text(encoding="utf-8"))
    result = run_case(case)
    assert isinstance(result, mfr.FieldValues)
    layout = mfr.load_layout(case["decoder"].partition(" ")[2])
    sent = case.get("manufacturer_data") or case.get("service_data")
    assert mfr.encode(layout, result.values) == bytes.fromhex(next(iter(sent.values())))


def test_layout_encoder_refuses_what_a_field_cannot_hold() -> None:
    with pytest.raises(ValueError, match="'humidity'"):
        mfr.encode(PVVX, {"humidity": 700.0})  # 70000 does not fit u16le
    with pytest.raises(ValueError, match="'battery_mv'"):
        mfr.encode(RUUVI, {"battery_mv": 4000})  # 2400 past the 11 bits' 2047


# ---------------------------------------------------------------- never raises
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=40), max_size=3), st.binary(max_size=40))
def test_ibeacon_decoder_never_raises(manufacturer: dict[int, bytes], apple: bytes) -> None:
    for data in (manufacturer, {**manufacturer, 0x004C: apple}, {0x004C: b"\x02\x15" + apple}):
        result = decode_ibeacon(data)
        assert result is None or isinstance(result, IBeacon | NotDecoded)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.binary(max_size=30))
def test_eddystone_decoder_never_raises(frame: int, rest: bytes) -> None:
    for data in (
        bytes([frame]) + rest,
        rest,
        bytes([0x20, frame]) + rest,
        bytes([0x10, 0, frame % 5]) + rest,
    ):
        result = decode_eddystone({EDDYSTONE_UUID: data})
        assert isinstance(result, adverts.EddystoneUID | adverts.EddystoneURL | EddystoneTLM | NotDecoded)
        if isinstance(result, NotDecoded):
            assert result.counter in ("garbage", "encrypted", "unsupported") and result.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40), st.sampled_from([RUUVI, PVVX]))
def test_layout_decoder_never_raises(data: bytes, layout: mfr.AdvertLayout) -> None:
    for payload in (data, layout.prefix_bytes + data, (layout.prefix_bytes + data)[: layout.length]):
        result = mfr.decode(layout, payload)
        if isinstance(result, mfr.FieldValues):
            assert len(payload) == layout.length
            assert set(result.values) | set(result.invalid) == {f.name for f in layout.fields}
        else:
            assert result.counter == "garbage" and result.reason.startswith(layout.source)


# ---------------------------------------------------------------- encoders (the demo's beacon)
@given(
    st.uuids(),
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFFFF),
    st.integers(-128, 127),
)
def test_ibeacon_round_trip(uuid: Any, major: int, minor: int, power: int) -> None:
    beacon = IBeacon(str(uuid), major, minor, power)
    assert decode_ibeacon(adverts.encode_ibeacon(beacon)) == beacon


@given(
    st.integers(1, 0xFFFF) | st.none(),
    st.integers(-0x7FFF, 0x7FFF).map(lambda t: t / 256) | st.none(),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1).map(lambda t: t / 10),
)
def test_tlm_round_trip(battery: int | None, temp: float | None, count: int, uptime: float) -> None:
    tlm = EddystoneTLM(battery, temp, count, uptime)
    decoded = decode_eddystone(adverts.encode_eddystone(tlm))
    assert isinstance(decoded, EddystoneTLM)
    assert decoded.battery_mv == battery and decoded.adv_count == count and decoded.uptime == round(uptime, 1)
    assert decoded.temperature == (None if temp is None else round(temp, 2))


# ---------------------------------------------------------------- advertisements -> points
def test_ibeacon_matched_by_ids_from_any_address() -> None:
    watch = AdvertWatch("ibeacon", uuid="41424344-4546-4748-4940-414243444546", major=1)
    heard = watch.read("11:22:33:44:55:66", IBEACON, {}, -14)
    assert heard is not None and heard.problem is None
    # 6 dB below the power at 1 m: twice as far in free space
    assert heard.values == {
        "present": True,
        "rssi": -14,
        "major": 1,
        "minor": 2,
        "tx_power": -8,
        "distance_m": 2.0,
    }
    assert watch.read("77:22:33:44:55:66", IBEACON, {}, -60) is not None  # a rotated address still matches
    assert (
        AdvertWatch("ibeacon", uuid="41424344-4546-4748-4940-414243444546", major=2).read(
            "11:22:33:44:55:66", IBEACON, {}, -70
        )
        is None
    )
    broken = {0x004C: IBEACON[0x004C][:-1]}
    assert watch.read("11:22:33:44:55:66", broken, {}, -70) is None  # a stranger's garbage is not counted
    assert watch.absent() == {"present": False}


def test_ibeacon_by_address_counts_its_garbage() -> None:
    watch = AdvertWatch("ibeacon", address="11:22:33:44:55:66")
    heard = watch.read("11:22:33:44:55:66", {0x004C: b"\x02\x15\x00"}, {}, -80)
    assert heard is not None and heard.values == {"present": True, "rssi": -80}
    assert heard.problem is not None and heard.problem.counter == "garbage"
    assert watch.read("11:22:33:44:55:66", {0x0059: b"\x01"}, {}, None) == adverts.Heard({"present": True})


def test_eddystone_tlm_follows_the_address_of_the_matching_uid() -> None:
    uid = EddystoneUID("12345678901234678901", "000000000001", -29)
    tlm = adverts.encode_eddystone(EddystoneTLM(2840, 19.0, 5223, 1094.8))
    watch = AdvertWatch("eddystone", namespace="12345678901234678901")
    assert watch.read("AA:00:00:00:00:01", {}, tlm, -60) is None  # TLM before any UID: whose is it?
    heard = watch.read("aa:00:00:00:00:01", {}, adverts.encode_eddystone(uid), -70)
    assert (
        heard is not None and heard.values["instance"] == "000000000001" and heard.values["tx_power"] == -29
    )
    heard = watch.read("AA:00:00:00:00:01", {}, tlm, -60)
    assert heard is not None and heard.values == {
        "present": True,
        "rssi": -60,
        "battery_mv": 2840,
        "temperature": 19.0,
        "adv_count": 5223,
        "uptime": 1094.8,
    }
    assert watch.read("BB:00:00:00:00:02", {}, tlm, -60) is None  # another beacon's telemetry
    other = adverts.encode_eddystone(EddystoneUID("ffffffffffffffffffff", "000000000001", -29))
    assert watch.read("BB:00:00:00:00:02", {}, other, -60) is None


def test_eddystone_encrypted_tlm_is_counted_as_encrypted() -> None:
    watch = AdvertWatch("eddystone", address="AA:00:00:00:00:01")
    heard = watch.read("AA:00:00:00:00:01", {}, {EDDYSTONE_UUID: b"\x20\x01" + bytes(16)}, -60)
    assert heard is not None and heard.problem is not None and heard.problem.counter == "encrypted"
    assert heard.values == {"present": True, "rssi": -60}


def test_advert_layout_gives_fields_packet_id_and_problems() -> None:
    watch = adverts.watch_for("advert", ADDR, layout=RUUVI)
    heard = watch.read(ADDR, {0x0499: RUUVI_VALID}, {}, -75)
    assert heard is not None and heard.problem is None and heard.packet_id == 205
    assert (
        heard.values["present"] is True
        and heard.values["temperature"] == 24.3
        and heard.values["rssi"] == -75
    )
    assert watch.read("00:00:00:00:00:01", {0x0499: RUUVI_VALID}, {}, -75) is None
    short = watch.read(ADDR, {0x0499: RUUVI_VALID[:10]}, {}, -75)
    assert short is not None and short.problem == NotDecoded(
        "garbage", "manufacturer data 0x0499: 10 bytes, the layout has 24"
    )
    names = [p.name for p in watch.points()]
    assert names[:2] == ["present", "rssi"] and names[2:] == [f.name for f in RUUVI.fields]
    assert {p.name: p.unit for p in watch.points()}["pressure"] == "hPa"


def test_watch_refuses_what_it_cannot_match() -> None:
    with pytest.raises(ValueError, match="needs an address or beacon ids"):
        AdvertWatch("ibeacon")
    with pytest.raises(ValueError, match="needs a layout"):
        AdvertWatch("advert", address=ADDR)


def test_beacon_point_sets_cover_what_read_reports() -> None:
    ib = AdvertWatch("ibeacon", address="11:22:33:44:55:66")
    heard = ib.read("11:22:33:44:55:66", IBEACON, {}, -50)
    assert heard is not None and set(heard.values) <= {p.name for p in ib.points()}
    ed = AdvertWatch("eddystone", address="11:22:33:44:55:66")
    reported: set[str] = set()
    for data in (
        adverts.encode_eddystone(EddystoneUID("12345678901234678901", "000000000001", -29)),
        adverts.encode_eddystone(EddystoneTLM(3000, -9.5, 1, 2.0)),
        {EDDYSTONE_UUID: b"\x10\xf8\x03github\x00citruz"},
    ):
        h = ed.read("11:22:33:44:55:66", {}, data, -50)
        assert h is not None
        reported |= set(h.values)
    assert reported == {p.name for p in ed.points()}
