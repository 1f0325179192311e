"""Reading privacy keys given by reference: a file only its owner can read, or an environment
variable. A key that anyone else on the box can read protects nothing, so a file with group or
other permission bits is refused rather than silently used."""

from __future__ import annotations

import os
import stat

from edge.config import ConfigError
from edge.yamlpos import Problem


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
