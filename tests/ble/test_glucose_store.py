"""Where the last glucose record number lives: a private JSON file per meter in the data dir,
replaced whole; an unreadable one means "ask for everything" (repeats, never skips)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from drivers.ble.glucose import Pairing, SequenceStore, measurement


def test_round_trip_private_files_and_a_fresh_store_reads_it(tmp_path: Path) -> None:
    store = SequenceStore(tmp_path / "ble-glucose")
    assert store.load("C0:26:DA:00:00:18") is None
    store.save("C0:26:DA:00:00:18", 41)
    assert SequenceStore(tmp_path / "ble-glucose").load("C0:26:DA:00:00:18") == 41
    path = tmp_path / "ble-glucose" / "c026da000018.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize(
    "text", ["", "{", '{"last_sequence": -1}', '{"last_sequence": 70000}', "[]", '{"last_sequence": "7"}']
)
def test_an_unreadable_file_means_no_number(tmp_path: Path, text: str) -> None:
    (tmp_path / "c026da000018.json").write_text(text)
    assert SequenceStore(tmp_path).load("C0:26:DA:00:00:18") is None


def test_a_save_that_cannot_be_written_raises_and_keeps_the_old_number(tmp_path: Path) -> None:
    (tmp_path / "ble-glucose").write_text("a file where the directory should be")
    store = SequenceStore(tmp_path / "ble-glucose")
    with pytest.raises(OSError):
        store.save("C0:26:DA:00:00:18", 3)
    assert store.load("C0:26:DA:00:00:18") is None


def test_pairing_releases_a_measurement_whose_context_never_comes() -> None:
    got: list[tuple[int, object]] = []
    pairing = Pairing(lambda m, ctx: got.append((m.sequence, ctx)))
    base = bytes.fromhex("ea 07 0c 06 07 00 00")
    with_ctx = lambda seq: bytes([0x16]) + seq.to_bytes(2, "little") + base + bytes.fromhex("34 c0 11")  # noqa: E731
    pairing.on_measurement(measurement(with_ctx(1)))
    pairing.on_measurement(measurement(with_ctx(2)))  # no context for 1: released without one
    pairing.on_context(2, {"meal": "fasting"})
    pairing.on_context(9, {"meal": "casual"})  # no measurement 9 waiting: dropped
    pairing.on_measurement(measurement(with_ctx(3)))
    pairing.flush()
    assert got == [(1, None), (2, {"meal": "fasting"}), (3, None)]
    assert (pairing.unpaired, pairing.orphans) == (2, 1)
