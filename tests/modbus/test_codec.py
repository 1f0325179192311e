"""Every register type in every word order: known byte patterns, round trips, clear errors."""

from __future__ import annotations

import math
import random

import pytest

from drivers.modbus import codec

# float32 1.5 is 0x3FC00000: bytes A=3F B=C0 C=00 D=00
FLOAT_1_5 = {
    "ABCD": [0x3FC0, 0x0000],
    "CDAB": [0x0000, 0x3FC0],
    "BADC": [0xC03F, 0x0000],
    "DCBA": [0x0000, 0xC03F],
}
# int32 0x01020304
INT32 = {
    "ABCD": [0x0102, 0x0304],
    "CDAB": [0x0304, 0x0102],
    "BADC": [0x0201, 0x0403],
    "DCBA": [0x0403, 0x0201],
}


@pytest.mark.parametrize("order", codec.ORDERS)
def test_float32_known_patterns(order: str) -> None:
    assert codec.decode(FLOAT_1_5[order], "float32", order) == 1.5
    assert codec.encode(1.5, "float32", order) == FLOAT_1_5[order]


@pytest.mark.parametrize("order", codec.ORDERS)
def test_int32_known_patterns(order: str) -> None:
    assert codec.decode(INT32[order], "int32", order) == 0x01020304
    assert codec.encode(0x01020304, "int32", order) == INT32[order]


def test_int64_and_float64_word_orders() -> None:
    regs = [0x0102, 0x0304, 0x0506, 0x0708]
    assert codec.decode(regs, "uint64", "ABCD") == 0x0102030405060708
    assert codec.decode(list(reversed(regs)), "uint64", "CDAB") == 0x0102030405060708
    assert codec.decode([0x0201, 0x0403, 0x0605, 0x0807], "uint64", "BADC") == 0x0102030405060708
    assert codec.decode([0x0807, 0x0605, 0x0403, 0x0201], "uint64", "DCBA") == 0x0102030405060708
    assert codec.decode(codec.encode(-2.5e300, "float64", "CDAB"), "float64", "CDAB") == -2.5e300


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        ("int16", -12345),
        ("uint16", 65535),
        ("int32", -2_000_000_000),
        ("uint32", 4_000_000_000),
        ("int64", -(2**62)),
        ("uint64", 2**64 - 1),
        ("float32", 230.5),
        ("float64", 1234567.891),
    ],
)
@pytest.mark.parametrize("order", codec.ORDERS)
def test_round_trip_every_type_and_order(dtype: str, value: float, order: str) -> None:
    regs = codec.encode(value, dtype, order)
    assert len(regs) == codec.register_count(dtype)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert codec.decode(regs, dtype, order) == value


def test_sixteen_bit_byte_swap() -> None:
    assert codec.decode([0x3412], "uint16", "BADC") == 0x1234
    assert codec.decode([0x1234], "uint16", "CDAB") == 0x1234  # word order means nothing for one word
    assert codec.decode([0xFFFE], "int16") == -2


def test_scale_offset_and_encode_inverse() -> None:
    assert codec.decode([2305], "uint16", scale=0.1) == 230.5
    assert codec.decode([0xFF38], "int16", scale=0.1, offset=10) == -10.0  # -200 * 0.1 + 10
    assert codec.encode(230.5, "uint16", scale=0.1) == [2305]
    assert codec.encode(-10.0, "int16", scale=0.1, offset=10) == [0xFF38]


def test_bits_bool_and_strings() -> None:
    assert codec.decode([0b1000_0000_0000_0100], "bit", bit=2) is True
    assert codec.decode([0b1000_0000_0000_0100], "bit", bit=3) is False
    assert codec.decode([0b1000_0000_0000_0100], "bit", bit=15) is True
    assert codec.decode([0], "bool") is False
    regs = codec.encode("DDSU666", "string", length=8)
    assert regs == [0x4444, 0x5355, 0x3636, 0x3600]
    assert codec.decode(regs, "string") == "DDSU666"
    assert codec.decode([0x4444, 0x5553, 0x3636, 0x0036], "string", "BADC") == "DDSU666"


def test_nan_passes_through_and_errors_are_clear() -> None:
    assert math.isnan(codec.decode([0x7FC0, 0], "float32"))  # type: ignore[arg-type]
    with pytest.raises(codec.DecodeError, match="float32 needs 2 registers, got 1"):
        codec.decode([1], "float32")
    with pytest.raises(ValueError, match=r"out of range for uint16 \(raw 70000"):
        codec.encode(70000, "uint16")
    with pytest.raises(ValueError, match=r"out of range for int16"):
        codec.encode(4000, "int16", scale=0.1)
    with pytest.raises(ValueError, match="does not fit 2 registers"):
        codec.encode("too long", "string", length=4)
    with pytest.raises(ValueError, match="is not a number"):
        codec.encode("abc", "float32")


def test_every_order_shows_the_right_one() -> None:
    shown = codec.every_order(codec.encode(230.0, "float32", "CDAB"), "float32")
    assert shown["CDAB"] == 230.0
    assert shown["ABCD"] != 230.0


def test_unpackers_give_what_decode_raw_gives() -> None:
    # the driver's fast path: answers packed once, values unpacked in C, in every type and order
    rng = random.Random(5)
    for dtype in codec.NUMERIC_TYPES:
        n = codec.register_count(dtype)
        for order in codec.ORDERS:
            unpacker = codec.unpacker(dtype, order)
            assert unpacker is not None
            unpack, swapped = unpacker
            for _ in range(300):
                regs = [rng.randrange(65536) for _ in range(n + 3)]
                at = rng.randrange(4)
                got = unpack(codec.pack_registers(regs, swapped), 2 * at)[0]
                want = codec.decode_raw(regs[at : at + n], dtype, order)
                assert got == want or (got != got and want != want), (dtype, order, regs, at)
    assert codec.unpacker("string", "ABCD") is None and codec.unpacker("bit", "ABCD") is None


def test_one_unpack_for_a_whole_answer_in_one_order() -> None:
    rng = random.Random(6)
    for _ in range(500):
        order = rng.choice(codec.ORDERS)
        fields, at = [], rng.randrange(3)
        for _i in range(rng.randrange(1, 10)):
            dtype = rng.choice(codec.NUMERIC_TYPES)
            fields.append((dtype, order, at))
            at += codec.register_count(dtype) + rng.choice([0, 0, 1, 5])
        regs = [rng.randrange(65536) for _ in range(at + 2)]
        whole = codec.unpacker_for_all(fields)
        assert whole is not None
        unpack, swapped = whole
        got = unpack(codec.pack_registers(regs, swapped))
        want = [codec.decode_raw(regs[a : a + codec.register_count(t)], t, o) for t, o, a in fields]
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g == w or (g != g and w != w), (fields, regs)
    # mixed orders needing different copies, overlaps and non-numbers: no single format
    assert codec.unpacker_for_all([("float32", "ABCD", 0), ("float32", "CDAB", 2)]) is None
    assert codec.unpacker_for_all([("uint32", "ABCD", 0), ("uint16", "ABCD", 1)]) is None
    assert codec.unpacker_for_all([("string", "ABCD", 0)]) is None
