"""Decoders as pure functions: BTHome v2 objects, IEEE 11073 SFLOAT/FLOAT, the health measurements.
Example bytes are the ones in the project's field notes (taken from the specifications)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from drivers.ble import bthome, glucose, measurements, plx
from drivers.ble.ieee11073 import (
    SpecialValue,
    decode_float,
    decode_sfloat,
    encode_float,
    encode_sfloat,
)


def test_bthome_field_notes_example() -> None:
    packet = bthome.decode(bytes.fromhex("40 01 61 02 29 09 03 7c 15"))
    assert packet.values == {"battery": 97, "temperature": 23.45, "humidity": 55.0}
    assert packet.packet_id is None and packet.unknown is None and not packet.trigger


def test_bthome_packet_id_signed_values_binaries_and_repeats() -> None:
    data = bytes.fromhex("44 00 2a 02 18 fc 1a 01 21 00 45 0b 01 40 d2 04")
    packet = bthome.decode(data)
    assert packet.packet_id == 42 and packet.trigger
    assert packet.values == {
        "temperature": -10.0,  # 0xfc18 = -1000 x 0.01
        "door": True,
        "motion": False,
        "temperature_2": 26.7,  # 0x45: 267 x 0.1
        "distance_mm": 1234,
    }


def test_bthome_unknown_object_keeps_what_came_before() -> None:
    packet = bthome.decode(bytes.fromhex("40 01 50 fe 01 02 03"))
    assert packet.values == {"battery": 80}
    assert packet.unknown == 0xFE


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (bytes.fromhex("20 01 50"), "version 1"),
        (bytes.fromhex("40 02 29"), "needs 2 bytes, 1 left"),
        (bytes.fromhex("40 05 01 02"), "needs 3 bytes, 2 left"),
    ],
)
def test_bthome_garbage_says_why(data: bytes, message: str) -> None:
    with pytest.raises(bthome.BTHomeError, match=message):
        bthome.decode(data)


def test_bthome_encrypted_packet_is_its_own_error() -> None:
    with pytest.raises(bthome.EncryptedPacket):
        bthome.decode(bytes.fromhex("41 a4 72 66 c9 5f 73"))


@given(
    battery=st.integers(0, 100),
    temp=st.integers(-32768, 32767),
    distance=st.integers(0, 65535),
    pid=st.integers(0, 255),
)
def test_bthome_encode_decode_round_trip(battery: int, temp: int, distance: int, pid: int) -> None:
    data = bthome.encode([(0x40, distance), (0x01, battery), (0x02, temp)], packet_id=pid)
    packet = bthome.decode(data)
    assert packet.packet_id == pid
    assert packet.values == {
        "battery": battery,
        "temperature": round(temp * 0.01, 2),
        "distance_mm": distance,
    }


# ---------------------------------------------------------------- IEEE 11073
def test_float_field_notes_example() -> None:
    assert decode_float(int.from_bytes(bytes.fromhex("6e 01 00 ff"), "little")) == 36.6


@pytest.mark.parametrize(
    ("raw", "name"), [(0x07FF, "NaN"), (0x0800, "NRes"), (0x07FE, "+INF"), (0x0802, "-INF")]
)
def test_sfloat_special_values_are_not_numbers(raw: int, name: str) -> None:
    with pytest.raises(SpecialValue, match=re.escape(name)):
        decode_sfloat(raw)


@pytest.mark.parametrize(
    ("raw", "name"), [(0x007FFFFF, "NaN"), (0x00800000, "NRes"), (0x007FFFFE, "+INF"), (0x00800002, "-INF")]
)
def test_float_special_values_are_not_numbers(raw: int, name: str) -> None:
    with pytest.raises(SpecialValue, match=re.escape(name)):
        decode_float(raw)


def test_sfloat_examples() -> None:
    assert decode_sfloat(0x0078) == 120  # exponent 0
    assert decode_sfloat(0xF16E) == 36.6  # exponent -1, mantissa 366
    assert decode_sfloat(0x0FFF) == -1  # mantissa -1
    assert decode_sfloat(0x2001) == 100  # exponent 2


@given(mantissa=st.integers(-2045, 2045), exponent=st.integers(-8, 7))
def test_sfloat_decode_encode_round_trip(mantissa: int, exponent: int) -> None:
    raw = ((exponent & 0xF) << 12) | (mantissa & 0xFFF)
    value = decode_sfloat(raw)
    assert value == pytest.approx(mantissa * 10.0**exponent)
    assert decode_sfloat(encode_sfloat(value, digits=8)) == pytest.approx(value)


@given(mantissa=st.integers(-(2**23) + 3, 2**23 - 3), exponent=st.integers(-10, 10))
def test_float_decode_encode_round_trip(mantissa: int, exponent: int) -> None:
    raw = ((exponent & 0xFF) << 24) | (mantissa & 0xFFFFFF)
    value = decode_float(raw)
    assert value == pytest.approx(mantissa * 10.0**exponent)
    assert decode_float(encode_float(value, digits=10)) == pytest.approx(value)


@given(st.floats(-200, 200).map(lambda v: round(v, 1)))
def test_sfloat_encodes_one_decimal_readings_exactly(value: float) -> None:
    assert decode_sfloat(encode_sfloat(value)) == value


# ---------------------------------------------------------------- health measurements
def sfloat(v: float) -> bytes:
    return encode_sfloat(v).to_bytes(2, "little")


def test_blood_pressure_with_every_optional_field() -> None:
    data = (
        bytes([0x1E])  # mmHg, timestamp, pulse, user id, status
        + sfloat(128) + sfloat(82) + sfloat(97)
        + (2024).to_bytes(2, "little") + bytes([5, 1, 8, 30, 15])
        + sfloat(71) + bytes([3]) + (0x0004).to_bytes(2, "little")
    )  # fmt: skip
    assert measurements.blood_pressure(data) == {
        "systolic_mmhg": 128,
        "diastolic_mmhg": 82,
        "mean_arterial_mmhg": 97,
        "measured_at": "2024-05-01T08:30:15",
        "pulse_bpm": 71,
        "user": 3,
        "status": 4,
    }


def test_blood_pressure_in_kpa_is_converted_and_a_missing_map_left_out() -> None:
    data = bytes([0x01]) + sfloat(16.0) + sfloat(10.7) + (0x07FF).to_bytes(2, "little")
    assert measurements.blood_pressure(data) == {
        "systolic_mmhg": 120,
        "diastolic_mmhg": 80,
        "unit_sent": "kPa",
    }


@pytest.mark.parametrize("special", [0x07FF, 0x0800, 0x07FE, 0x0802])
def test_blood_pressure_without_a_systolic_number_is_bad(special: int) -> None:
    data = bytes([0x00]) + special.to_bytes(2, "little") + sfloat(80) + sfloat(90)
    with pytest.raises(measurements.BadMeasurement, match="systolic"):
        measurements.blood_pressure(data)


def test_short_measurements_are_bad() -> None:
    with pytest.raises(measurements.BadMeasurement, match="expected at least 14"):
        measurements.blood_pressure(bytes([0x02]) + sfloat(120) + sfloat(80) + sfloat(90))
    with pytest.raises(measurements.BadMeasurement, match="expected at least 5"):
        measurements.body_temperature(b"\x00\x6e\x01")


def test_weight_si_imperial_and_failed() -> None:
    assert measurements.weight(bytes([0x00]) + (13600).to_bytes(2, "little")) == {"weight_kg": 68.0}
    imperial = measurements.weight(bytes([0x09]) + (15000).to_bytes(2, "little") + (245).to_bytes(2, "little")
                                   + (690).to_bytes(2, "little"))  # fmt: skip
    assert imperial == {"weight_kg": 68.04, "unit_sent": "lb", "bmi": 24.5, "height_m": 1.753}
    with pytest.raises(measurements.BadMeasurement, match="0xFFFF"):
        measurements.weight(bytes([0x00, 0xFF, 0xFF]))


def test_body_temperature_field_notes_example_and_fahrenheit() -> None:
    assert measurements.body_temperature(bytes.fromhex("00 6E 01 00 FF")) == {"temperature_c": 36.6}
    f = measurements.body_temperature(
        bytes([0x05]) + encode_float(98.6, 1).to_bytes(4, "little") + bytes([3])
    )
    assert f == {"temperature_c": 37.0, "unit_sent": "°F", "body_site": "ear"}
    with pytest.raises(measurements.BadMeasurement, match="NaN"):
        measurements.body_temperature(bytes([0x00]) + (0x007FFFFF).to_bytes(4, "little"))


# bthome.io's encryption example: bind key, MAC, counter 0x33221100, temperature 25.06 degC and
# humidity 50.55 % encrypted to these bytes
SPEC_KEY = bytes.fromhex("231d39c1d7cc1ab1aee224cd096db932")
SPEC_MAC = "54:48:E6:8F:80:A5"
SPEC_PACKET = bytes.fromhex("41 a4 72 66 c9 5f 73 00 11 22 33 78 23 72 14")


def test_bthome_decrypts_the_specification_example() -> None:
    packet = bthome.decode(SPEC_PACKET, SPEC_KEY, SPEC_MAC)
    assert packet.values == {"temperature": 25.06, "humidity": 50.55}
    assert packet.counter == 0x33221100


def test_bthome_encrypted_with_a_wrong_key_or_mac_does_not_authenticate() -> None:
    with pytest.raises(bthome.NotAuthentic):
        bthome.decode(SPEC_PACKET, bytes(16), SPEC_MAC)
    with pytest.raises(bthome.NotAuthentic):
        bthome.decode(SPEC_PACKET, SPEC_KEY, "54:48:E6:8F:80:A6")
    with pytest.raises(bthome.NotAuthentic):  # one flipped bit of the data
        bthome.decode(SPEC_PACKET[:2] + bytes([SPEC_PACKET[2] ^ 1]) + SPEC_PACKET[3:], SPEC_KEY, SPEC_MAC)
    with pytest.raises(bthome.BTHomeError, match="too short"):
        bthome.decode(bytes.fromhex("41 00 11 22"), SPEC_KEY, SPEC_MAC)


def test_bthome_encrypt_reproduces_the_specification_example() -> None:
    assert bthome.encrypt(bytes.fromhex("02 ca 09 03 bf 13"), SPEC_KEY, SPEC_MAC, 0x33221100) == SPEC_PACKET


# ---------------------------------------------------------------- GATT golden cases
GOLDEN = Path(__file__).resolve().parents[1] / "cases" / "ble" / "gatt"
DECODER_MODULES = {"glucose": glucose, "plx": plx}


def _golden() -> list[Any]:
    out = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert doc.get("source", "").startswith("https://"), f"{path.name} names no source"
        out += [pytest.param(case, id=f"{path.stem}: {case['name'][:60]}") for case in doc["cases"]]
    return out


@pytest.mark.parametrize("case", _golden())
def test_gatt_golden_case(case: dict[str, Any]) -> None:
    module, name = case["decoder"].split(".")
    decode = getattr(DECODER_MODULES[module], name)
    data = bytes.fromhex(case["bytes"])
    if "error" in case:
        with pytest.raises(measurements.BadMeasurement) as exc:
            decode(data)
        assert str(exc.value) == case["error"]
        return
    got = decode(data)
    if isinstance(got, glucose.Measurement):
        got = {"sequence": got.sequence, "context_follows": got.context_follows, "payload": got.payload}
    elif name == "context":
        got = {"sequence": got[0], "fields": got[1]}
    elif isinstance(got, tuple):
        got = list(got)
    assert got == case["expect"]


def test_glucose_units_both_ways_and_special_concentration() -> None:
    mg = glucose.measurement(bytes.fromhex("02 07 00 ea 07 0c 06 07 00 00 5f b0 11"))  # 95e-5 kg/L
    assert mg.payload["glucose_mg_dl"] == 95 and mg.payload["glucose_mmol_l"] == 5.3
    assert mg.payload["unit_sent"] == "kg/L"
    nan = glucose.measurement(bytes.fromhex("02 08 00 ea 07 0c 06 07 00 00 ff 07 11"))
    with pytest.raises(measurements.BadMeasurement, match="sent NaN"):
        glucose.glucose_record(nan, None)
    assert glucose.report_request(None) == bytes([1, 1])
    assert glucose.report_request(0x01FF) == bytes([1, 3, 1, 0x00, 0x02])


@pytest.mark.parametrize(
    ("raw", "name"),
    [("ff07", "NaN"), ("0008", "NRes"), ("fe07", "+INF"), ("0208", "-INF"), ("0108", "reserved")],
)
def test_plx_special_values_are_named_never_numbers(raw: str, name: str) -> None:
    payload = plx.spot_check(bytes.fromhex("00" + raw + "4800"))
    assert payload == {"mode": "spot_check", "pulse_bpm": 72, "special": {"spo2_pct": name}}
    with pytest.raises(measurements.BadMeasurement, match="no SpO2 and no pulse rate"):
        plx.continuous(bytes.fromhex("00" + raw + raw))
