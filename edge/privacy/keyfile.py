"""Reading privacy keys given by reference: a file only its owner can read, or an environment
variable. A key that anyone else on the box can read protects nothing, so a file with group or
other permission bits is refused rather than silently used. The site's master key file is written
here too (`create_master_key`): private from its first byte, never over an existing key."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import stat
from pathlib import Path

from edge.validation import ConfigError
from edge.yamlpos import Problem

MASTER_KEY_BYTES = 32


class KeyFileError(ConfigError):
    """A key that cannot be used, located like a site-file problem (the file or the variable)."""

    def __init__(self, where: str, message: str):
        super().__init__([Problem(where, None, (), message)])


def read_private_file(path: str, what: str) -> bytes:
    """The bytes of `path`, refused unless only its owner may read it (mode 0600 or stricter).

    The mode is checked on the opened file, so a file swapped between the check and the read is
    still the one checked."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise KeyFileError(path, f"{what}: cannot read key file: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(path, f"{what}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                path,
                f"{what}: key file has mode {mode:04o}; it must be readable by its owner only "
                f"(0600 or stricter: chmod 600 {path})",
            )
        return f.read()


def read_key(key_file: str | None, key_env: str | None, what: str) -> tuple[bytes, str]:
    """(key material, where it came from) from `key_file` or `key_env`; surrounding whitespace
    (the newline an editor or `echo` adds) is not part of the key."""
    if key_file and key_env:
        raise KeyFileError(key_file, f"{what}: give key_file: or key_env:, not both")
    if key_file:
        return read_private_file(key_file, what).strip(), key_file
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            raise KeyFileError("environment", f"{what}: environment variable {key_env} is not set")
        return value.strip().encode("utf-8"), f"environment variable {key_env}"
    raise KeyFileError("site file", f"{what}: needs key_file: PATH or key_env: VARIABLE")


def create_master_key(path: str | os.PathLike[str]) -> None:
    """Write a new random master key to `path` (base64, mode 0600), atomically: the file appears
    whole or not at all. An existing file is never replaced: the data its key protects would
    become unreadable."""
    final = Path(path)
    if final.is_dir():
        raise KeyFileError(str(final), "a directory; name the key file to create in it (e.g. DIR/master.key)")
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
    text = base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)) + b"\n"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        raise KeyFileError(str(final), f"no such directory: {final.parent} (create it first)") from None
    except OSError as exc:
        raise KeyFileError(str(final), f"cannot write in {final.parent}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, final)  # unlike a rename, refuses to replace an existing key
    except FileExistsError:
        raise KeyFileError(
            str(final), "a master key already exists here; it is never overwritten (choose another path)"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_master_key(path: str | os.PathLike[str]) -> bytes:
    """The master key in `path`, refused unless only its owner can read the file."""
    where = str(path)
    text = read_private_file(where, "privacy master key").strip()
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != MASTER_KEY_BYTES:
        raise KeyFileError(
            where,
            f"privacy master key: expected {MASTER_KEY_BYTES} bytes in base64 (as create_master_key "
            "writes them)",
        )
    return key
