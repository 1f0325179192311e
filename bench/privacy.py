"""Privacy benchmark: sealing sensitive payloads under per-subject keys (`edge.privacy.keys`)
beside raw AES-256-GCM of the same payloads measured in the same run, and keyed pseudonyms.

    python -m bench.privacy [--quick]

200-byte payloads from 1,000 subjects (their keys cached, as at a site's steady state): seals/s
and opens/s through SubjectKeys against a floor of `AESGCM.encrypt` / `decrypt` with one key and
a fresh nonce per payload; floor and figure alternate over several rounds and the medians are
reported. Also: first seals of new subjects (a key created, wrapped and committed with
synchronous=FULL each), forgets (each truncating the WAL), and pseudonymised vehicle payloads/s.
The last line is one JSON object with the figures and "ratio" (seals/s / raw encrypts/s).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.privacy.keys import SubjectKeys
from edge.privacy.pseudonym import DEFAULT_FIELDS, pseudonymise_payload

PAYLOAD_BYTES = 200
SUBJECTS = 1000
AAD = b"journal seq 123456789"


def payloads(n: int) -> list[tuple[str, bytes]]:
    return [(f"r-{i % SUBJECTS:04d}", os.urandom(PAYLOAD_BYTES)) for i in range(n)]


def rate(n: int, run: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    run()
    return n / (time.perf_counter() - t0)


def raw_round(items: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(encrypts/s, decrypts/s) of bare AES-256-GCM, one key, a fresh nonce per payload."""
    cipher = AESGCM(AESGCM.generate_key(bit_length=256))
    sealed: list[tuple[bytes, bytes]] = []

    def encrypt() -> None:
        for _subject, data in items:
            nonce = os.urandom(12)
            sealed.append((nonce, cipher.encrypt(nonce, data, AAD)))

    def decrypt() -> None:
        for nonce, ct in sealed:
            cipher.decrypt(nonce, ct, AAD)

    return rate(len(items), encrypt), rate(len(items), decrypt)


def store_round(keys: SubjectKeys, items: list[tuple[str, bytes]]) -> tuple[float, float]:
    """(seals/s, opens/s) through the key store, every subject's key already cached."""
    sealed: list[bytes] = []
    seal = keys.seal

    def seal_all() -> None:
        for subject, data in items:
            sealed.append(seal(subject, data, AAD))

    def open_all() -> None:
        for envelope in sealed:
            keys.open(envelope, AAD)

    return rate(len(items), seal_all), rate(len(items), open_all)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer payloads and rounds (seconds)")
    args = ap.parse_args()
    n, rounds, cold = (20_000, 3, 200) if args.quick else (100_000, 7, 1000)
    items = payloads(n)
    with tempfile.TemporaryDirectory() as tmp:
        keys = SubjectKeys(Path(tmp) / "keys.db", os.urandom(32))
        first = rate(cold, lambda: [keys.seal(f"new-{i}", b"x", AAD) for i in range(cold)])
        for i in range(SUBJECTS):  # steady state: every subject's key exists and is cached
            keys.seal(f"r-{i:04d}", b"warm", AAD)
        raw_enc, raw_dec, seals, opens = [], [], [], []
        for _ in range(rounds):
            e, d = raw_round(items)
            s, o = store_round(keys, items)
            raw_enc.append(e)
            raw_dec.append(d)
            seals.append(s)
            opens.append(o)
        forgets = rate(cold, lambda: [keys.forget(f"new-{i}") for i in range(cold)])
        keys.close()
    vehicle = {"plate": "沪A23522", "direction": "in", "privacy": "personal"}
    fields, key = DEFAULT_FIELDS["vehicle_passage"], os.urandom(32)
    pseudonyms = rate(n, lambda: [pseudonymise_payload(vehicle, fields, key) for _ in range(n)])

    enc, dec = statistics.median(raw_enc), statistics.median(raw_dec)
    seal, opened = statistics.median(seals), statistics.median(opens)
    ratio = seal / enc
    roundtrip, raw_roundtrip = 1 / (1 / seal + 1 / opened), 1 / (1 / enc + 1 / dec)
    print(
        f"floor: raw AES-256-GCM encrypt, {PAYLOAD_BYTES}-byte payloads: {enc:,.0f}/s (decrypt {dec:,.0f}/s)"
    )
    print(f"SubjectKeys.seal, {SUBJECTS:,} cached subjects:            {seal:,.0f}/s (open {opened:,.0f}/s)")
    print(f"seal + open round trips: {roundtrip:,.0f}/s (raw encrypt + decrypt {raw_roundtrip:,.0f}/s)")
    print(f"first seal of a new subject (key created, FULL sync): {first:,.0f}/s; forget: {forgets:,.0f}/s")
    print(f"pseudonymised vehicle payloads: {pseudonyms:,.0f}/s")
    print(f"ratio {ratio:.3f} (round trip {roundtrip / raw_roundtrip:.3f})")
    print(
        json.dumps(
            {
                "bench": "privacy",
                "payload_bytes": PAYLOAD_BYTES,
                "payloads": n,
                "rounds": rounds,
                "seals_per_s": round(seal),
                "opens_per_s": round(opened),
                "roundtrips_per_s": round(roundtrip),
                "floor_encrypts_per_s": round(enc),
                "floor_decrypts_per_s": round(dec),
                "floor_roundtrips_per_s": round(raw_roundtrip),
                "new_subjects_per_s": round(first),
                "forgets_per_s": round(forgets),
                "pseudonymised_payloads_per_s": round(pseudonyms),
                "ratio_roundtrip": round(roundtrip / raw_roundtrip, 3),
                "ratio": round(ratio, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
