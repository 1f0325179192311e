"""The privacy building blocks on real files: pseudonyms stable across processes and different per
key, key files refused when others can read them or when too short, per-subject sealing whose
forgotten keys leave no byte behind in keys.db or its WAL, master-key rotation, and envelopes that
refuse any alteration."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.privacy.keyfile import KeyFileError
from edge.privacy.keys import (
    NONCES_PER_DRAW,
    OVERHEAD,
    EnvelopeError,
    KeyForgotten,
    SubjectKeys,
    WrongMasterKey,
    create_master_key,
    load_master_key,
)
from edge.privacy.pseudonym import (
    DEFAULT_FIELDS,
    PseudonymiseConfig,
    Pseudonymiser,
    load_pseudonym_key,
    pseudonym,
    pseudonymise_payload,
)
from tests.core.test_file_modes import loose_umask  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[2]
PLATE = "沪A23522"
PSEUDONYM = re.compile(r"ps_[a-z2-7]{20}")


def key_file(path: Path, material: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(material)
    path.chmod(mode)
    return path


@pytest.fixture
def master(tmp_path: Path) -> bytes:
    create_master_key(tmp_path / "master.key")
    return load_master_key(tmp_path / "master.key")


def file_bytes(db: Path) -> bytes:
    """keys.db and whatever SQLite keeps beside it (-wal, -shm), as they are on disk."""
    return b"".join(p.read_bytes() for p in sorted(db.parent.glob(db.name + "*")))


# ---------------------------------------------------------------- pseudonyms
def test_same_key_same_pseudonym_in_another_process_another_key_another_pseudonym(tmp_path: Path) -> None:
    central = key_file(tmp_path / "central.key", os.urandom(24).hex().encode() + b"\n")
    city = key_file(tmp_path / "city.key", os.urandom(24).hex().encode())
    config = PseudonymiseConfig(key_file=str(central))
    mine = Pseudonymiser(config).payload("vehicle_passage", {"plate": PLATE, "direction": "in"})
    code = (
        "import sys; from edge.privacy.pseudonym import load_pseudonym_key, pseudonym; "
        "print(pseudonym(load_pseudonym_key(sys.argv[1], None), sys.argv[2]))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(central), PLATE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    assert PSEUDONYM.fullmatch(mine["plate"]), mine
    assert other.stdout.strip() == mine["plate"]
    assert mine["direction"] == "in"
    assert pseudonym(load_pseudonym_key(str(city), None), PLATE) != mine["plate"]


def test_key_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    material = "k" * 40
    monkeypatch.setenv("EDGE_TEST_PSEUDONYM_KEY", material)
    config = PseudonymiseConfig(key_env="EDGE_TEST_PSEUDONYM_KEY")
    assert Pseudonymiser(config).value(PLATE) == pseudonym(material.encode(), PLATE)
    monkeypatch.delenv("EDGE_TEST_PSEUDONYM_KEY")
    with pytest.raises(KeyFileError, match="EDGE_TEST_PSEUDONYM_KEY is not set"):
        Pseudonymiser(config)


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    loose = key_file(tmp_path / "loose.key", b"x" * 48, 0o644)
    with pytest.raises(KeyFileError) as info:
        load_pseudonym_key(str(loose), None)
    assert str(loose) in str(info.value) and "0644" in str(info.value) and "0600" in str(info.value)
    key_file(loose, b"x" * 48, 0o640)
    with pytest.raises(KeyFileError, match="0640"):
        load_pseudonym_key(str(loose), None)
    loose.chmod(0o400)
    assert load_pseudonym_key(str(loose), None) == b"x" * 48


def test_a_short_key_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    short = key_file(tmp_path / "short.key", b"y" * 31 + b"\n")
    with pytest.raises(KeyFileError) as info:
        load_pseudonym_key(str(short), None)
    assert (
        str(short) in str(info.value) and "31 bytes" in str(info.value) and "at least 32" in str(info.value)
    )
    monkeypatch.setenv("EDGE_TEST_SHORT", "z" * 16)
    with pytest.raises(KeyFileError, match="EDGE_TEST_SHORT is 16 bytes; at least 32"):
        load_pseudonym_key(None, "EDGE_TEST_SHORT")
    with pytest.raises(KeyFileError, match="cannot read key file"):
        load_pseudonym_key(str(tmp_path / "missing.key"), None)


def test_payload_copy_defaults_nested_and_non_string_values() -> None:
    key = b"k" * 32
    original = {
        "systolic_mmhg": 131,
        "resident": "r-0042",
        "user": 3,
        "history": [{"resident": "r-0042", "at": 1}, {"resident": ["r-1", "r-2"]}],
        "device": {"user": {"id": 7, "name": "王"}},
    }
    before = repr(original)
    out = pseudonymise_payload(original, DEFAULT_FIELDS["blood_pressure"], key)
    assert repr(original) == before  # a copy: the journal's record is not touched
    assert out["systolic_mmhg"] == 131
    assert out["resident"] == pseudonym(key, "r-0042") == out["history"][0]["resident"]
    assert out["user"] == pseudonym(key, "3")  # a number is its canonical text
    assert out["history"][1]["resident"] == pseudonym(key, '["r-1","r-2"]')
    assert out["device"]["user"] == pseudonym(key, {"name": "王", "id": 7})
    assert out["history"][0]["at"] == 1
    assert pseudonymise_payload({"resident": None}, ["resident"], key) == {"resident": None}
    untouched = pseudonymise_payload(original, (), key)
    assert untouched == original and untouched["history"] is not original["history"]


def test_defaults_per_kind_and_clear(tmp_path: Path) -> None:
    key = key_file(tmp_path / "k.key", b"q" * 32)
    plain = Pseudonymiser(PseudonymiseConfig(key_file=str(key)))
    assert plain.payload("vehicle_passage", {"plate": PLATE})["plate"] != PLATE
    assert plain.payload("gate_opened", {"plate": PLATE})["plate"] == PLATE  # not a shipped kind's field
    custom = Pseudonymiser(PseudonymiseConfig(key_file=str(key), fields=["badge"], clear=["plate"]))
    assert custom.payload("vehicle_passage", {"plate": PLATE})["plate"] == PLATE
    assert custom.payload("door", {"badge": "B-17"})["badge"] == pseudonym(b"q" * 32, "B-17")
    assert custom.payload("weight", {"resident": "r-1"})["resident"] == pseudonym(b"q" * 32, "r-1")


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({}, "give key_file: PATH or key_env: VARIABLE"),
        ({"key_file": "a", "key_env": "B"}, "exactly one"),
        (
            {"key_env": "K", "clear": ["plat"]},
            "clear: plat is not a pseudonymised field; pseudonymised fields: plate",
        ),
        (
            {"key_env": "K", "fields": ["badge"], "clear": ["badge"]},
            "badge: named in both fields: and clear:",
        ),
        ({"key_env": "K", "fields": [" plate"]}, "invalid field name ' plate'"),
        ({"key_env": "K", "salt": "x"}, "salt"),
    ],
)
def test_config_mistakes_are_named(block: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        PseudonymiseConfig.model_validate(block)


# ---------------------------------------------------------------- the master key
@pytest.mark.usefixtures("loose_umask")
def test_master_key_file_is_private_never_overwritten_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    create_master_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = load_master_key(path)
    assert len(first) == 32
    with pytest.raises(KeyFileError, match="never overwritten"):
        create_master_key(path)
    assert load_master_key(path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["master.key"]  # no temporary file left
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="0644"):
        load_master_key(path)
    bad = key_file(tmp_path / "bad.key", b"not base64 at all\n")
    with pytest.raises(KeyFileError, match="expected 32 bytes in base64"):
        load_master_key(bad)


@pytest.mark.usefixtures("loose_umask")
def test_keys_db_is_private_and_refuses_another_master_key(tmp_path: Path, master: bytes) -> None:
    db = tmp_path / "keys.db"
    with SubjectKeys(db, master) as keys:
        keys.seal("r-0001", b"x", b"")
        assert {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("keys.db*")} == {0o600}
    with pytest.raises(WrongMasterKey, match=r"keys\.db: this master key does not open the key store"):
        SubjectKeys(db, os.urandom(32))


# ---------------------------------------------------------------- sealing and forgetting
def test_sealed_data_hides_the_plaintext_and_opens_with_its_aad(tmp_path: Path, master: bytes) -> None:
    plaintext = b'{"systolic_mmhg": 186, "diastolic_mmhg": 124, "resident": "r-0042"}'
    with SubjectKeys(tmp_path / "keys.db", master) as keys:
        sealed = keys.seal("r-0042", plaintext, b"seq=17")
        again = keys.seal("r-0042", plaintext, b"seq=17")
        assert b"186" not in sealed and b"r-0042" not in sealed
        assert len(sealed) == len(plaintext) + OVERHEAD and sealed != again  # a fresh nonce each time
        assert sealed[1:17] == again[1:17]  # one key for the subject
        assert keys.open(sealed, b"seq=17") == plaintext
        assert keys.subjects_count() == 1
    with SubjectKeys(tmp_path / "keys.db", master) as reopened:  # the key is on disk, not only in memory
        assert reopened.open(sealed, b"seq=17") == plaintext


def test_a_copy_taken_before_forget_no_longer_opens(tmp_path: Path, master: bytes) -> None:
    db = tmp_path / "keys.db"
    with SubjectKeys(db, master) as keys:
        copy = bytes(keys.seal("r-0042", b"186/124", b"aad"))
        other = keys.seal("r-0043", b"118/76", b"aad")
        assert keys.forget("r-0042") is True
        with pytest.raises(KeyForgotten):
            keys.open(copy, b"aad")
        assert keys.open(other, b"aad") == b"118/76"
        assert keys.forget("r-0042") is False
        assert keys.subjects_count() == 1
        fresh = keys.seal("r-0042", b"120/80", b"aad")  # a new visit gets a new key
        assert keys.open(fresh, b"aad") == b"120/80"
    with SubjectKeys(db, master) as reopened, pytest.raises(KeyForgotten):
        reopened.open(copy, b"aad")


def test_forget_leaves_no_wrapped_key_in_the_file_or_its_wal(tmp_path: Path, master: bytes) -> None:
    db = tmp_path / "keys.db"
    subjects = [f"resident-{i:04d}" for i in range(300)]  # several pages: rows move as the tree grows
    with SubjectKeys(db, master) as keys:
        sealed = {s: keys.seal(s, s.encode(), b"") for s in subjects}
        raw = sqlite3.connect(db)
        wrapped = dict(raw.execute("SELECT kid, wrapped FROM subject_keys").fetchall())
        raw.close()
        gone = subjects[::7]
        gone_kids = [sealed[s][1:17] for s in gone]
        gone_wrapped = [wrapped[kid] for kid in gone_kids]
        assert all(w in file_bytes(db) for w in gone_wrapped[:3])  # the search finds them while they exist
        for s in gone:
            assert keys.forget(s)
        on_disk = file_bytes(db)
        assert [w.hex() for w in gone_wrapped if w in on_disk] == []
        assert (tmp_path / "keys.db-wal").stat().st_size == 0
        assert keys.open(sealed[subjects[1]], b"") == subjects[1].encode()
    assert [s for s in subjects if s.encode() in on_disk] == []  # subject ids are never stored


def test_a_key_forgotten_by_another_process_stops_opening_here(tmp_path: Path, master: bytes) -> None:
    db = tmp_path / "keys.db"
    with SubjectKeys(db, master, recheck=0) as gateway:
        sealed = gateway.seal("r-0042", b"186/124", b"")
        assert gateway.open(sealed, b"") == b"186/124"  # now cached in the gateway's memory
        code = (
            "import sys; from edge.privacy.keys import SubjectKeys, load_master_key; "
            "k = SubjectKeys(sys.argv[1], load_master_key(sys.argv[2])); print(k.forget('r-0042')); k.close()"
        )
        cli = subprocess.run(
            [sys.executable, "-c", code, str(db), str(tmp_path / "master.key")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.stdout.strip() == "True", cli.stderr
        with pytest.raises(KeyForgotten):
            gateway.open(sealed, b"")


def test_rotate_master_keeps_envelopes_and_retires_the_old_key(tmp_path: Path, master: bytes) -> None:
    db = tmp_path / "keys.db"
    create_master_key(tmp_path / "new.key")
    new = load_master_key(tmp_path / "new.key")
    with SubjectKeys(db, master, cache_size=4) as keys:
        sealed = {f"r-{i}": keys.seal(f"r-{i}", f"reading {i}".encode(), b"a") for i in range(20)}
        assert keys.rotate_master(new) == 20
        assert keys.open(sealed["r-3"], b"a") == b"reading 3"
        later = keys.seal("r-99", b"after", b"a")
    with SubjectKeys(db, new) as rotated:
        assert {s: rotated.open(e, b"a") for s, e in sealed.items()} == {
            f"r-{i}": f"reading {i}".encode() for i in range(20)
        }
        assert rotated.open(later, b"a") == b"after"
    with pytest.raises(WrongMasterKey):
        SubjectKeys(db, master)


def test_altered_envelopes_and_other_aad_are_refused(tmp_path: Path, master: bytes) -> None:
    with SubjectKeys(tmp_path / "keys.db", master) as keys:
        sealed = keys.seal("r-0042", b"186/124", b"seq=17")
        with pytest.raises(EnvelopeError, match="other associated data"):
            keys.open(sealed, b"seq=18")
        for i in (0, 1, 16, 17, 28, 29, len(sealed) - 1):  # version, key reference, nonce, body, tag
            altered = bytearray(sealed)
            altered[i] ^= 0x01
            with pytest.raises(EnvelopeError):
                keys.open(bytes(altered), b"seq=17")
        with pytest.raises(EnvelopeError, match="too short"):
            keys.open(sealed[: OVERHEAD - 1], b"seq=17")
        with pytest.raises(ValueError, match="non-empty string"):
            keys.seal("", b"x", b"")
        assert keys.open(sealed, b"seq=17") == b"186/124"


def test_threads_seal_and_open_through_one_store(tmp_path: Path, master: bytes) -> None:
    errors: list[BaseException] = []
    with SubjectKeys(tmp_path / "keys.db", master, cache_size=8) as keys:

        def work(n: int) -> None:
            try:
                for i in range(200):
                    subject = f"r-{(n * 7 + i) % 40}"
                    text = f"{n}:{i}".encode()
                    assert keys.open(keys.seal(subject, text, subject.encode()), subject.encode()) == text
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert keys.subjects_count() == 40


def test_nonces_come_from_the_os_in_blocks_and_never_twice(
    tmp_path: Path, master: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One `os.urandom` call per seal gave the GIL up at every sensitive record the journal's
    writer sealed; the nonces are drawn in blocks, each used once, from threads too."""
    real = os.urandom
    calls: list[int] = []
    monkeypatch.setattr(os, "urandom", lambda n: calls.append(n) or real(n))
    nonces: list[bytes] = []
    with SubjectKeys(tmp_path / "keys.db", master) as keys:
        keys.seal("r-1", b"", b"")  # the subject's key exists (its creation draws bytes of its own)
        calls.clear()

        def work() -> None:
            for i in range(500):
                sealed = keys.seal("r-1", b"%d" % i, b"")
                nonces.append(sealed[1 + 16 : 1 + 16 + 12])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(nonces) == 2000 and len(set(nonces)) == 2000
    assert 1 <= len(calls) <= 2000 // NONCES_PER_DRAW + 1


def test_a_forked_child_never_reuses_the_parents_nonces(tmp_path: Path, master: bytes) -> None:
    """Nonces drawn before a fork are dropped in the child: the parent and the child seal with the
    same keys, and one nonce under one key twice would give the key away."""
    with SubjectKeys(tmp_path / "keys.db", master) as keys:
        keys.seal("r-1", b"", b"")  # a block of nonces is drawn and partly used
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its next nonce, to the parent
            try:
                os.write(write, keys.seal("r-1", b"child", b"")[17:29])
            finally:
                os._exit(0)
        os.close(write)
        parents = keys.seal("r-1", b"parent", b"")[17:29]
        childs = os.read(read, 64)
        os.close(read)
        os.waitpid(pid, 0)
    assert len(childs) == 12 and childs != parents


def test_a_rotation_elsewhere_stops_new_keys_under_the_old_master(tmp_path: Path, master: bytes) -> None:
    db = tmp_path / "keys.db"
    with SubjectKeys(db, master) as gateway, SubjectKeys(db, master) as cli:
        known = gateway.seal("r-0001", b"before", b"")
        assert cli.rotate_master(os.urandom(32)) == 1
        with pytest.raises(WrongMasterKey, match="rotated by another process"):
            gateway.seal("r-0002", b"a new subject", b"")  # its key would be wrapped by the old master
        assert cli.subjects_count() == 1
        assert cli.open(known, b"") == b"before"
