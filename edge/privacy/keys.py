"""One data key per subject (a resident), so that forgetting a subject is deleting one key.

Sensitive records are sealed with AES-256-GCM under their subject's own data key. Data keys live
in a small SQLite file (`keys.db`), each wrapped (AES-256-GCM) under a key derived with HKDF from
the site's master key, which is a file only its owner can read. Deleting a subject's key makes
every copy of its sealed records unreadable at once: the journal, the state database, a backup
taken last year (crypto-shredding).

What keys.db holds and what it never holds:
- the subject id never: a row is found by HMAC-SHA256 of the id under the store's index key (a
  random secret kept in the file wrapped by the master key; deriving it from the master key alone
  would change every subject's row on a master-key rotation, and a row cannot be re-keyed without
  the id it hides);
- a forgotten key's bytes never: the file runs with `secure_delete`, so SQLite overwrites deleted
  content with zeros, and the WAL is checkpointed and truncated after every forget, rotation and
  expiry that deleted keys, so no earlier page image of the row stays in it. What the file system or the flash keeps of
  blocks the file no longer uses is outside the file's reach;
- the random reference (`kid`) of each forgotten or expired key, so that opening what it sealed
  says `KeyForgotten` rather than "unknown key";
- per key, the latest time it sealed something (`last_seal`): the wall time of the seal, or the
  sealed record's own time when that is later. A seal writes it through when the file's time for
  that key is older than SEAL_TIME_SLACK_S, else it is kept in memory and written at each expiry
  pass and at close; a power cut loses at most that slack, which `expire` allows for.

Keys expire with their data (`expire`): once everything a key sealed is past its retention, the
key is deleted like a forgotten one, so copies and backups of the expired records stop opening
too. The caller names the keys that never expire: the site-wide key
(`edge.privacy.atrest.SITE_SUBJECT`) also seals the rules' persistent state, which no retention
removes.

An envelope is: version byte (1) | the key's 16-byte reference | 96-bit random nonce | ciphertext
and tag (45 bytes over the plaintext). The version and the reference are authenticated with the
caller's associated data, so moving an envelope to another record (other `aad`) or altering any
byte makes `open` fail. Random nonces are safe for 2³² seals per subject key, far beyond what one
resident produces. They come from the OS's random source a few hundred at a time (`Nonces`): one
`os.urandom` call per seal gave the GIL up at every sealed record, and the journal's writer then
waited behind the event loop to take it back.

keys.db is never created where sealed data already exists (`sealed_elsewhere`): a new key store
would open none of it, and a forget run on it would delete nothing. It records the journal it
serves (`belongs_to`) and refuses another's. A store whose file left `path` while in use (deleted,
moved aside, replaced) seals nothing more until the file is back: keys created in a file nobody
can open again would take what they seal with them.

The master key is rotated by rewrapping every data key (`rotate_master`); sealed records are not
touched. Install the new key file only after the rotation returned: until then the file holds
data keys wrapped by the old one. Copies of keys.db taken before a rotation still open with the
old master key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import TypeVar

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from edge.privacy.keyfile import MASTER_KEY_BYTES, create_master_key, load_master_key

__all__ = [
    "EnvelopeError",
    "KeyForgotten",
    "KeyStoreUnusable",
    "SubjectKeys",
    "WrongMasterKey",
    "create_master_key",
    "envelope_kid",
    "load_master_key",
    "opens_with",
]

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

VERSION = 1
KID_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 1 + KID_BYTES
OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES
NONCES_PER_DRAW = 256  # nonces read from the OS's random source at a time (see Nonces)
# A seal writes its time through to keys.db (one synchronous commit) when the time the file holds
# for its key is older than this; later seals are kept in memory until the next expiry pass. After
# a crash the file's times are at most this old, and `expire` keeps every key this much longer,
# so a key never goes before the records it sealed.
SEAL_TIME_SLACK_S = 86400.0
CACHE_SIZE = 4096  # unwrapped data keys kept in memory (a site's active residents)
# how long a key another process forgot may still open here: asking SQLite whether the file
# changed on every seal would cost as much as the encryption itself
RECHECK_S = 0.1

WRAP_INFO = b"community-edge keys.db wrap v1"
SUBJECT_AAD = b"community-edge subject key "
KEYRING_AAD = b"community-edge keyring "

SCHEMA = (
    # subject: HMAC-SHA256 of the subject id under the index key; kid: the reference envelopes carry;
    # last_seal: the latest time the key sealed something, as of the last expiry pass (NULL: a row
    # an earlier version inserted, taken as "now" by the next pass)
    "CREATE TABLE IF NOT EXISTS subject_keys ("
    " subject BLOB PRIMARY KEY, kid BLOB NOT NULL UNIQUE, wrapped BLOB NOT NULL, last_seal REAL)",
    "CREATE TABLE IF NOT EXISTS forgotten_keys (kid BLOB PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS keyring (name TEXT PRIMARY KEY, wrapped BLOB NOT NULL)",
    # the file name of the journal beside it whose records these keys seal (one row; see _claim)
    "CREATE TABLE IF NOT EXISTS belongs_to (journal TEXT NOT NULL)",
)


class KeyForgotten(LookupError):
    """The subject's data key was deleted: what it sealed can no longer be read by anyone."""


class EnvelopeError(ValueError):
    """Bytes that are not an envelope this store can open: altered, truncated, sealed with other
    associated data or by another key store."""


class WrongMasterKey(ValueError):
    """The master key given does not open this key store."""


class KeyStoreUnusable(WrongMasterKey):
    """keys.db cannot be used as it is: missing or empty while sealed data exists, not a database,
    or removed from under this process. The message names the file and what to do. A
    WrongMasterKey, so whoever refuses a key store that does not open refuses these alike; not a
    plain ValueError, so the journal holds (and retries) a record whose seal it stopped rather
    than taking the record for one that can never be written."""


def envelope_kid(envelope: bytes) -> bytes | None:
    """The reference of the key that sealed `envelope` (readable without any key), None when the
    bytes are not an envelope of this version."""
    if len(envelope) < OVERHEAD or envelope[0] != VERSION:
        return None
    return bytes(envelope[1:HEADER_BYTES])


def _check_master(master_key: bytes) -> None:
    if not isinstance(master_key, bytes) or len(master_key) != MASTER_KEY_BYTES:
        raise ValueError(f"a master key is {MASTER_KEY_BYTES} bytes (see load_master_key)")


def _wrapper(master_key: bytes) -> AESGCM:
    _check_master(master_key)
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=WRAP_INFO)
    return AESGCM(kdf.derive(master_key))


class Nonces:
    """Random 96-bit nonces from `os.urandom`, drawn `count` at a time, each handed out once.

    `os.urandom` releases the GIL around its system call: sealing with a call per nonce, the
    journal's writer thread gave the GIL up at every sensitive record and waited for the event
    loop's thread to let it go again (16 µs a seal in a busy gateway against 2.5 alone). Drawn in
    blocks, the nonces are the same independent random values, only read from the kernel earlier.
    A forked child drops the block it inherited, so two processes never use the same nonces."""

    def __init__(self, count: int = NONCES_PER_DRAW) -> None:
        self._count = count
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()  # a new one: the parent's may have been held at the fork
        self._block = b""
        self._at = 0

    def take(self) -> bytes:
        with self._lock:
            at = self._at
            if at == len(self._block):
                self._block = os.urandom(NONCE_BYTES * self._count)
                at = 0
            self._at = at + NONCE_BYTES
            return self._block[at : at + NONCE_BYTES]


NONCES = Nonces()


def _wrap(wrapper: AESGCM, secret: bytes, aad: bytes) -> bytes:
    nonce = NONCES.take()
    return nonce + wrapper.encrypt(nonce, secret, aad)


def _unwrap(wrapper: AESGCM, wrapped: bytes, aad: bytes) -> bytes:
    return wrapper.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)


def _create_private(path: str) -> None:
    """Create the file 0600 before SQLite does (its -wal and -shm take the database's mode); an
    existing file loses any group and other bits."""
    if path == ":memory:":
        return
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & 0o700)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _absent(path: str) -> bool:
    """No key store at `path`: no file, or an empty one (SQLite would take it for a new database)."""
    if path == ":memory:":
        return False
    try:
        return os.stat(path).st_size == 0
    except FileNotFoundError:
        return True


def _inode(path: str) -> tuple[int, int] | None:
    if path == ":memory:":
        return None
    st = os.stat(path)
    return st.st_dev, st.st_ino


def missing_message(path: str, found: str) -> str:
    """The refusal of a new key store where the old one held the keys of sealed data."""
    return (
        f"{path} is missing or empty, but {found} under the keys it held: a new key store "
        "would open none of it, and a forget run now would delete nothing. Put keys.db back from its "
        'copy (docs/fleet.md, "Backup and restore"), then run this again; nothing was changed'
    )


def displaced_message(path: str) -> str:
    """Why a running store stopped sealing: its file is no longer at `path`."""
    return (
        f"{path} was deleted, moved or replaced while in use: nothing more is sealed under keys that "
        "would be lost with the file it had open (records are held, not written). Put keys.db back "
        'from its copy (docs/fleet.md, "Backup and restore") and restart the gateway'
    )


def _open_error(path: str, exc: sqlite3.Error) -> str:
    if isinstance(exc, sqlite3.OperationalError) and "not a database" not in str(exc):
        # locked, read-only, disk I/O: the file may be fine
        return f"{path}: cannot open the key store ({exc}); nothing was changed"
    return (
        f"{path}: the key store is not a SQLite database or is damaged ({exc}): put keys.db back "
        'from its copy (docs/fleet.md, "Backup and restore"); nothing was changed'
    )


def opens_with(path: str | os.PathLike[str], master_key: bytes) -> bool:
    """Whether `master_key` opens the key store at `path`, read without changing it (the file
    must exist): a rotation's re-run learns it was done, `edge doctor` that the site's master key
    is the one in force. KeyStoreUnusable when it is missing, empty or not a key store."""
    wrapper = _wrapper(master_key)
    where = str(path)
    if _absent(where):
        raise KeyStoreUnusable(f"{where}: no key store there (missing or empty)")
    # without a WAL (nobody has the file open) it is read as immutable: SQLite then creates no
    # -wal or -shm, which a root `edge doctor` would leave root's, for the service to fail on
    wal = f"{where}-wal"
    mode = "ro" if os.path.exists(wal) and os.path.getsize(wal) > 0 else "ro&immutable=1"
    try:
        uri = f"{Path(where).resolve().as_uri()}?mode={mode}"
        conn = sqlite3.connect(uri, uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise KeyStoreUnusable(_open_error(where, exc)) from None
    try:
        row = conn.execute("SELECT wrapped FROM keyring WHERE name = 'index'").fetchone()
    except sqlite3.Error as exc:
        raise KeyStoreUnusable(_open_error(where, exc)) from None
    finally:
        conn.close()
    if row is None:
        raise KeyStoreUnusable(f"{where}: the key store holds no index key (it was never opened)")
    try:
        _unwrap(wrapper, row[0], KEYRING_AAD + b"index")
    except InvalidTag:
        return False
    return True


def _put(cache: OrderedDict[K, V], key: K, value: V, size: int) -> None:
    """Least recently used entries leave first."""
    cache[key] = value
    cache.move_to_end(key)
    if len(cache) > size:
        cache.popitem(last=False)


# ---------------------------------------------------------------- the store
class SubjectKeys:
    """Per-subject data keys in `path`, wrapped by `master_key`. Safe to share between threads
    (one lock around the file and the caches; encryption itself runs outside it). Another process
    may use the same file: a key it forgets stops opening here within `recheck` seconds, and a
    rotation it made is noticed before this one creates a key. `clock`: the wall time a seal is
    recorded at (the journal's, whose retention expires the keys).

    `sealed_elsewhere`: asked when the file is missing or empty, it names what was sealed under
    the keys the file held (None: nothing): a new file is then refused (KeyStoreUnusable), since
    what it would hold opens none of it. Sealing stops, with the same error, while the file this
    store opened is no longer the one at `path` (deleted, moved aside or replaced): keys created
    in a file nobody can open again would take what they seal with them.

    `journal`: the file name of the journal beside it that the store serves. The first store
    opened with one claims an unclaimed file; another journal's is refused (KeyStoreUnusable):
    two sites whose journals share a folder would share their residents' keys, and a forget at
    one would erase the other's."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        master_key: bytes,
        cache_size: int = CACHE_SIZE,
        recheck: float = RECHECK_S,
        clock: Callable[[], float] = time.time,
        sealed_elsewhere: Callable[[], str | None] | None = None,
        journal: str | None = None,
    ):
        self.path = str(path)
        self._wrapper = _wrapper(master_key)
        self._lock = threading.Lock()
        self._cache_size = max(1, cache_size)
        self._recheck = recheck
        self._clock = clock
        # in memory only: the subject ids of recent seals, and the unwrapped keys
        self._keys: OrderedDict[str, tuple[bytes, AESGCM]] = OrderedDict()  # subject -> (header, key)
        self._ciphers: OrderedDict[bytes, AESGCM] = OrderedDict()  # kid -> key, for opening
        # kid -> the latest time it sealed something, not yet written to the file (see expire)
        self._seal_times: dict[bytes, float] = {}
        # kid -> the seal time keys.db holds for it, for the keys in use (SEAL_TIME_SLACK_S)
        self._stored_times: OrderedDict[bytes, float] = OrderedDict()
        self._wal_pending = False
        if sealed_elsewhere is not None and _absent(self.path):
            found = sealed_elsewhere()
            if found is not None:
                raise KeyStoreUnusable(missing_message(self.path, found))
        _create_private(self.path)
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        except sqlite3.Error as exc:
            raise KeyStoreUnusable(_open_error(self.path, exc)) from None
        try:
            self._setup()
            self._index_key = self._load_index_key()
            if journal is not None:
                self._claim(journal)
            self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            self._conn.close()
            raise KeyStoreUnusable(_open_error(self.path, exc)) from None
        except BaseException:
            self._conn.close()
            raise
        self._checked = time.monotonic()
        # the file as opened: sealing stops while `path` is no longer it (`_check_in_place`)
        self._inode = _inode(self.path)
        self._placed_checked = self._checked
        self._displaced: str | None = None

    def _setup(self) -> None:
        c = self._conn
        c.execute("PRAGMA busy_timeout=30000")
        if c.execute("PRAGMA secure_delete=ON").fetchone()[0] != 1:
            raise RuntimeError("this SQLite cannot overwrite deleted content (secure_delete)")
        c.execute("PRAGMA journal_mode=WAL")
        # a data key lost in a power cut would make every record sealed with it unreadable
        c.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            c.execute(statement)
        self._migrate()
        # an expiry pass finds the keys to delete without reading every row (a gate's 100,000 plates)
        c.execute("CREATE INDEX IF NOT EXISTS subject_keys_last_seal ON subject_keys (last_seal)")

    def _migrate(self) -> None:
        """A keys.db of an earlier version has no seal times: its keys get the time of the upgrade,
        so none expires before a full retention horizon has passed since."""
        c = self._conn
        if "last_seal" in _columns(c, "subject_keys"):
            return
        c.execute("BEGIN IMMEDIATE")
        try:
            if "last_seal" not in _columns(c, "subject_keys"):  # another process may have been first
                c.execute("ALTER TABLE subject_keys ADD COLUMN last_seal REAL")
                c.execute("UPDATE subject_keys SET last_seal = ?", (float(self._clock()),))
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _claim(self, journal: str) -> None:
        """Record `journal` as the one this file serves, when none is; refuse another."""
        from edge.state import claim

        owner = claim(self._conn, journal)
        if owner != journal:
            raise KeyStoreUnusable(
                f"{self.path} holds the data keys of the journal {owner} beside it, not of {journal}: "
                "two sites whose journals share a folder would share their residents' keys (a forget at "
                "one would erase the other's). Give each site a folder of its own (storage.path); if "
                f"this journal was renamed, give it back its name {owner}; nothing was changed"
            )

    def _load_index_key(self) -> bytes:
        aad = KEYRING_AAD + b"index"
        self._conn.execute(
            "INSERT OR IGNORE INTO keyring (name, wrapped) VALUES ('index', ?)",
            (_wrap(self._wrapper, secrets.token_bytes(32), aad),),
        )
        (wrapped,) = self._conn.execute("SELECT wrapped FROM keyring WHERE name = 'index'").fetchone()
        try:
            return _unwrap(self._wrapper, wrapped, aad)
        except InvalidTag:
            raise WrongMasterKey(
                f"{self.path}: this master key does not open the key store (it was written, or last "
                "rotated, under another master key)"
            ) from None

    # ------------------------------------------------------------ public API
    def seal(self, subject: str, plaintext: bytes, aad: bytes, ts: float | None = None) -> bytes:
        """`plaintext` sealed under `subject`'s data key (created on first use), bound to `aad`.
        `ts`: the time of the record sealed, when it has one: the key is kept until the later of
        it and now is past the retention horizon (`expire`)."""
        if not isinstance(subject, str) or not subject:
            raise ValueError(f"a subject id is a non-empty string, not {subject!r}")
        with self._lock:
            self._check_in_place()
            self._notice_other_writers()
            entry = self._keys.get(subject)
            if entry is None:
                entry = self._load_or_create(subject)
            else:
                self._keys.move_to_end(subject)
            # under the lock: an expiry pass sees this seal before it deletes anything
            t = self._clock()
            if ts is not None and ts > t:
                t = ts
            self._note_seal(entry[0][1:], t)
        header, cipher = entry
        nonce = NONCES.take()
        return header + nonce + cipher.encrypt(nonce, plaintext, header + aad)

    def seal_kid(self, kid: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """`plaintext` sealed under the data key whose reference is `kid`, as `seal` seals under a
        subject's: for a copy of a record whose subject this process knows only by the key it was
        sealed under (`envelope_kid`). KeyForgotten when that key was deleted."""
        with self._lock:
            self._check_in_place()
            self._notice_other_writers()
            cipher = self._cipher(kid)
            self._note_seal(kid, self._clock())
        header = bytes((VERSION,)) + kid
        nonce = NONCES.take()
        return header + nonce + cipher.encrypt(nonce, plaintext, header + aad)

    def _note_seal(self, kid: bytes, t: float) -> None:
        """Key `kid` sealed a record of time `t` (under the lock): an expiry pass keeps it until
        `t` is past the retention horizon; written through once it moved by more than the slack."""
        if t > self._seal_times.get(kid, 0.0):
            self._seal_times[kid] = t
            if t - self._stored_time(kid) > SEAL_TIME_SLACK_S:
                self._write_through(kid, t)

    def open(self, envelope: bytes, aad: bytes) -> bytes:
        """The plaintext of `envelope`; KeyForgotten when its subject was forgotten, EnvelopeError
        when it was altered or `aad` is not what it was sealed with."""
        if len(envelope) < OVERHEAD:
            raise EnvelopeError(f"{len(envelope)} bytes is too short for a sealed envelope")
        if envelope[0] != VERSION:
            raise EnvelopeError(f"envelope version {envelope[0]}: this store reads version {VERSION}")
        header, nonce = envelope[:HEADER_BYTES], envelope[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
        with self._lock:
            self._notice_other_writers()
            cipher = self._cipher(header[1:])
        try:
            return cipher.decrypt(nonce, envelope[HEADER_BYTES + NONCE_BYTES :], header + aad)
        except InvalidTag:
            raise EnvelopeError(
                "the envelope does not open: it was altered, or sealed with other associated data"
            ) from None

    def forget(self, subject: str) -> bool:
        """Delete `subject`'s data key: everything sealed under it, wherever a copy is, can no
        longer be opened. False when the subject had no key."""
        ref = self._ref(subject)
        with self._lock:
            with self._writing(check=False) as c:  # forgetting needs no master key
                row = c.execute("DELETE FROM subject_keys WHERE subject = ? RETURNING kid", (ref,)).fetchone()
                if row is not None:
                    c.execute("INSERT OR IGNORE INTO forgotten_keys (kid) VALUES (?)", (row[0],))
            cached = self._keys.pop(subject, None)
            for kid in (cached[0][1:] if cached else None, row[0] if row else None):
                if kid is not None:
                    self._ciphers.pop(kid, None)
            if row is None:
                return False
            self._wal_pending = True
            self._truncate_wal()
        return True

    def expire(self, before: float, *, keep: Collection[str]) -> int:
        """Delete every data key that sealed nothing at or after `before` (a wall time: now minus
        the retention horizon), except those of the subjects in `keep` (the site-wide key, which
        also seals state no retention removes): like `forget`, what they sealed reads
        as erased everywhere, copies and backups included. The seal times kept in memory are
        written first, in the same transaction and under the same lock as the seals, so a key a
        seal is using is never deleted. A key goes SEAL_TIME_SLACK_S after `before` would have it:
        after a crash, the times in the file may be that much behind the last seals. Returns how
        many keys went."""
        before = float(before) - SEAL_TIME_SLACK_S
        with self._lock:
            kept = orjson.dumps([self._ref(subject).hex().upper() for subject in keep]).decode()
            with self._writing(check=False) as c:  # expiring needs no master key
                self._write_seal_times(c)
                rows = c.execute(
                    "DELETE FROM subject_keys WHERE last_seal < ? "
                    "AND hex(subject) NOT IN (SELECT value FROM json_each(?)) RETURNING kid",
                    (before, kept),
                ).fetchall()
                c.executemany("INSERT OR IGNORE INTO forgotten_keys (kid) VALUES (?)", rows)
            for kid, t in self._seal_times.items():
                if kid in self._stored_times:
                    self._stored_times[kid] = max(self._stored_times[kid], t)
            self._seal_times.clear()
            if not rows:
                return 0
            gone = {bytes(kid) for (kid,) in rows}
            for kid in gone:
                self._ciphers.pop(kid, None)
                self._stored_times.pop(kid, None)
            for subject in [s for s, (header, _) in self._keys.items() if header[1:] in gone]:
                del self._keys[subject]
            self._wal_pending = True
            self._truncate_wal()
        return len(gone)

    def rotate_master(self, new_master_key: bytes) -> int:
        """Rewrap every data key (and the index key) under `new_master_key`; sealed data is not
        touched and opens as before. Returns the number of subject keys rewrapped."""
        new = _wrapper(new_master_key)
        with self._lock:
            with self._writing() as c:
                rows = c.execute("SELECT kid, wrapped FROM subject_keys").fetchall()
                rewrapped = []
                for kid, wrapped in rows:
                    aad = SUBJECT_AAD + kid
                    rewrapped.append((_wrap(new, _unwrap(self._wrapper, wrapped, aad), aad), kid))
                c.executemany("UPDATE subject_keys SET wrapped = ? WHERE kid = ?", rewrapped)
                for name, wrapped in c.execute("SELECT name, wrapped FROM keyring").fetchall():
                    aad = KEYRING_AAD + name.encode()
                    c.execute(
                        "UPDATE keyring SET wrapped = ? WHERE name = ?",
                        (_wrap(new, _unwrap(self._wrapper, wrapped, aad), aad), name),
                    )
            self._wrapper = new
            self._wal_pending = True
            self._truncate_wal()
        return len(rows)

    def local_pseudonym(self, subject: str) -> str:
        """The subject as this site names it without saying who it is (`ps_` and the base32 of its
        row reference): stable, and meaningless without keys.db and the master key."""
        import base64

        return "ps_" + base64.b32encode(self._ref(subject)).decode()[:20].lower()

    def kid_of(self, subject: str) -> bytes | None:
        """The reference envelopes sealed under `subject`'s key carry (`envelope_kid`), None when
        the subject has no key; never creates one."""
        ref = self._ref(subject)
        with self._lock:
            row = self._conn.execute("SELECT kid FROM subject_keys WHERE subject = ?", (ref,)).fetchone()
        return None if row is None else bytes(row[0])

    def forgotten_kids(self) -> set[bytes]:
        """The references of every forgotten key: what they sealed opens nowhere any more."""
        with self._lock:
            return {bytes(r[0]) for r in self._conn.execute("SELECT kid FROM forgotten_keys")}

    def subjects_count(self) -> int:
        """How many subjects hold a data key."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM subject_keys").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._seal_times:
                try:
                    with self._writing(check=False) as c:
                        self._write_seal_times(c)
                    self._seal_times.clear()
                except (sqlite3.Error, KeyStoreUnusable) as exc:
                    log.warning("%s: the latest seal times were not written: %s", self.path, exc)
            if self._wal_pending:
                self._truncate_wal()
            self._ciphers.clear()
            self._keys.clear()
            self._conn.close()

    def __enter__(self) -> SubjectKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ under the lock
    def _ref(self, subject: str) -> bytes:
        if not isinstance(subject, str) or not subject:
            raise ValueError(f"a subject id is a non-empty string, not {subject!r}")
        return hmac.new(self._index_key, subject.encode("utf-8"), hashlib.sha256).digest()

    @contextlib.contextmanager
    def _writing(self, check: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction holding the file's write lock from the start. `check`: first make
        sure this store's master key is still the one in force, so no rotation elsewhere can come
        between that check and a key wrapped under it."""
        self._check_in_place(now=True)
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            if check:
                self._notice_other_writers(now=True)
            yield c
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise

    def _stored_time(self, kid: bytes) -> float:
        stored = self._stored_times.get(kid)
        if stored is None:
            row = self._conn.execute("SELECT last_seal FROM subject_keys WHERE kid = ?", (kid,)).fetchone()
            stored = float(row[0]) if row is not None and row[0] is not None else 0.0
            _put(self._stored_times, kid, stored, self._cache_size)
        return stored

    def _write_through(self, kid: bytes, t: float) -> None:
        """Write a seal time now: the file's is older than SEAL_TIME_SLACK_S (at most once a day
        per key in use), so a crash cannot leave a key looking idle long before it was."""
        try:
            self._conn.execute(
                "UPDATE subject_keys SET last_seal = max(coalesce(last_seal, 0), ?) WHERE kid = ?", (t, kid)
            )
        except sqlite3.Error as exc:  # busy or failing: the next expiry pass writes it
            log.warning("%s: a seal time was not written yet: %s", self.path, exc)
            return
        _put(self._stored_times, kid, t, self._cache_size)

    def _write_seal_times(self, c: sqlite3.Connection) -> None:
        """The seal times kept in memory into the file (never moving one back), and "now" for
        keys an earlier version created without one."""
        c.executemany(
            "UPDATE subject_keys SET last_seal = max(coalesce(last_seal, 0), ?) WHERE kid = ?",
            [(t, kid) for kid, t in self._seal_times.items()],
        )
        c.execute("UPDATE subject_keys SET last_seal = ? WHERE last_seal IS NULL", (float(self._clock()),))

    def _check_in_place(self, now: bool = False) -> None:
        """KeyStoreUnusable while the file at `path` is not the one this store opened (`now`:
        looked at whatever the time since the last look; else at most every `recheck` seconds).
        A file moved back into place is used again."""
        t = time.monotonic()
        if now or t - self._placed_checked >= self._recheck:
            self._placed_checked = t
            try:
                placed = _inode(self.path) == self._inode
            except OSError:
                placed = False
            if placed and self._displaced is not None:
                log.warning("%s is in place again: sealing goes on", self.path)
                self._displaced = None
            elif not placed and self._displaced is None:
                self._displaced = displaced_message(self.path)
                log.error("%s", self._displaced)
        if self._displaced is not None:
            raise KeyStoreUnusable(self._displaced)

    def _notice_other_writers(self, now: bool = False) -> None:
        """Drop the caches when another connection changed the file (`now`: check whatever the
        time since the last check): a key another process forgot must stop opening here too, and
        a rotation elsewhere must not leave this one wrapping new keys under the old master key."""
        t = time.monotonic()
        if not now and t - self._checked < self._recheck:
            return
        self._checked = t
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        self._ciphers.clear()
        self._keys.clear()
        (wrapped,) = self._conn.execute("SELECT wrapped FROM keyring WHERE name = 'index'").fetchone()
        try:
            _unwrap(self._wrapper, wrapped, KEYRING_AAD + b"index")
        except InvalidTag:
            raise WrongMasterKey(
                f"{self.path}: the master key was rotated by another process; reopen with the new key"
            ) from None

    def _load_or_create(self, subject: str) -> tuple[bytes, AESGCM]:
        ref = self._ref(subject)
        row = self._conn.execute("SELECT kid, wrapped FROM subject_keys WHERE subject = ?", (ref,)).fetchone()
        if row is None:
            with self._writing() as c:
                kid = os.urandom(KID_BYTES)
                wrapped = _wrap(self._wrapper, AESGCM.generate_key(bit_length=256), SUBJECT_AAD + kid)
                c.execute(
                    "INSERT OR IGNORE INTO subject_keys (subject, kid, wrapped, last_seal) VALUES (?, ?, ?, ?)",
                    (ref, kid, wrapped, float(self._clock())),
                )
                # another process may have created this subject's key first: use the one stored
                row = c.execute("SELECT kid, wrapped FROM subject_keys WHERE subject = ?", (ref,)).fetchone()
        kid, wrapped = row
        cipher = AESGCM(self._unwrap_data_key(kid, wrapped))
        entry = (bytes((VERSION,)) + kid, cipher)
        _put(self._keys, subject, entry, self._cache_size)
        _put(self._ciphers, kid, cipher, self._cache_size)
        return entry

    def _cipher(self, kid: bytes) -> AESGCM:
        cipher = self._ciphers.get(kid)
        if cipher is not None:
            self._ciphers.move_to_end(kid)
            return cipher
        row = self._conn.execute("SELECT wrapped FROM subject_keys WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            if self._conn.execute("SELECT 1 FROM forgotten_keys WHERE kid = ?", (kid,)).fetchone():
                raise KeyForgotten("the subject's data key was deleted: this envelope no longer opens")
            raise EnvelopeError(f"no data key with this envelope's reference in {self.path}")
        cipher = AESGCM(self._unwrap_data_key(kid, row[0]))
        _put(self._ciphers, kid, cipher, self._cache_size)
        return cipher

    def _unwrap_data_key(self, kid: bytes, wrapped: bytes) -> bytes:
        try:
            return _unwrap(self._wrapper, wrapped, SUBJECT_AAD + kid)
        except InvalidTag:
            self._notice_other_writers(now=True)  # WrongMasterKey when it was rotated elsewhere
            raise EnvelopeError(f"{self.path}: a data key does not unwrap (the file was altered)") from None

    def _truncate_wal(self) -> None:
        """Copy the WAL into the database and cut it to zero bytes, so that no earlier image of a
        deleted or rewrapped key stays in it. A reader in another process can hold it back, and
        the checkpoint's own writes can fail (an I/O error at its fsync): then it is tried again at
        the next forget, rotation or close. It runs after the change committed: its failure is a
        warning, never the change's failure, which would have the caller believe nothing changed."""
        try:
            busy, _log, _done = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            log.warning(
                "%s: the change is committed, but its WAL was not checkpointed and truncated (%s); "
                "retried at the next forget, rotation or close",
                self.path,
                exc,
            )
            return
        if busy:
            log.warning(
                "%s: the WAL could not be truncated (another connection is reading); retried later",
                self.path,
            )
            return
        self._wal_pending = False
